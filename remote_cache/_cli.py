"""The ``remote-cache`` command: ``check`` a backend before trusting it, ``inspect`` a server.

``--help`` and ``inspect`` need only the standard library and redis-py (the ``redis`` extra);
``check`` imports the test harness when it runs (the ``testing`` extra) and says which extra
to install when it is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from remote_cache._backend import RemoteCacheBackend
from remote_cache._config import parse_redis_url, redact_url, url_secrets
from remote_cache._stats import CacheStat
from remote_cache.exceptions import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from remote_cache.testing._check import Check, CheckReport

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNUSABLE",
    "JSON_SCHEMA_VERSION",
    "load_backend_factory",
    "main",
]

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""Exit statuses: all passed; a check failed; unusable (bad argument, unreachable server,
missing extra); interrupted (Ctrl-C)."""

JSON_SCHEMA_VERSION = 1
"""Version of ``check --json``'s document; raised only when a field changes meaning or goes."""

DEFAULT_EXAMPLES = 100
"""Hypothesis examples per property check."""

TESTING_EXTRA = "pip install 'remote-cache[testing]'"
REDIS_EXTRA = "pip install 'remote-cache[redis]'"

STAT_COLUMNS = ("hit", "miss", "put", "exception", "skipped", "corrupt", "fail_open")

EXIT_STATUS_HELP = """\
exit status:
  0    every check passed (check), or the inventory was printed (inspect)
  1    a check failed (check); the report names it and the seed that repeats the run
  2    bad arguments, the server cannot be reached, the backend cannot be loaded, or an
       extra is missing (one line on stderr says which)
  130  interrupted (Ctrl-C); what check wrote to a server is deleted first when possible"""


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error raises ``UsageError`` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise ``UsageError`` naming the command."""
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


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
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="remote-cache",
        formatter_class=formatter,
        description=(
            "Check a remote_cache backend before trusting it with your builds (check), and "
            "see what a Redis server holds (inspect). Also run as: python -m remote_cache."
        ),
        epilog=EXIT_STATUS_HELP,
    )
    commands = parser.add_subparsers(
        title="commands",
        dest="command",
        metavar="COMMAND",
        help="remote-cache COMMAND --help shows its options",
    )
    check = commands.add_parser(
        "check",
        formatter_class=formatter,
        help=(
            "run the conformance and property suite and outage drills on a Redis server "
            "(--url), an embedded fakeredis (default) or your own backend (--backend); "
            "needs the testing extra"
        ),
        description=(
            "Round-trip values through every cache class, check upstream's wire format,\n"
            "batches and corrupt entries, run the conformance and property suite (the backend\n"
            "against a dict, caches under injected faults against a model, the JSON serde), then\n"
            "drill an outage and a black hole. With neither --url nor --backend it runs on an\n"
            "embedded fakeredis (nothing to install or start). Against a real server it writes\n"
            "only under its own unique prefix, with a TTL, deletes what it wrote, and drills\n"
            "outages through a local proxy (TCP URLs only), so the server is never harmed.\n"
            "A progress bar shows on a terminal. Needs the testing extra: " + TESTING_EXTRA
        ),
        epilog=EXIT_STATUS_HELP,
    )
    where = check.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        help=(
            "redis://, rediss:// or unix:// URL of the server to check (a password in it is "
            "never printed)"
        ),
    )
    where.add_argument(
        "--backend",
        metavar="MODULE:FACTORY",
        help=(
            "check your own backend: FACTORY is a zero-argument callable in MODULE (imported "
            "from the current folder or sys.path) that returns a fresh, empty "
            "RemoteCacheBackend at each call"
        ),
    )
    check.add_argument(
        "--examples",
        type=_whole_number(1),
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help="Hypothesis examples per property check (default: %(default)s)",
    )
    check.add_argument(
        "--seed",
        type=_whole_number(0),
        default=None,
        metavar="N",
        help="seed of the property checks, to repeat a run (default: a random one, printed)",
    )
    check.add_argument(
        "--json",
        action="store_true",
        help=f"print the report as JSON on stdout (schema version {JSON_SCHEMA_VERSION}, "
        "described in docs/cli.md) instead of the table",
    )
    inspect = commands.add_parser(
        "inspect",
        formatter_class=formatter,
        help=(
            "show what a Redis server holds per cache id (SCAN, never KEYS); needs only the "
            "redis extra"
        ),
        description=(
            "Count the entries under pt2: on a server, per cache id: entries, value bytes,\n"
            "how many have a TTL, and a few sample keys. The server comes from --url, else\n"
            "from REMOTE_CACHE_REDIS_URL (or host and port) as the caches find it. Walks the\n"
            "key space with SCAN, never KEYS, and writes nothing. Needs the redis extra: "
            + REDIS_EXTRA
        ),
        epilog=EXIT_STATUS_HELP,
    )
    inspect.add_argument(
        "--url",
        help="redis://, rediss:// or unix:// URL of the server (default: from the environment)",
    )
    inspect.add_argument("--cache-id", metavar="ID", help="only this cache id (taken literally)")
    inspect.add_argument(
        "--cluster", action="store_true", help="the server is a Redis Cluster: scan every master"
    )
    inspect.add_argument(
        "--samples",
        type=_whole_number(0),
        default=3,
        metavar="N",
        help="sample keys shown per cache id (default: %(default)s)",
    )
    inspect.add_argument("--json", action="store_true", help="print the inventory as JSON")
    return parser


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _inspect(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from remote_cache._config import UNSET, resolve_redis_settings
    from remote_cache._inspect import inspect_redis
    from remote_cache._redis import _build_client, translate_redis_error

    try:
        parsed = None if arguments.url is None else parse_redis_url(arguments.url, name="--url")
        if parsed is not None and parsed.is_unix and arguments.cluster:
            raise ConfigurationError("--cluster needs a redis:// or rediss:// URL, not unix://")
        settings = resolve_redis_settings(
            url=arguments.url if arguments.url is not None else UNSET,
            cluster=True if arguments.cluster else UNSET,
            timeout=5.0,
        )
    except ConfigurationError as exc:
        print(f"remote-cache inspect: {exc}", file=err)
        return EXIT_UNUSABLE
    server = settings.describe()
    secrets = url_secrets(settings.url or "")

    def unreachable(exc: Exception, operation: str) -> int:
        error = translate_redis_error(exc, backend=server, operation=operation, secrets=secrets)
        detail = _scrub(str(error or f"{type(exc).__name__}: {exc}"), secrets)
        print(f"remote-cache inspect: cannot reach the server: {detail}", file=err)
        return EXIT_UNUSABLE

    try:
        client = _build_client(settings)
    except MissingDependencyError as exc:
        print(f"remote-cache inspect: {exc}", file=err)
        return EXIT_UNUSABLE
    except Exception as exc:  # noqa: BLE001 - a cluster client connects when built
        return unreachable(exc, "connect")

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
        return unreachable(exc, "scan")
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


def load_backend_factory(spec: str) -> Callable[[], RemoteCacheBackend[Any]]:
    """The factory named by ``"module:attribute"``, called once to see that it makes backends.

    The current folder is searched first, as ``python -m`` would. Raises ``UsageError`` with
    a one-line reason when the module cannot be imported, the attribute is missing or not
    callable, or a call fails or returns something that is not a ``RemoteCacheBackend``.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--backend {spec!r}: expected MODULE:FACTORY, e.g. mycache:make_backend")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported
        raise UsageError(
            f"--backend {spec!r}: cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"--backend {spec!r}: {module_name} has no {attribute}") from None
    if not callable(target):
        raise UsageError(f"--backend {spec!r}: {attribute} is not callable")
    factory: Callable[[], Any] = target
    try:
        made = factory()
    except Exception as exc:  # noqa: BLE001 - reported in one line
        raise UsageError(
            f"--backend {spec!r}: calling {attribute}() raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(made, RemoteCacheBackend):
        raise UsageError(
            f"--backend {spec!r}: {attribute}() returned {type(made).__name__}, "
            "not a RemoteCacheBackend"
        )
    return factory


def _need(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"remote-cache check needs the testing extra ({module} is not installed): "
            f"{TESTING_EXTRA}"
        ) from None


def _check(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    url: str | None = arguments.url
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    target = (
        "embedded fakeredis"
        if url is None and arguments.backend is None
        else f"backend {arguments.backend}"
        if url is None
        else redact_url(url)
    )
    arguments.seed, arguments.target = seed, target  # for the report of an interrupted run

    def unusable(message: str) -> int:
        print(f"remote-cache check: {message}", file=err)
        if arguments.json:
            document = json_error(
                verdict="unusable",
                exit_status=EXIT_UNUSABLE,
                target=target,
                examples=arguments.examples,
                seed=seed,
                error=message,
            )
            print(json.dumps(document, indent=2), file=out)
        return EXIT_UNUSABLE

    factory = None
    try:
        if url is not None:
            parse_redis_url(url, name="--url")
        for module in ("hypothesis", *(("redis",) if arguments.backend is None else ())):
            _need(module)
        if url is None and arguments.backend is None:
            _need("fakeredis")
        if arguments.backend is not None:
            factory = load_backend_factory(arguments.backend)
        from remote_cache.testing._check import run_checks
    except (ConfigurationError, UsageError, MissingDependencyError) as exc:
        return unusable(str(exc))
    bar = _ProgressBar(err) if err.isatty() else None
    try:
        report = run_checks(
            url,
            examples=arguments.examples,
            seed=seed,
            progress=bar,
            backend_factory=factory,
            backend_name=arguments.backend,
        )
    except ConnectionError as exc:
        return unusable(f"cannot reach the server: {_scrub(str(exc), url_secrets(url or ''))}")
    finally:
        if bar is not None:
            bar.clear()
    if arguments.interrupted.is_set():  # swallowed by code under test: the run is not valid
        raise KeyboardInterrupt
    if arguments.json:
        print(json.dumps(json_report(report), indent=2), file=out)
    else:
        _print_report(report, out)
    return EXIT_OK if report.passed else EXIT_FAILED


@contextlib.contextmanager
def _interrupts() -> Iterator[threading.Event]:
    """Record every SIGINT (Ctrl-C) of the run, even one that code under test swallows."""
    interrupted = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handle)
    except ValueError:  # not the main thread: leave signals alone
        yield interrupted
        return
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status (0, 1, 2 or 130, see ``--help``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    try:
        arguments = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=err)
        return EXIT_UNUSABLE
    except SystemExit as exit_:  # --help
        return EXIT_OK if not exit_.code else EXIT_UNUSABLE
    if arguments.command is None:
        parser.print_help(out)
        return EXIT_UNUSABLE
    command = _check if arguments.command == "check" else _inspect
    status = EXIT_INTERRUPTED
    with _interrupts() as interrupted:
        arguments.interrupted = interrupted
        try:
            status = command(arguments, out, err)
        except KeyboardInterrupt:
            interrupted.set()
    if interrupted.is_set():
        print(f"remote-cache {arguments.command}: interrupted", file=err)
        if arguments.command == "check" and arguments.json:
            document = json_error(
                verdict="interrupted",
                exit_status=EXIT_INTERRUPTED,
                target=getattr(arguments, "target", None),
                examples=arguments.examples,
                seed=arguments.seed,
                error="interrupted",
            )
            print(json.dumps(document, indent=2), file=out)
        return EXIT_INTERRUPTED
    return status
