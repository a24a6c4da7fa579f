"""The command line's grammar: the argparse parser, its argument types and usage errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from remote_cache._validation import check_redis_cache_id
from remote_cache.cli.report import JSON_SCHEMA_VERSION
from remote_cache.cli.status import EXIT_STATUS_HELP

__all__ = [
    "COMMANDS",
    "DEFAULT_EXAMPLES",
    "REDIS_EXTRA",
    "TESTING_EXTRA",
    "UsageError",
    "build_parser",
]

COMMANDS = ("check", "inspect")

DEFAULT_EXAMPLES = 100
"""Hypothesis examples per property check. The harness has the same default
(``remote_cache.testing._check.DEFAULT_EXAMPLES``); it is not imported from there because
``--help`` must work without the testing extra, and the harness never imports the CLI."""

TESTING_EXTRA = "pip install 'remote-cache[testing]'"
REDIS_EXTRA = "pip install 'remote-cache[redis]'"


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


def build_parser() -> argparse.ArgumentParser:
    """The ``remote-cache`` parser, with the ``check`` and ``inspect`` sub-commands."""
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
