"""The ``remote-cache`` command: ``check`` a backend before trusting it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from remote_cache._stats import CacheStat

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2

STAT_COLUMNS = ("hit", "miss", "put", "exception", "skipped", "corrupt", "fail_open")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remote-cache",
        description="Check a remote_cache backend before trusting it with your builds.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="round-trip values through every cache class, drill an outage, report",
        description=(
            "Round-trip values through every cache class, check upstream's wire format, "
            "batches and corrupt entries, then drill an outage and a recovery. With no --url "
            "it runs on an embedded fakeredis (nothing to install or start). Against a real "
            "server it writes only under its own unique prefix, with a TTL, deletes what it "
            "wrote, and drills outages through a local proxy, so the server itself is never "
            "harmed. Exit status: 0 all checks passed, 1 a check failed, 2 the server cannot "
            "be reached or the arguments are wrong."
        ),
    )
    check.add_argument(
        "--url",
        help="redis://, rediss:// or unix:// URL of the server (default: an embedded fakeredis)",
    )
    return parser


def _stat_table(stats: dict[str, CacheStat], out: TextIO) -> None:
    width = max([len("name"), *map(len, stats)])
    header = "  ".join(f"{column:>9}" for column in STAT_COLUMNS)
    print(f"  {'name':<{width}}  {header}", file=out)
    for name, stat in sorted(stats.items()):
        row = "  ".join(f"{getattr(stat, column):>9}" for column in STAT_COLUMNS)
        print(f"  {name:<{width}}  {row}", file=out)


def _check(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from remote_cache.testing._check import run_checks
    except ImportError as exc:  # fakeredis or redis-py missing
        print(
            f"remote-cache check needs the testing extra ({exc}): "
            "pip install 'remote-cache[testing]'",
            file=err,
        )
        return EXIT_UNUSABLE
    if arguments.url is not None and not arguments.url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        print("--url must start with redis://, rediss:// or unix://", file=err)
        return EXIT_UNUSABLE

    def progress(index: int, total: int, name: str) -> None:
        if err.isatty():
            print(f"\r\x1b[K[{index}/{total}] {name}", end="", file=err, flush=True)

    try:
        report = run_checks(arguments.url, progress=progress)
    except ConnectionError as exc:
        print(f"remote-cache check: cannot reach the server: {exc}", file=err)
        return EXIT_UNUSABLE
    if err.isatty():
        print("\r\x1b[K", end="", file=err)
    print(f"remote-cache check: {report.target}", file=out)
    name_width = max(len(result.name) for result in report.results)
    for result in report.results:
        verdict = "PASS" if result.passed else "FAIL"
        timing = f"{result.seconds * 1000:7.1f} ms"
        print(f"  {verdict}  {result.name:<{name_width}}  {timing}  {result.detail}", file=out)
    if report.log_lines:
        print("\nLog lines (the drills provoke these on purpose):", file=out)
        for line in report.log_lines:
            print(f"  {line}", file=out)
    print("\nCounters (cache_stats):", file=out)
    _stat_table(report.stats, out)
    passed = sum(result.passed for result in report.results)
    failed = len(report.results) - passed
    print(f"\n{passed} checks passed, {failed} failed", file=out)
    return EXIT_OK if report.passed else EXIT_FAILED


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_UNUSABLE if exit_.code else EXIT_OK
    if arguments.command == "check":
        return _check(arguments, out, err)
    parser.print_help(out)
    return EXIT_UNUSABLE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
