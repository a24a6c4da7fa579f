"""The Hypothesis settings every property of the suite runs with."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings

__all__ = ["suite_settings"]


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
