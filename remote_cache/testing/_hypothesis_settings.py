"""The Hypothesis settings every property of the suite runs with."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, Phase, settings

__all__ = ["pick_seed", "replayable", "suite_settings"]


def suite_settings(examples: int | None, **overrides: Any) -> settings:
    """``examples`` examples (None: the loaded profile's), no deadline, no example database.

    One failure is reported (the first found, shrunk), without the slow "explain" phase.
    """
    return settings(
        max_examples=examples if examples is not None else settings().max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        phases=[phase for phase in Phase if phase is not Phase.explain],
        report_multiple_bugs=False,
        **overrides,
    )


def pick_seed(random_seed: int | None) -> int:
    """``random_seed``, or a fresh random one when None, so that every run can be replayed."""
    return random_seed if random_seed is not None else random.SystemRandom().getrandbits(32)


def replayable(exc: AssertionError, replay: str) -> AssertionError:
    """``exc``'s message, Hypothesis' shrunk example (its notes) and a line to replay it."""
    notes = [
        note
        for note in getattr(exc, "__notes__", [])
        if isinstance(note, str) and not note.startswith("You can ")
    ]
    return AssertionError("\n".join([str(exc), *notes, f"  replay:   {replay}"]))
