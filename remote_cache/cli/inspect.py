"""The ``inspect`` command: what a Redis server holds per cache id, as a table or JSON.

Needs only the ``redis`` extra. The counting itself is ``remote_cache.cli.inventory``.
"""

from __future__ import annotations

import argparse
import io
import json
from typing import TextIO

from remote_cache._settings import parse_redis_url, scrub, url_secrets
from remote_cache._text import printable
from remote_cache.cli.inventory import Inventory, inspect_redis
from remote_cache.cli.process import Interrupts, emit
from remote_cache.cli.status import EXIT_OK, EXIT_UNUSABLE
from remote_cache.exceptions import BackendCommandError, ConfigurationError, MissingDependencyError

__all__ = ["print_inventory", "run_inspect"]


def run_inspect(
    arguments: argparse.Namespace, out: TextIO, err: TextIO, interrupts: Interrupts
) -> int:
    """Run ``inspect``: print what the server holds on ``out``; return the exit status."""
    from remote_cache._redis import build_client, translate_redis_error
    from remote_cache._settings import UNSET, resolve_redis_settings

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
        if arguments.url is None and not isinstance(error, BackendCommandError):
            print(
                "  (the server came from the environment, or the default: name one with "
                "--url redis://host:port)",
                file=err,
            )
        return EXIT_UNUSABLE

    try:
        client = build_client(settings)
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
        print_inventory(inventory, server, text)
    interrupts.finish()
    emit(text.getvalue(), out)
    return EXIT_OK


def print_inventory(inventory: Inventory, server: str, out: TextIO) -> None:
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
        shown = ", ".join(printable(repr(key)) for key in inventory.other_samples)
        more = ", ..." if inventory.other_keys > len(inventory.other_samples) else ""
        print(
            f"  ({inventory.other_keys:,} other keys under pt2: not in upstream's format: "
            f"{shown}{more})",
            file=out,
        )
