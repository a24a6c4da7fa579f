"""The ``remote-cache`` command: ``check`` a backend before trusting it, ``inspect`` a server.

``--help`` and ``inspect`` need only the standard library and redis-py (the ``redis`` extra);
``check`` imports the test harness when it runs (the ``testing`` extra) and says which extra
to install when it is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
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
from remote_cache._config import parse_redis_url, redact_url, scrub, url_secrets
from remote_cache._stats import CacheStat
from remote_cache._text import printable
from remote_cache._validation import check_redis_cache_id
from remote_cache.exceptions import (
    BackendCommandError,
    ConfigurationError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    from remote_cache._inspect import Inventory
    from remote_cache.testing._check import Check, CheckReport

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STDOUT_CLOSED",
    "EXIT_UNUSABLE",
    "JSON_SCHEMA_VERSION",
    "load_backend_factory",
    "main",
    "printable",
]

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""Exit statuses: all passed; a check failed; unusable (bad argument, unreachable server,
missing extra, a ``--backend`` that cannot be loaded); interrupted (Ctrl-C)."""

EXIT_STDOUT_CLOSED = 141
"""Exit status when stdout was closed before the output was written (``... | head``): 128 plus
SIGPIPE, as a shell reports a command that a closed pipe stopped."""

COMMANDS = ("check", "inspect")

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
  2    bad arguments, the server cannot be reached, the backend cannot be loaded (its
       module or factory raised, even SystemExit), or an extra is missing (one line on
       stderr says which)
  130  interrupted (Ctrl-C): one line on stderr, no report (with --json, only the
       "interrupted" document); what check wrote to a server is deleted first when possible
  141  stdout was closed before the output was written (e.g. piped into head)"""


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
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()):  # int() takes "٣", "1_0" and " 5 "
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
        return value

    return parse


def _cache_id(text: str) -> str:
    """An argparse type: a cache id that the Redis caches accept (keys never ambiguous)."""
    try:
        return check_redis_cache_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    inspect.add_argument(
        "--cache-id",
        type=_cache_id,
        metavar="ID",
        help=(
            "only this cache id (taken literally; refused when it holds '::' or starts or ends "
            "with ':', as the caches refuse it)"
        ),
    )
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


def _inspect(
    arguments: argparse.Namespace, out: TextIO, err: TextIO, interrupts: _Interrupts
) -> int:
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
        print(f"remote-cache inspect: {printable(str(exc))}", file=err)
        return EXIT_UNUSABLE
    server = settings.describe()
    secrets = url_secrets(settings.url or "")

    def unreachable(exc: Exception, operation: str) -> int:
        error = translate_redis_error(exc, backend=server, operation=operation, secrets=secrets)
        detail = scrub(str(error or f"{type(exc).__name__}: {exc}"), secrets)
        if isinstance(error, BackendCommandError):  # reached, and it said no (NOPERM...)
            what = f"the server refused {operation}"
        else:
            what = "cannot reach the server"
        print(f"remote-cache inspect: {what}: {printable(detail)}", file=err)
        return EXIT_UNUSABLE

    try:
        client = _build_client(settings)
    except MissingDependencyError as exc:
        print(f"remote-cache inspect: {printable(str(exc))}", file=err)
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
    interrupts.checkpoint()
    text = io.StringIO()
    if arguments.json:
        print(json.dumps(inventory.as_dict(), indent=2), file=text)
    else:
        _print_inventory(inventory, server, text)
    interrupts.finish()
    _emit(text.getvalue(), out)
    return EXIT_OK


def _print_inventory(inventory: Inventory, server: str, out: TextIO) -> None:
    """The table: one row per cache id, whatever bytes its id and keys hold."""
    print(f"remote-cache inspect: {printable(server)}", file=out)
    rows = [
        (
            printable(s.cache_id),
            f"{s.entries:,}",
            f"{s.bytes:,}",
            f"{s.with_ttl:,}",
            ", ".join(map(printable, s.sample_keys)),
        )
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
    names = {name: printable(name) for name in stats}  # a user's backend names them
    width = max([len("name"), *map(len, names.values())])
    header = "  ".join(f"{column:>9}" for column in STAT_COLUMNS)
    print(f"  {'name':<{width}}  {header}", file=out)
    for name, stat in sorted(stats.items()):
        row = "  ".join(f"{getattr(stat, column):>9}" for column in STAT_COLUMNS)
        print(f"  {names[name]:<{width}}  {row}", file=out)


def _print_report(report: CheckReport, out: TextIO) -> None:
    print(f"remote-cache check: {printable(report.target)}", file=out)
    print(f"  {report.examples} examples per property, seed {report.seed}\n", file=out)
    width = max(len("check"), *(len(result.name) for result in report.results))
    print(f"  result  {'check':<{width}}  {'time':>10}  detail", file=out)
    for result in report.results:
        verdict = "n/a" if not result.applicable else "PASS" if result.passed else "FAIL"
        # Details span lines by design; each line is shown escaped (a server's \r included).
        first, *rest = [printable(line) for line in result.detail.rstrip("\n").split("\n")]
        timing = f"{result.seconds * 1000:7.1f} ms"
        print(f"  {verdict:<6}  {result.name:<{width}}  {timing:>10}  {first}", file=out)
        for line in rest:
            print(f"  {'':<6}  {'':<{width}}  {'':>10}  {line}", file=out)
    if report.log_lines:
        print("\nLog lines (the drills provoke these on purpose):", file=out)
        for line in report.log_lines[:20]:
            print(f"  {printable(line)}", file=out)
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
    Any exception of the user's code counts, ``SystemExit`` and ``GeneratorExit`` included (a
    factory that exits must not pass for a successful run); only ``KeyboardInterrupt``
    propagates.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--backend {spec!r}: expected MODULE:FACTORY, e.g. mycache:make_backend")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of the user's module is reported
        raise UsageError(
            f"--backend {spec!r}: cannot import {module_name}: {_describe(exc)}"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"--backend {spec!r}: {module_name} has no {attribute}") from None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a module __getattr__ is user code too
            raise UsageError(
                f"--backend {spec!r}: looking up {attribute} raised {_describe(exc)}"
            ) from None
    if not callable(target):
        raise UsageError(f"--backend {spec!r}: {attribute} is not callable")
    factory: Callable[[], Any] = target
    try:
        made = factory()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported in one line, SystemExit included
        raise UsageError(
            f"--backend {spec!r}: calling {attribute}() raised {_describe(exc)}"
        ) from None
    if not isinstance(made, RemoteCacheBackend):
        raise UsageError(
            f"--backend {spec!r}: {attribute}() returned {type(made).__name__}, "
            "not a RemoteCacheBackend"
        )
    return factory


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _need(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"remote-cache check needs the testing extra ({module} is not installed): "
            f"{TESTING_EXTRA}"
        ) from None


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.StringIO, a closed or detached stream
        return None


@contextlib.contextmanager
def _user_output_to(
    err: TextIO, out: TextIO, interrupts: _Interrupts, *, for_good: bool = False
) -> Iterator[TextIO]:
    """Send what user code prints on stdout to ``err``; yield the stream for the report.

    ``sys.stdout`` is replaced, and when ``out`` and ``err`` are file descriptors, ``out``'s
    descriptor points at ``err``'s too, for output written below Python (``os.write``, C
    code, child processes); the report then goes through a copy of the original. With
    ``for_good`` (a process about to exit), nothing is put back: what user code prints
    after the report (its threads, its ``atexit`` handlers) goes to ``err`` too.
    """
    out_fd, err_fd = _fileno(out), _fileno(err)
    report: TextIO = out
    saved: int | None = None  # a copy of what out's descriptor was
    with interrupts.deferred():  # a Ctrl-C here must not leave stdout pointing at stderr
        if out_fd is not None and err_fd is not None and out_fd != err_fd:
            out.flush()
            saved = os.dup(out_fd)
            report = os.fdopen(
                os.dup(saved), "w", encoding=getattr(out, "encoding", None), errors="replace"
            )
            os.dup2(err_fd, out_fd)
        previous, sys.stdout = sys.stdout, err
    try:
        yield report
    finally:
        with interrupts.deferred():
            if report is not out and not for_good:
                with contextlib.suppress(OSError, ValueError):
                    report.close()  # flushed already (_emit): a closed pipe was noticed there
            for stream in {id(s): s for s in (out, sys.__stdout__) if s is not None}.values():
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()  # what user code left in a buffer goes to err too
            if not for_good:
                sys.stdout = previous
                if saved is not None and out_fd is not None:
                    os.dup2(saved, out_fd)
            if saved is not None:
                os.close(saved)


def _load(arguments: argparse.Namespace) -> Callable[[], RemoteCacheBackend[Any]] | None:
    """Check the URL and the extras, then load ``--backend``'s factory (None without it)."""
    if arguments.url is not None:
        parse_redis_url(arguments.url, name="--url")
    for module in ("hypothesis", *(("redis",) if arguments.backend is None else ())):
        _need(module)
    if arguments.url is None and arguments.backend is None:
        _need("fakeredis")
    if arguments.backend is None:
        return None
    return load_backend_factory(arguments.backend)


def _check(arguments: argparse.Namespace, out: TextIO, err: TextIO, interrupts: _Interrupts) -> int:
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

    with _user_output_to(err, out, interrupts, for_good=interrupts.for_good) as report_out:
        arguments.report_out = report_out  # for the report of an interrupted run

        def unusable(message: str) -> int:
            interrupts.checkpoint()
            print(f"remote-cache check: {printable(message)}", file=err)
            if arguments.json:
                document = json_error(
                    verdict="unusable",
                    exit_status=EXIT_UNUSABLE,
                    target=target,
                    examples=arguments.examples,
                    seed=seed,
                    error=message,
                )
                interrupts.finish()
                _emit(json.dumps(document, indent=2) + "\n", report_out)
            return EXIT_UNUSABLE

        try:
            factory = _load(arguments)
            from remote_cache.testing._check import run_checks
        except (ConfigurationError, UsageError, MissingDependencyError) as exc:
            failure: str | None = str(exc)
        else:
            failure = None
        interrupts.checkpoint()
        if failure is None:
            bar = _ProgressBar(err) if err.isatty() else None
            try:
                report = run_checks(
                    url,
                    examples=arguments.examples,
                    seed=seed,
                    progress=bar,
                    backend_factory=factory,
                    backend_name=arguments.backend,
                    checkpoint=interrupts.checkpoint,
                )
            except ConnectionError as exc:
                failure = f"cannot reach the server: {scrub(str(exc), url_secrets(url or ''))}"
            finally:
                if bar is not None:
                    bar.clear()
        if failure is not None:
            return unusable(failure)
        interrupts.checkpoint()  # one that code under test swallowed: the run is not valid
        text = io.StringIO()
        if arguments.json:
            print(json.dumps(json_report(report), indent=2), file=text)
        else:
            _print_report(report, text)
        interrupts.finish()
        _emit(text.getvalue(), report_out)
        return EXIT_OK if report.passed else EXIT_FAILED


def _emit(text: str, out: TextIO) -> None:
    """Write ``text`` to ``out`` and flush it, so that a closed pipe is noticed here."""
    out.write(text)
    out.flush()


class _Interrupts:
    """Every SIGINT (Ctrl-C) of a run, even one that code under test swallows.

    The handler records the interrupt, then raises ``KeyboardInterrupt`` until ``finish()``:
    from then on the output is being written and is written whole. A ``KeyboardInterrupt``
    that Python could not raise (in a ``__del__``, a weakref or gc callback) is recorded
    silently instead of printed as "Exception ignored". ``checkpoint()`` raises
    ``KeyboardInterrupt`` if any interrupt was recorded, and puts the handler back if code
    under test replaced it.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.raising = True
        self.installed = False
        self.for_good = False
        """True in a process about to exit (``run_program``): user output stays on stderr."""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler."""
        self.event.set()
        if self.raising:
            raise KeyboardInterrupt

    def checkpoint(self) -> None:
        """Raise ``KeyboardInterrupt`` if the run was interrupted; keep the handler in place."""
        if self.installed and signal.getsignal(signal.SIGINT) != self.handle:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGINT, self.handle)
        if self.event.is_set() and self.raising:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold back ``KeyboardInterrupt`` for a moment; ``checkpoint()`` raises it later."""
        raising, self.raising = self.raising, False
        try:
            yield
        finally:
            self.raising = raising

    def finish(self) -> None:
        """Stop raising: what is written from now on is written whole."""
        self.checkpoint()
        self.raising = False


@contextlib.contextmanager
def _interrupts(*, ignore_after: bool = False) -> Iterator[_Interrupts]:
    """Install ``_Interrupts``' handler and unraisable hook for the run, then restore both.

    With ``ignore_after`` (the process is about to exit) SIGINT is left ignored instead, so
    that a late Ctrl-C cannot turn a finished run into a traceback.
    """
    interrupts = _Interrupts()
    try:
        previous = signal.signal(signal.SIGINT, interrupts.handle)
    except ValueError:  # not the main thread: leave signals alone
        yield interrupts
        return
    interrupts.installed = True
    previous_hook = sys.unraisablehook

    def unraisable(details: Any) -> None:
        if isinstance(details.exc_type, type) and issubclass(details.exc_type, KeyboardInterrupt):
            interrupts.event.set()
            return
        previous_hook(details)

    sys.unraisablehook = unraisable
    try:
        yield interrupts
    finally:
        interrupts.raising = False
        if ignore_after:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.signal(
                signal.SIGINT, signal.default_int_handler if previous is None else previous
            )
        sys.unraisablehook = previous_hook


def _stdout_closed(*streams: TextIO | None) -> int:
    """Quietly give up on a closed stdout: later writes and the exit flush go to devnull."""
    for fd in {_fileno(stream) for stream in streams if stream is not None}:
        if fd is not None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
    return EXIT_STDOUT_CLOSED


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status (0, 1, 2, 130 or 141, see ``--help``).

    SIGINT is handled from the first line to the last (then the previous handler is back):
    Ctrl-C anywhere, even one swallowed by code under test, gives one line on stderr and
    ``EXIT_INTERRUPTED``, never a traceback or a report.
    """
    with _interrupts() as interrupts:
        return _main(argv, out, err, interrupts)


def run_program() -> int:
    """``main()`` for a process about to exit: SIGINT stays ignored when it returns, and
    what user code prints after the report goes to stderr."""
    with _interrupts(ignore_after=True) as interrupts:
        interrupts.for_good = True
        return _main(None, None, None, interrupts)


def _main(
    argv: Sequence[str] | None, out: TextIO | None, err: TextIO | None, interrupts: _Interrupts
) -> int:
    # A stream closed when Python started (`2>&-`) is None: write that one to devnull.
    out = out or sys.stdout or open(os.devnull, "w")  # noqa: SIM115 - lives as the process does
    err = err or sys.stderr or open(os.devnull, "w")  # noqa: SIM115
    words = sys.argv[1:] if argv is None else list(argv)
    command = words[0] if words and words[0] in COMMANDS else None
    arguments = None
    try:
        try:
            parser = _parser()
            try:
                arguments = parser.parse_args(words)
            except UsageError as exc:
                interrupts.finish()
                print(printable(str(exc)), file=err)
                return EXIT_UNUSABLE
            except SystemExit as exit_:  # --help
                interrupts.finish()
                sys.stdout.flush()
                return EXIT_OK if not exit_.code else EXIT_UNUSABLE
            if arguments.command is None:
                interrupts.finish()
                parser.print_help(out)
                out.flush()
                return EXIT_UNUSABLE
            run = _check if arguments.command == "check" else _inspect
            return run(arguments, out, err, interrupts)
        except KeyboardInterrupt:
            interrupts.raising = False
        print(f"remote-cache{f' {command}' if command else ''}: interrupted", file=err)
        if arguments is not None and arguments.command == "check" and arguments.json:
            document = json_error(
                verdict="interrupted",
                exit_status=EXIT_INTERRUPTED,
                target=getattr(arguments, "target", None),
                examples=arguments.examples,
                seed=arguments.seed,
                error="interrupted",
            )
            _emit(json.dumps(document, indent=2) + "\n", getattr(arguments, "report_out", out))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        interrupts.raising = False
        return _stdout_closed(out, getattr(arguments, "report_out", out))
