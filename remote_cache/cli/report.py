"""What ``check`` shows: the progress bar, the report table and ``--json``'s documents."""

from __future__ import annotations

import shutil
import textwrap
import time
from typing import TYPE_CHECKING, Any, TextIO

from remote_cache._stats import CacheStat
from remote_cache._text import printable
from remote_cache.cli.status import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from remote_cache.testing._check import Check, CheckReport

__all__ = [
    "JSON_SCHEMA_VERSION",
    "ProgressBar",
    "json_error",
    "json_report",
    "print_report",
    "report_width",
]

JSON_SCHEMA_VERSION = 1
"""Version of ``check --json``'s document; raised only when a field changes meaning or goes."""

STAT_COLUMNS = ("hit", "miss", "put", "exception", "skipped", "corrupt", "fail_open")


class ProgressBar:
    """One self-rewriting line on a terminal: checks done, and examples of a property."""

    def __init__(self, stream: TextIO, width: int = 24, interval: float = 0.05) -> None:
        self.stream = stream
        self.width = width
        self.interval = interval
        self._shown_at = 0.0

    def __call__(self, index: int, total: int, check: Check, done: int) -> None:
        now = time.monotonic()
        if done and now - self._shown_at < self.interval:
            return
        self._shown_at = now
        part = min(done, check.examples) / check.examples if check.examples else 0.0
        filled = round((index - 1 + part) / total * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        examples = f"  {min(done, check.examples)}/{check.examples}" if check.examples else ""
        line = f"[{bar}] {index}/{total}  {check.name}{examples}"
        print(f"\r\x1b[K{line}", end="", file=self.stream, flush=True)

    def clear(self) -> None:
        """Erase the line."""
        print("\r\x1b[K", end="", file=self.stream, flush=True)


def _stat_table(stats: dict[str, CacheStat], out: TextIO) -> None:
    names = {name: printable(name) for name in stats}  # a user's backend names them
    width = max([len("name"), *map(len, names.values())])
    header = "  ".join(f"{column:>9}" for column in STAT_COLUMNS)
    print(f"  {'name':<{width}}  {header}", file=out)
    for name, stat in sorted(stats.items()):
        row = "  ".join(f"{getattr(stat, column):>9}" for column in STAT_COLUMNS)
        print(f"  {names[name]:<{width}}  {row}", file=out)


REPORT_WIDTH = 120
"""The columns a report fills when its output is not a terminal (else the terminal's)."""


def report_width(out: TextIO) -> int:
    """The columns to fill: the terminal's (at least 60), else ``REPORT_WIDTH``."""
    try:
        if out.isatty():
            return max(60, shutil.get_terminal_size((REPORT_WIDTH, 24)).columns)
    except (AttributeError, ValueError, OSError):  # a closed or odd stream
        pass
    return REPORT_WIDTH


def _wrapped(lines: list[str], width: int) -> list[str]:
    """``lines`` cut at spaces to ``width`` columns each (a word longer than that is kept)."""
    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, max(width, 20), break_long_words=False) or [""]
    return out


def print_report(report: CheckReport, out: TextIO, *, columns: int | None = None) -> None:
    """The report as a table, ``columns`` wide (default: ``report_width(out)``)."""
    columns = columns or report_width(out)
    print(f"remote-cache check: {printable(report.target)}", file=out)
    print(f"  {report.examples} examples per property, seed {report.seed}\n", file=out)
    width = max(len("check"), *(len(result.name) for result in report.results))
    print(f"  result  {'check':<{width}}  {'time':>10}  detail", file=out)
    for result in report.results:
        verdict = "n/a" if not result.applicable else "PASS" if result.passed else "FAIL"
        # Details span lines by design; each line is shown escaped (a server's \r included).
        lines = [printable(line) for line in result.detail.rstrip("\n").split("\n")]
        first, *rest = _wrapped(lines, columns - (2 + 6 + 2 + width + 2 + 10 + 2))
        timing = f"{result.seconds * 1000:7.1f} ms"
        print(f"  {verdict:<6}  {result.name:<{width}}  {timing:>10}  {first}", file=out)
        for line in rest:
            print(f"  {'':<6}  {'':<{width}}  {'':>10}  {line}", file=out)
    if report.log_lines:
        print("\nLog lines (the drills provoke these on purpose):", file=out)
        for line in report.log_lines[:20]:
            first, *rest = _wrapped([printable(line)], columns - 6)
            print(f"  {first}", file=out)
            for more in rest:
                print(f"      {more}", file=out)
        if len(report.log_lines) > 20:
            print(f"  ... and {len(report.log_lines) - 20} more", file=out)
    print("\nCounters (cache_stats):", file=out)
    _stat_table(report.stats, out)
    passed = sum(result.passed and result.applicable for result in report.results)
    failed = sum(not result.passed for result in report.results)
    not_applicable = len(report.results) - passed - failed
    summary = f"{passed} checks passed, {failed} failed"
    if not_applicable:
        summary += f", {not_applicable} not applicable here"
    print(f"\n{summary}", file=out)
    if failed:
        print(f"Repeat this run with --seed {report.seed}", file=out)


def json_report(report: CheckReport) -> dict[str, Any]:
    """``check --json``'s document for a run that completed (see docs/cli.md)."""
    passed = report.passed
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "verdict": "passed" if passed else "failed",
        "exit_status": EXIT_OK if passed else EXIT_FAILED,
        **report.as_dict(),
        "error": None,
    }


def json_error(
    *, verdict: str, exit_status: int, target: str | None, examples: int, seed: int | None,
    error: str,
) -> dict[str, Any]:  # fmt: skip
    """``check --json``'s document for a run that could not run or finish."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "verdict": verdict,
        "exit_status": exit_status,
        "target": target,
        "passed": False,
        "examples": examples,
        "seed": seed,
        "checks": [],
        "stats": {},
        "log_lines": [],
        "error": error,
    }
