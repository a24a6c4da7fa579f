"""The public surface: __all__ is sorted, complete, documented."""

from __future__ import annotations

import inspect

import remote_cache
from remote_cache import exceptions

UPSTREAM_NAMES = {
    "RemoteCacheBackend",
    "RemoteCacheSerde",
    "RemoteCacheJsonSerde",
    "RemoteCachePassthroughSerde",
    "JsonDataTy",
    "RemoteCache",
    "RedisRemoteCacheBackend",
    "RedisRemoteCache",
    "RemoteAutotuneCache",
    "RemoteBundledAutotuneCache",
    "RemoteFxGraphCache",
    "RemoteAOTAutogradCache",
    "RemoteDynamoPGOCache",
    "create_cache",
    "cache_stats",
    "dump_cache_stats",
    "LocalCacheBackend",
    "LocalCache",
    "LocalAutotuneCache",
}


class TestExports:
    """Every upstream name is here, sorted, resolvable and documented."""

    def test_all_sorted_and_resolvable(self) -> None:
        assert remote_cache.__all__ == sorted(remote_cache.__all__)
        for name in remote_cache.__all__:
            assert hasattr(remote_cache, name), name

    def test_upstream_names_kept(self) -> None:
        assert set(remote_cache.__all__) >= UPSTREAM_NAMES | {
            "CacheStat",
            "CacheStats",
            "RemoteCacheError",
        }

    def test_public_names_documented(self) -> None:
        for name in remote_cache.__all__:
            item = getattr(remote_cache, name)
            if inspect.isclass(item) or inspect.isfunction(item):
                assert (item.__doc__ or "").strip(), name

    def test_exception_tree(self) -> None:
        for name in exceptions.__all__:
            assert issubclass(getattr(exceptions, name), exceptions.RemoteCacheError)
        assert issubclass(exceptions.BackendUnavailableError, ConnectionError)
        assert issubclass(exceptions.BackendTimeoutError, TimeoutError)
        assert issubclass(exceptions.ConfigurationError, ValueError)
        assert issubclass(exceptions.MissingDependencyError, ImportError)
        assert not issubclass(exceptions.BackendCommandError, ConnectionError)
