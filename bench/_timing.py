"""Interleaved rounds: every subject timed once per round, medians compared."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

Loop = Callable[[int], None]
"""Runs its operation ``n`` times."""


def ops_per_second(
    subjects: dict[str, Loop], *, rounds: int, number: int, slices: int = 10
) -> dict[str, float]:
    """Median operations per second of each subject over ``rounds`` rounds.

    Each round runs every subject ``number`` times in ``slices`` turns, alternating between
    the subjects, so that a noisy neighbour slows them alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for loop in subjects.values():
        loop(min(number, 1000))  # warm up
    per_slice = max(1, number // slices)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            spent = dict.fromkeys(subjects, 0.0)
            for _ in range(slices):
                for name, loop in subjects.items():
                    started = time.perf_counter()
                    loop(per_slice)
                    spent[name] += time.perf_counter() - started
            for name, seconds in spent.items():
                samples[name].append(per_slice * slices / seconds)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}
