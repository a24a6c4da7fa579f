"""The stats registry: upstream's recording API, snapshots, thread safety, the exit dump."""

from __future__ import annotations

import logging
import threading

import pytest

from remote_cache import (
    CacheStat,
    RemoteCache,
    RemoteCacheBackend,
    RemoteCachePassthroughSerde,
    cache_stats,
    dump_cache_stats,
)
from remote_cache._stats import format_cache_stats


class DictBackend(RemoteCacheBackend[object]):
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, object] = {}

    def _get(self, key: str) -> object | None:
        return self.data.get(key)

    def _put(self, key: str, data: object) -> None:
        self.data[key] = data


class ThreadCache(RemoteCache[object]):
    pass


class TestRegistry:
    """Counters record, read, copy and reset as documented."""

    def test_upstream_recording_methods(self) -> None:
        cache_stats.get("x", None)
        cache_stats.get("x", 0)
        cache_stats.hit("x", 2)
        cache_stats.miss("x", 3)
        cache_stats.put("x")
        cache_stats.exception("x", 4)
        assert cache_stats["x"] == CacheStat(miss=4, hit=3, put=1, exception=4)

    def test_unknown_name_reads_as_zeros_without_being_created(self) -> None:
        assert cache_stats["never"] == CacheStat()
        assert "never" not in cache_stats
        assert len(cache_stats) == 0

    def test_snapshot_is_a_copy(self) -> None:
        cache_stats.hit("a")
        snapshot = cache_stats.snapshot()
        snapshot["a"].hit = 100
        cache_stats.hit("a")
        assert cache_stats["a"].hit == 2
        assert snapshot["a"].hit == 100

    def test_reset_clears(self) -> None:
        cache_stats.hit("a")
        cache_stats.reset()
        assert cache_stats.snapshot() == {}

    def test_latency_is_recorded(self) -> None:
        cache_stats.timed_get("b", 1, 2, 0.5)
        cache_stats.timed_put("b", 3, 0.25)
        stat = cache_stats["b"]
        assert (stat.hit, stat.miss, stat.put) == (1, 2, 3)
        assert stat.get_latency == pytest.approx(0.5)
        assert stat.put_latency == pytest.approx(0.25)
        assert CacheStat().get_latency is None
        assert CacheStat().put_latency is None

    def test_iteration_is_sorted(self) -> None:
        cache_stats.hit("b")
        cache_stats.hit("a")
        assert list(cache_stats) == ["a", "b"]
        assert "CacheStats(" in repr(cache_stats)

    def test_backend_counts_under_backend_name(self) -> None:
        backend = DictBackend()
        backend.put("k", b"")
        assert backend.get("k") == b""
        assert backend.get("other") is None
        stat = cache_stats["backend:DictBackend"]
        assert (stat.hit, stat.miss, stat.put) == (1, 1, 1)
        assert stat.get_calls == 2
        assert stat.put_calls == 1


class TestThreads:
    """Counts stay exact under contention."""

    def test_eight_threads_ten_thousand_operations_each(self) -> None:
        threads_count, operations = 8, 10_000
        backend = DictBackend()
        backend.data["present"] = "v"
        cache = ThreadCache(backend, RemoteCachePassthroughSerde())
        barrier = threading.Barrier(threads_count)

        def work(index: int) -> None:
            barrier.wait()
            for i in range(operations):
                if i % 4 == 0:
                    cache.put(f"k{index}", i)
                elif i % 4 == 1:
                    cache.get("absent")
                else:
                    cache.get("present")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = threads_count * operations
        for name in ("ThreadCache", "backend:DictBackend"):
            stat = cache_stats[name]
            assert stat.put == total // 4, name
            assert stat.miss == total // 4, name
            assert stat.hit == total // 2, name
            assert stat.exception == 0


class TestDump:
    """The exit dump keeps upstream's format."""

    def test_format_lines(self) -> None:
        cache_stats.hit("b", 2)
        cache_stats.put("a")
        assert format_cache_stats(cache_stats.snapshot()) == (
            "Cache Metrics:\n"
            "  a: {hit: 0, miss: 0, put: 1, exception: 0}\n"
            "  b: {hit: 2, miss: 0, put: 0, exception: 0}"
        )

    def test_dump_logs_at_info(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="remote_cache")
        dump_cache_stats()
        assert caplog.messages == ["Cache Metrics: None"]
        cache_stats.miss("RemoteFxGraphCache")
        dump_cache_stats()
        assert caplog.messages[-1] == (
            "Cache Metrics:\n  RemoteFxGraphCache: {hit: 0, miss: 1, put: 0, exception: 0}"
        )

    def test_dump_is_silent_below_info(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="remote_cache")
        cache_stats.hit("a")
        dump_cache_stats()
        assert caplog.records == []

    def test_dump_registered_at_exit(self, pytester: pytest.Pytester) -> None:
        script = pytester.makepyfile(
            """
            import logging
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            from remote_cache import cache_stats
            cache_stats.hit("RemoteFxGraphCache")
            """
        )
        result = pytester.runpython(script)
        assert "Cache Metrics:" in result.stderr.str()
        assert (
            "  RemoteFxGraphCache: {hit: 1, miss: 0, put: 0, exception: 0}" in result.stderr.lines
        )
