"""The ``remote-cache`` command: ``check`` a backend before trusting it, ``inspect`` a server."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from remote_cache._config import redact_url
from remote_cache._stats import CacheStat
from remote_cache.testing._check import DEFAULT_EXAMPLES, Check, CheckReport, run_checks

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2

STAT_COLUMNS = ("hit", "miss", "put", "exception", "skipped", "corrupt", "fail_open")


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remote-cache",
        description=(
            "Check a remote_cache backend before trusting it with your builds, and see what "
            "a Redis server holds."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="run the conformance and property suite and outage drills, then report",
        description=(
            "Round-trip values through every cache class, check upstream's wire format, "
            "batches and corrupt entries, run the conformance and property suite (the "
            "backend against a dict, caches under injected faults against a model, the JSON "
            "serde), then drill an outage and a black hole. With no --url it runs on an "
            "embedded fakeredis (nothing to install or start). Against a real server it "
            "writes only under its own unique prefix, with a TTL, deletes what it wrote, and "
            "drills outages through a local proxy, so the server itself is never harmed. "
            "A progress bar shows on a terminal. Exit status: 0 all checks passed, 1 a check "
            "failed, 2 the server cannot be reached or the arguments are wrong."
        ),
    )
    check.add_argument(
        "--url",
        help="redis://, rediss:// or unix:// URL of the server (default: an embedded fakeredis)",
    )
    check.add_argument(
        "--examples",
        type=_whole_number(1),
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help="Hypothesis examples per property (default: %(default)s)",
    )
    check.add_argument(
        "--seed",
        type=_whole_number(0),
        default=None,
        metavar="N",
        help="seed for the property suite, to repeat a run (default: a random one, printed)",
    )
    check.add_argument(
        "--json", action="store_true", help="print the report as JSON on stdout instead"
    )
    inspect = commands.add_parser(
        "inspect",
        help="show what a Redis server holds per cache id (SCAN, never KEYS)",
        description=(
            "Count the entries under pt2: on a server, per cache id: entries, value bytes, "
            "how many have a TTL, and a few sample keys. The server comes from --url, else "
            "from REMOTE_CACHE_REDIS_URL (or host and port) as the caches find it. Walks the "
            "key space with SCAN, never KEYS, and writes nothing. Exit status: 0 done, 2 the "
            "server cannot be reached or the arguments are wrong."
        ),
    )
    inspect.add_argument("--url", help="redis://, rediss:// or unix:// URL of the server")
    inspect.add_argument("--cache-id", help="only this cache id")
    inspect.add_argument(
        "--cluster", action="store_true", help="the server is a Redis Cluster (every master)"
    )
    inspect.add_argument(
        "--samples",
        type=_whole_number(0),
        default=3,
        metavar="N",
        help="sample keys per cache id (3)",
    )
    inspect.add_argument("--json", action="store_true", help="print the inventory as JSON")
    return parser


def _inspect(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from remote_cache._config import UNSET, resolve_redis_settings
    from remote_cache._inspect import inspect_redis
    from remote_cache._redis import _build_client, translate_redis_error
    from remote_cache.exceptions import ConfigurationError, MissingDependencyError

    try:
        settings = resolve_redis_settings(
            url=arguments.url if arguments.url is not None else UNSET,
            cluster=True if arguments.cluster else UNSET,
            timeout=5.0,
        )
        client = _build_client(settings)
    except (ConfigurationError, MissingDependencyError) as exc:
        print(f"remote-cache inspect: {exc}", file=err)
        return EXIT_UNUSABLE
    except Exception as exc:  # noqa: BLE001 - a cluster client connects when built
        error = translate_redis_error(exc, backend=settings.describe(), operation="connect")
        print(f"remote-cache inspect: cannot reach the server: {error or exc}", file=err)
        return EXIT_UNUSABLE
    server = settings.describe()

    def progress(seen: int) -> None:
        if err.isatty():
            print(f"\r\x1b[Kscanned {seen:,} keys", end="", file=err, flush=True)

    try:
        inventory = inspect_redis(
            client,
            server=server,
            cache_id=arguments.cache_id,
            samples=arguments.samples,
            progress=progress,
        )
    except Exception as exc:  # noqa: BLE001 - reported, with the password scrubbed
        error = translate_redis_error(exc, backend=server, operation="scan")
        print(f"remote-cache inspect: cannot reach the server: {error or exc}", file=err)
        return EXIT_UNUSABLE
    finally:
        client.close()
    if err.isatty():
        print("\r\x1b[K", end="", file=err)
    if arguments.json:
        print(json.dumps(inventory.as_dict(), indent=2), file=out)
        return EXIT_OK
    print(f"remote-cache inspect: {server}", file=out)
    rows = [
        (s.cache_id, f"{s.entries:,}", f"{s.bytes:,}", f"{s.with_ttl:,}", ", ".join(s.sample_keys))
        for _, s in sorted(inventory.caches.items())
    ]
    rows.append(("total", f"{inventory.entries:,}", f"{inventory.bytes:,}", "", ""))
    headers = ("cache id", "entries", "bytes", "with TTL", "sample keys")
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(4)]
    for row in [headers, *rows]:
        print(
            f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
            f"{row[3]:>{widths[3]}}  {row[4]}".rstrip(),
            file=out,
        )
    if inventory.other_keys:
        print(
            f"  ({inventory.other_keys:,} other keys under pt2: not in upstream's format)", file=out
        )
    return EXIT_OK


class _ProgressBar:
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
    width = max([len("name"), *map(len, stats)])
    header = "  ".join(f"{column:>9}" for column in STAT_COLUMNS)
    print(f"  {'name':<{width}}  {header}", file=out)
    for name, stat in sorted(stats.items()):
        row = "  ".join(f"{getattr(stat, column):>9}" for column in STAT_COLUMNS)
        print(f"  {name:<{width}}  {row}", file=out)


def _print_report(report: CheckReport, out: TextIO) -> None:
    print(f"remote-cache check: {report.target}", file=out)
    print(f"  {report.examples} examples per property, seed {report.seed}\n", file=out)
    width = max(len("check"), *(len(result.name) for result in report.results))
    print(f"  result  {'check':<{width}}  {'time':>10}  detail", file=out)
    for result in report.results:
        verdict = "n/a" if not result.applicable else "PASS" if result.passed else "FAIL"
        first, *rest = result.detail.splitlines() or [""]
        timing = f"{result.seconds * 1000:7.1f} ms"
        print(f"  {verdict:<6}  {result.name:<{width}}  {timing:>10}  {first}", file=out)
        for line in rest:
            print(f"  {'':<6}  {'':<{width}}  {'':>10}  {line}", file=out)
    if report.log_lines:
        print("\nLog lines (the drills provoke these on purpose):", file=out)
        for line in report.log_lines[:20]:
            print(f"  {line}", file=out)
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


def _check(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    url: str | None = arguments.url
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        print("--url must start with redis://, rediss:// or unix://", file=err)
        return EXIT_UNUSABLE
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    bar = _ProgressBar(err) if err.isatty() else None
    try:
        report = run_checks(url, examples=arguments.examples, seed=seed, progress=bar)
    except ImportError as exc:  # fakeredis, hypothesis or redis-py missing
        print(
            f"remote-cache check needs the testing extra ({exc}): "
            "pip install 'remote-cache[testing]'",
            file=err,
        )
        return EXIT_UNUSABLE
    except ConnectionError as exc:
        if bar is not None:
            bar.clear()
        print(f"remote-cache check: cannot reach the server: {exc}", file=err)
        if arguments.json:
            print(
                json.dumps(
                    {
                        "target": url and redact_url(url),
                        "passed": False,
                        "error": f"cannot reach the server: {exc}",
                    }
                ),
                file=out,
            )
        return EXIT_UNUSABLE
    if bar is not None:
        bar.clear()
    if arguments.json:
        print(json.dumps(report.as_dict(), indent=2), file=out)
    else:
        _print_report(report, out)
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
    if arguments.command == "inspect":
        return _inspect(arguments, out, err)
    parser.print_help(out)
    return EXIT_UNUSABLE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
