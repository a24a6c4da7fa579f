"""A tiny "compiler" that caches its artifacts through RemoteFxGraphCache.

It stands for any build tool that consumes remote_cache: hash the source, look the artifact
up, compile on a miss and store the result.
"""

from __future__ import annotations

import base64
import hashlib
import time

from remote_cache import RemoteFxGraphCache

CACHE_ID = "fx-graph-v1"


def graph_hash(source: str) -> str:
    """A 52-character content hash, like upstream's FX graph keys."""
    digest = hashlib.sha256(source.encode()).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")[:52]


class Compiler:
    """Compiles source text; reuses cached artifacts when it can."""

    def __init__(self) -> None:
        self.compilations = 0

    def _compile(self, source: str) -> str:
        self.compilations += 1
        return source.upper()[::-1]

    def compile(self, source: str) -> str:
        """Return the artifact of ``source``, from the cache when it is there."""
        cache = RemoteFxGraphCache(CACHE_ID)  # built per compile, as upstream's callers do
        key = graph_hash(source)
        entry = cache.get(key)
        if entry is not None:
            return str(base64.b64decode(str(entry["data"])).decode())  # type: ignore[index, call-overload]
        started = time.monotonic()
        artifact = self._compile(source)
        cache.put(
            key,
            {
                "data": base64.b64encode(artifact.encode()).decode(),
                "time_taken_ms": int((time.monotonic() - started) * 1000),
            },
        )
        return artifact
