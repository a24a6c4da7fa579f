"""The running test's seed, and the schedules started during it (for its failure report).

The pytest plugin calls ``begin_test`` before each test; a ``Schedule`` made without a seed
takes ``current_seed()``, and one started notes itself (``note_started``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remote_cache.testing.faults import Schedule

_seed: int | None = None
_started: list[Schedule] = []


def current_seed() -> int:
    """The seed a schedule made without one takes: the test's (``--remote-cache-seed``, or
    drawn for each test by the pytest plugin), else 0 outside a test."""
    return 0 if _seed is None else _seed


def begin_test(seed: int | None) -> None:
    """Start a test: its seed for new schedules (None: 0), and no schedule started yet."""
    global _seed  # noqa: PLW0603 - the running test's, set by the pytest plugin
    _seed = seed
    _started.clear()


def started_schedules() -> list[Schedule]:
    """The schedules started since ``begin_test`` (each once, in order)."""
    unique: list[Schedule] = []
    for schedule in _started:
        if all(schedule is not seen for seen in unique):
            unique.append(schedule)
    return unique


def note_started(schedule: Schedule) -> None:
    """Remember that ``schedule`` started, inside a test of the plugin's (else nothing)."""
    if _seed is not None:
        _started.append(schedule)
