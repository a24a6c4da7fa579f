"""check_backend passes on our backends and catches planted backend defects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

from remote_cache import LocalCacheBackend, RedisRemoteCacheBackend
from remote_cache.testing import InMemoryBackend, RedisServer
from remote_cache.testing.conformance import check_backend


class EmptyBytesIsMissing(InMemoryBackend):
    def _get(self, key: str) -> Any:
        return self.store.get(key) or None


class KeepsFirstWrite(InMemoryBackend):
    def _put(self, key: str, data: Any) -> None:
        self.store.setdefault(key, data)


class TruncatesOver1KB(InMemoryBackend):
    def _put(self, key: str, data: Any) -> None:
        self.store[key] = data[:1024]


class TestPasses:
    """Our backends conform."""

    def test_in_memory(self) -> None:
        check_backend(InMemoryBackend, examples=50, random_seed=1)

    def test_redis_over_fakeredis(self) -> None:
        check_backend(
            lambda: RedisRemoteCacheBackend(
                client=fakeredis.FakeRedis(server=fakeredis.FakeServer())
            ),
            examples=50,
        )

    def test_local(self, tmp_path: Path) -> None:
        counter = iter(range(10**6))
        check_backend(lambda: LocalCacheBackend(tmp_path / str(next(counter))), examples=50)

    @pytest.mark.redis
    def test_real_redis(self, redis_server: RedisServer) -> None:

        def make() -> RedisRemoteCacheBackend:
            client = redis_server.client()
            client.flushall()
            return RedisRemoteCacheBackend(client=client)

        check_backend(make, examples=30)


class TestCatchesDefects:
    """Each planted defect fails the check with a message naming it."""

    @pytest.mark.parametrize(
        ("backend_cls", "message"),
        [
            (EmptyBytesIsMissing, "wrote 0 bytes"),
            (KeepsFirstWrite, "did not replace the first"),
            (TruncatesOver1KB, "wrote 1025 bytes"),
        ],
    )
    def test_defect_caught(self, backend_cls: type[InMemoryBackend], message: str) -> None:
        with pytest.raises(AssertionError, match=message):
            check_backend(backend_cls, examples=20)

    def test_shared_factory_caught(self) -> None:
        shared = InMemoryBackend()
        with pytest.raises(AssertionError, match="fresh backend"):
            check_backend(lambda: shared, examples=5)
