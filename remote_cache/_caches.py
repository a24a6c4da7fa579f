"""The JSON caches consumers use: Redis-backed (upstream's key format) and local files."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from remote_cache._backend import RemoteCacheBackend
from remote_cache._controller import RemoteCache, Sample
from remote_cache._local import LocalCacheBackend, default_local_root, safe_name
from remote_cache._redis import RedisRemoteCacheBackend
from remote_cache._serde import JsonDataTy, RemoteCacheJsonSerde
from remote_cache._settings import UNSET, Unset, resolve_max_value_bytes
from remote_cache._stats import cache_stats
from remote_cache._validation import check_cache_id, check_redis_cache_id
from remote_cache.exceptions import ValueTooLargeError

__all__ = [
    "JsonCache",
    "LocalAutotuneCache",
    "LocalCache",
    "RedisRemoteCache",
    "RemoteAOTAutogradCache",
    "RemoteAutotuneCache",
    "RemoteBundledAutotuneCache",
    "RemoteDynamoPGOCache",
    "RemoteFxGraphCache",
]

log = logging.getLogger("remote_cache")

# What the JSON serde raises for an entry it cannot read back (not JSON, not UTF-8, nested
# too deep, an int too long): ValueError; a RecursionError from an overridden _decode too.
_CORRUPT = (ValueError, RecursionError)


class JsonCache(RemoteCache[JsonDataTy]):
    """A cache of JSON values that fails open and treats corrupt entries as misses.

    Keys are mapped through ``_get_key`` before they reach the backend. An entry that is not
    JSON (or not UTF-8) is a miss: counted as ``corrupt`` under the cache's name and logged
    as one warning line, without a traceback.
    """

    fail_open: ClassVar[bool] = True

    def __init__(
        self,
        backend: RemoteCacheBackend[bytes] | None,
        *,
        max_value_bytes: int | Unset | None = UNSET,
    ) -> None:
        super().__init__(backend, RemoteCacheJsonSerde())
        self.max_value_bytes = resolve_max_value_bytes(max_value_bytes)
        """The largest encoded value stored (``REMOTE_CACHE_MAX_VALUE_BYTES``); None: no limit."""

    def _sized(self, key: str, data: bytes) -> bytes:
        """``data``, or ``ValueTooLargeError`` when it is over ``max_value_bytes``."""
        limit = self.max_value_bytes
        if limit is not None and len(data) > limit:
            raise ValueTooLargeError(
                f"{type(self).__name__}: the value of {key!r} encodes to {len(data):,} bytes, "
                f"over max_value_bytes={limit:,}; nothing was written",
                key=key,
                size=len(data),
                limit=limit,
            )
        return data

    def _get_key(self, key: str) -> str:
        """The backend key of ``key``."""
        return key

    def _decode_entry(self, backend_key: str, data: Any, sample: Sample) -> JsonDataTy:
        try:
            value = self._decode(data, sample)
        except _CORRUPT as exc:
            self._corrupt_entry(backend_key, f"{type(exc).__name__}: {exc}")
            return None
        if value is None:
            # JSON null: no put of ours writes it (None reads back as a miss), and a get
            # cannot serve it, so it is a miss, and a corrupt entry, not a hit.
            self._corrupt_entry(backend_key, "a stored JSON null cannot be served")
        return value

    def _corrupt_entry(self, backend_key: str, reason: str) -> None:
        """Count and log an entry that is read as a miss (the caller counts the miss)."""
        name = type(self).__name__
        cache_stats.corrupt(name)
        log.warning("%s: corrupt entry %r read as a miss (%s)", name, backend_key, reason)

    def _get(self, key: str, sample: Sample) -> JsonDataTy:
        backend_key = self._get_key(key)
        data = self._backend_get(backend_key)
        if data is None:
            return None
        return self._decode_entry(backend_key, data, sample)

    def _put(self, key: str, value: JsonDataTy, sample: Sample) -> None:
        data = self._sized(key, self._encode(value, sample))
        self._backend_put(self._get_key(key), data)

    def _get_many(self, keys: list[str], sample: Sample) -> dict[str, JsonDataTy]:
        backend_keys = {self._get_key(key): key for key in keys}
        found = self._backend_get_many(list(backend_keys))
        values: dict[str, JsonDataTy] = {}
        for backend_key, data in found.items():
            value = self._decode_entry(backend_key, data, sample)
            if value is not None:
                values[backend_keys[backend_key]] = value
        return values

    def _put_many(self, mapping: Mapping[str, JsonDataTy], sample: Sample) -> None:
        encoded = {
            self._get_key(key): self._sized(key, self._encode(value, sample))
            for key, value in mapping.items()
        }
        self._backend_put_many(encoded)


class RedisRemoteCache(JsonCache):
    """JSON values in Redis under upstream's keys, ``pt2:{cache_id}::{key}:c1``.

    A cache id that would make those keys ambiguous (one holding ``::``, or starting or
    ending with ``:``) is a ``ValueError`` before any I/O.

    The backend is a ``RedisRemoteCacheBackend`` configured from the environment, unless
    ``backend`` is given or ``backend_override_cls`` is set (then redis-py is not needed).
    """

    def __init__(
        self,
        cache_id: str,
        *,
        backend: RemoteCacheBackend[bytes] | None = None,
        max_value_bytes: int | Unset | None = UNSET,
    ) -> None:
        self.cache_id = check_redis_cache_id(cache_id)
        if backend is None and type(self).backend_override_cls is None:
            backend = RedisRemoteCacheBackend(cache_id)
        super().__init__(backend, max_value_bytes=max_value_bytes)
        version = 1  # upstream's key version: caches of either side read each other
        self._key_prefix = f"pt2:{cache_id}::"
        self._key_suffix = f":c{version}"

    def _get_key(self, key: str) -> str:
        return f"{self._key_prefix}{key}{self._key_suffix}"


class RemoteAutotuneCache(RedisRemoteCache):
    """Kernel autotuning results."""


class RemoteBundledAutotuneCache(RedisRemoteCache):
    """Bundles of autotuning results."""


class RemoteFxGraphCache(RedisRemoteCache):
    """Compiled FX graphs."""


class RemoteAOTAutogradCache(RedisRemoteCache):
    """AOTAutograd artifacts."""


class RemoteDynamoPGOCache(RedisRemoteCache):
    """Dynamo profile-guided optimisation data."""


class LocalCache(JsonCache):
    """JSON values in files under ``root/<cache_id>/`` on this machine.

    ``root`` defaults to ``REMOTE_CACHE_LOCAL_DIR``, else ``$XDG_CACHE_HOME/remote_cache``,
    else ``~/.cache/remote_cache``. Neither the cache id nor a key can choose a path outside
    its folder. ``mode`` sets the entries' permission bits (else ``REMOTE_CACHE_LOCAL_MODE``,
    else what the umask gives a new file).
    """

    def __init__(
        self,
        cache_id: str,
        root: str | os.PathLike[str] | None = None,
        *,
        backend: RemoteCacheBackend[bytes] | None = None,
        max_value_bytes: int | Unset | None = UNSET,
        mode: int | None = None,
    ) -> None:
        self.cache_id = check_cache_id(cache_id)
        self.root = Path(root) if root is not None else default_local_root()
        if backend is None and type(self).backend_override_cls is None:
            backend = LocalCacheBackend(self.root / safe_name(cache_id), mode=mode)
        super().__init__(backend, max_value_bytes=max_value_bytes)


class LocalAutotuneCache(LocalCache):
    """Autotuning results on this machine."""
