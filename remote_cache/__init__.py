"""A shared cache of build artifacts: JSON values under content-hash keys.

Kept in Redis, Redis Cluster or on local disk, byte-compatible with PyTorch Inductor's
remote cache, failing open when the backend is slow, down or holding garbage.
"""

from __future__ import annotations

from remote_cache._backend import RemoteCacheBackend
from remote_cache._caches import (
    LocalAutotuneCache,
    LocalCache,
    RedisRemoteCache,
    RemoteAOTAutogradCache,
    RemoteAutotuneCache,
    RemoteBundledAutotuneCache,
    RemoteDynamoPGOCache,
    RemoteFxGraphCache,
)
from remote_cache._controller import RemoteCache
from remote_cache._factory import create_cache
from remote_cache._local import LocalCacheBackend
from remote_cache._redis import RedisRemoteCacheBackend
from remote_cache._serde import (
    JsonDataTy,
    RemoteCacheJsonSerde,
    RemoteCachePassthroughSerde,
    RemoteCacheSerde,
)
from remote_cache._stats import CacheStat, CacheStats, cache_stats, dump_cache_stats
from remote_cache.exceptions import (
    BackendCommandError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    ConfigurationError,
    MissingDependencyError,
    RemoteCacheError,
    ValueTooLargeError,
)

__all__ = [
    "BackendCommandError",
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CacheStat",
    "CacheStats",
    "CircuitOpenError",
    "ConfigurationError",
    "JsonDataTy",
    "LocalAutotuneCache",
    "LocalCache",
    "LocalCacheBackend",
    "MissingDependencyError",
    "RedisRemoteCache",
    "RedisRemoteCacheBackend",
    "RemoteAOTAutogradCache",
    "RemoteAutotuneCache",
    "RemoteBundledAutotuneCache",
    "RemoteCache",
    "RemoteCacheBackend",
    "RemoteCacheError",
    "RemoteCacheJsonSerde",
    "RemoteCachePassthroughSerde",
    "RemoteCacheSerde",
    "RemoteDynamoPGOCache",
    "RemoteFxGraphCache",
    "ValueTooLargeError",
    "cache_stats",
    "create_cache",
    "dump_cache_stats",
]

__version__ = "0.1.0"
