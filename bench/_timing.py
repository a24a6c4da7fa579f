"""Interleaved rounds: every subject timed once per round, medians compared."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

Loop = Callable[[int], None]
"""Runs its operation ``n`` times."""


def ops_per_second(subjects: dict[str, Loop], *, rounds: int, number: int) -> dict[str, float]:
    """Median operations per second of each subject; rounds interleave the subjects."""
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for loop in subjects.values():
        loop(min(number, 1000))  # warm up
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, loop in subjects.items():
                started = time.perf_counter()
                loop(number)
                samples[name].append(number / (time.perf_counter() - started))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}
