"""What ``remote-cache check`` reports: each check's result, the whole run's report, and the
exception a check raises when it cannot run on the target."""

from __future__ import annotations

import dataclasses
from typing import Any

from remote_cache import CacheStat

__all__ = ["DEFAULT_EXAMPLES", "CheckReport", "CheckResult", "NotApplicable"]

DEFAULT_EXAMPLES = 100
"""Hypothesis examples per property check."""


@dataclasses.dataclass
class CheckResult:
    """The outcome of one check."""

    name: str
    passed: bool
    detail: str = ""
    seconds: float = 0.0
    examples: int = 0
    applicable: bool = True
    """False when the check cannot run on this target (it then counts as passed)."""

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"fail"`` or ``"n/a"`` (not applicable here)."""
        return "n/a" if not self.applicable else "pass" if self.passed else "fail"


@dataclasses.dataclass
class CheckReport:
    """Every check's result, the counters they left, and where they ran."""

    target: str
    examples: int = DEFAULT_EXAMPLES
    seed: int | None = None
    results: list[CheckResult] = dataclasses.field(default_factory=list)
    stats: dict[str, CacheStat] = dataclasses.field(default_factory=dict)
    log_lines: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(result.passed for result in self.results)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        counters = [field.name for field in dataclasses.fields(CacheStat)]
        return {
            "target": self.target,
            "passed": self.passed,
            "examples": self.examples,
            "seed": self.seed,
            "checks": [
                {**dataclasses.asdict(result), "verdict": result.verdict} for result in self.results
            ],
            "stats": {
                name: {counter: getattr(stat, counter) for counter in counters}
                for name, stat in sorted(self.stats.items())
            },
            "log_lines": list(self.log_lines),
        }


class NotApplicable(Exception):
    """Raised by a check that cannot run on this target; the message says why."""
