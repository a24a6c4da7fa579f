"""The model the cache state machine predicts with, and the caches it drives by default.

An ``_Entry`` is what the model says a backend key holds; ``_Driven`` wraps one cache under
test with what predicting it needs (its counters' name, its kind, the samples it logged).
Hypothesis-free: the rules that use these are in ``_stateful_machine``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from remote_cache import (
    LocalCache,
    RemoteAOTAutogradCache,
    RemoteAutotuneCache,
    RemoteCache,
    RemoteCacheBackend,
    RemoteCachePassthroughSerde,
    RemoteFxGraphCache,
)
from remote_cache._caches import JsonCache
from remote_cache._serde import JsonDataTy

__all__ = ["COUNTERS", "RawBytesCache", "default_caches"]

COUNTERS = ("hit", "miss", "put", "exception", "skipped", "corrupt", "fail_open")
"""The ``CacheStat`` counters the machine predicts exactly."""

_CORRUPT = (ValueError, RecursionError)


class RawBytesCache(RemoteCache[bytes]):
    """Bytes under the caller's keys, unchanged; backend errors re-raise, as upstream's do."""

    def __init__(self, backend: RemoteCacheBackend[bytes] | None) -> None:
        super().__init__(backend, RemoteCachePassthroughSerde())


def default_caches(backend: RemoteCacheBackend[Any]) -> list[RemoteCache[Any]]:
    """The caches the machine drives by default, all over ``backend``.

    Two Redis caches share one cache id (so each reads the other's entries while keeping
    its own counters), a third has its own id, and ``LocalCache`` and ``RawBytesCache``
    share the bare keys, so each reads the other's bytes (JSON, or corrupt JSON).
    """
    return [
        RemoteFxGraphCache("graphs", backend=backend),
        RemoteAutotuneCache("graphs", backend=backend),
        RemoteAOTAutogradCache("aot", backend=backend),
        LocalCache("local", backend=backend),
        RawBytesCache(backend),
    ]


def _reference_bytes(value: JsonDataTy) -> bytes:
    """What upstream writes for ``value``."""
    return bytes(json.dumps(value), "ascii")


def _canonical(value: Any) -> str:
    """A form that tells apart what ``==`` does not (1 and 1.0 and True, -0.0 and 0.0)."""
    return json.dumps(value) if not isinstance(value, bytes) else repr(value)


@dataclasses.dataclass
class _Entry:
    """What a backend key holds: a JSON value a cache wrote, or raw bytes."""

    value: JsonDataTy = None
    raw: bytes | None = None

    def as_bytes(self) -> bytes:
        return self.raw if self.raw is not None else _reference_bytes(self.value)

    def decoded(self) -> tuple[JsonDataTy, bool]:
        """The value a JSON cache reads, and whether the entry is corrupt."""
        if self.raw is None:
            return self.value, False
        try:
            value = json.loads(self.raw)
        except _CORRUPT:
            return None, True
        return value, value is None  # a stored null cannot be served: a corrupt miss


class _Sample:
    """The logging sample the machine gives each call."""

    def __init__(self) -> None:
        self.fail_reason: str | None = None


@dataclasses.dataclass
class _Driven:
    """One cache under test, with what the machine needs to predict it."""

    cache: RemoteCache[Any]
    name: str
    is_json: bool
    samples: list[_Sample]

    def backend_key(self, key: str) -> str:
        if isinstance(self.cache, JsonCache):
            return self.cache._get_key(key)
        return key


def _observe_samples(cache: RemoteCache[Any]) -> list[_Sample]:
    """Make ``cache`` create a sample per call and keep them (this instance only).

    Setting the hooks on the instance is enough: the controller notices and calls them.
    """
    samples: list[_Sample] = []
    cache._create_sample = _Sample  # type: ignore[method-assign]
    cache._log_sample = samples.append  # type: ignore[method-assign,assignment]
    return samples


def _canonical_map(mapping: Mapping[str, Any]) -> dict[str, str]:
    return {key: _canonical(value) for key, value in mapping.items()}
