"""What a Redis server holds for remote_cache, per cache id: found with SCAN, never KEYS."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CacheIdSummary", "Inventory", "inspect_redis"]

KEY_PATTERN = re.compile(rb"\Apt2:(?P<cache_id>.*?)::(?P<key>.*):c(?P<version>\d+)\Z", re.DOTALL)
"""Upstream's key format, ``pt2:{cache_id}::{key}:c{version}``."""

SCAN_COUNT = 1000
"""Keys asked of the server per SCAN step: a hint that keeps each step short."""


@dataclasses.dataclass
class CacheIdSummary:
    """The entries stored under one cache id."""

    cache_id: str
    entries: int = 0
    bytes: int = 0
    """The sum of the values' lengths (STRLEN), not counting Redis' own overhead."""
    with_ttl: int = 0
    sample_keys: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Inventory:
    """Everything under ``pt2:`` on a server, per cache id."""

    server: str
    caches: dict[str, CacheIdSummary] = dataclasses.field(default_factory=dict)
    other_keys: int = 0
    """Keys under ``pt2:`` that do not follow upstream's format."""
    other_samples: list[str] = dataclasses.field(default_factory=list)
    """The first three of them."""

    @property
    def entries(self) -> int:
        """Entries across every cache id."""
        return sum(summary.entries for summary in self.caches.values())

    @property
    def bytes(self) -> int:
        """Value bytes across every cache id."""
        return sum(summary.bytes for summary in self.caches.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "server": self.server,
            "entries": self.entries,
            "bytes": self.bytes,
            "other_keys": self.other_keys,
            "other_samples": self.other_samples,
            "caches": [dataclasses.asdict(s) for _, s in sorted(self.caches.items())],
        }


def _text(raw: bytes) -> str:
    """``raw`` as text, one to one: a byte that is not UTF-8 becomes a lone surrogate, which
    ``printable`` shows as ``\\udcXX`` and JSON as ``"\\udcXX"``, never as text."""
    return raw.decode("utf-8", "surrogateescape")


def _pattern(cache_id: str | None) -> str:
    if cache_id is None:
        return "pt2:*"
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", cache_id)  # glob characters match themselves
    return f"pt2:{escaped}::*"


def _pages(client: Any, match: str) -> Iterator[list[bytes]]:
    """SCAN in pages (every master of a cluster); each key once per page."""
    page: list[bytes] = []
    for key in client.scan_iter(match=match, count=SCAN_COUNT):
        page.append(key)
        if len(page) >= SCAN_COUNT:
            yield page
            page = []
    if page:
        yield page


def inspect_redis(
    client: Any,
    *,
    server: str,
    cache_id: str | None = None,
    samples: int = 3,
    progress: Callable[[int], None] | None = None,
) -> Inventory:
    """Count what ``client``'s server holds under ``pt2:`` (or one ``cache_id``).

    Walks the key space with SCAN (never KEYS, which blocks the server), and reads each
    page's value lengths and TTLs in one pipeline. ``progress(keys_seen)`` is called per
    page. Writes nothing. Raises the server's error reply when it refuses one of those
    commands (an ACL user without them), other than for a key that is not a string.
    """
    inventory = Inventory(server=server)
    seen = 0
    for page in _pages(client, _pattern(cache_id)):
        pipeline = client.pipeline(transaction=False)
        for key in page:
            pipeline.strlen(key)
            pipeline.pttl(key)
        replies = pipeline.execute(raise_on_error=False)
        refused = [r for r in replies if isinstance(r, Exception) and "WRONGTYPE" not in str(r)]
        if refused:  # e.g. NOPERM: an ACL user without STRLEN or PTTL
            raise refused[0]
        for index, key in enumerate(page):
            length, ttl = replies[2 * index], replies[2 * index + 1]
            if ttl == -2:  # expired or deleted between SCAN and now
                continue
            match = KEY_PATTERN.match(key)
            if match is None or isinstance(length, Exception):  # not ours, or not a string
                inventory.other_keys += 1
                if len(inventory.other_samples) < 3:
                    inventory.other_samples.append(_text(key))
                continue
            found_id = _text(match["cache_id"])
            summary = inventory.caches.get(found_id)
            if summary is None:
                summary = inventory.caches[found_id] = CacheIdSummary(found_id)
            summary.entries += 1
            summary.bytes += int(length)
            summary.with_ttl += ttl >= 0
            if len(summary.sample_keys) < samples:
                summary.sample_keys.append(_text(match["key"]))
        seen += len(page)
        if progress is not None:
            progress(seen)
    return inventory
