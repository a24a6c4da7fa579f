"""Set-up plus tear-down of the harness fixtures, per call (target: under 1 ms)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from remote_cache.testing import (
    isolated_cache_stats,
    memory_backends,
    outage_backends,
    recording_backends,
)

ROUNDS = 7
CALLS_PER_ROUND = 2000


def _per_call(make: Callable[[], AbstractContextManager[Any]]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS_PER_ROUND):
        with make():
            pass
    return (time.perf_counter() - started) / CALLS_PER_ROUND


def measure() -> list[tuple[str, float]]:
    """Median seconds of one set-up plus tear-down, per fixture body, rounds interleaved."""
    subjects: dict[str, Callable[[], AbstractContextManager[Any]]] = {
        "remote_cache_memory": memory_backends,
        "remote_cache_recorder": recording_backends,
        "remote_cache_outage": outage_backends,
        "remote_cache_stats": isolated_cache_stats,
    }
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(ROUNDS):
        for name, make in subjects.items():
            samples[name].append(_per_call(make))
    return [(name, statistics.median(values)) for name, values in samples.items()]


def main() -> list[tuple[str, float]]:
    """Print the table; return the figures."""
    results = measure()
    print(f"fixture set-up + tear-down (median of {ROUNDS} rounds of {CALLS_PER_ROUND})")
    for name, seconds in results:
        verdict = "ok" if seconds < 1e-3 else "OVER 1 ms"
        print(f"  {name:<24} {seconds * 1e6:8.1f} us   {verdict}")
    return results
