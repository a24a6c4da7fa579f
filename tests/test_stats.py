"""The stats registry: upstream's recording API, snapshots, thread safety, the exit dump."""

from __future__ import annotations

import _thread
import gc
import logging
import threading
import time
import tracemalloc
from collections.abc import Callable

import pytest

import remote_cache._stats as stats_module
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


SHORT_LIVED = 2_000


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass (``_thread`` threads have no join)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def record_three_names() -> None:
    cache_stats.hit("short")
    cache_stats.timed_put("short", 2, 0.5)
    cache_stats.miss("other")
    cache_stats.corrupt("third")


def run_threading_threads(count: int, batch: int = 50) -> None:
    for start in range(0, count, batch):
        threads = [
            threading.Thread(target=record_three_names) for _ in range(min(batch, count - start))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def run_raw_threads(count: int) -> None:
    """Threads started by ``_thread``, which ``threading`` never sees end."""
    done = threading.Semaphore(0)

    def work() -> None:
        try:
            record_three_names()
        finally:
            done.release()

    for _ in range(count):
        _thread.start_new_thread(work, ())
    for _ in range(count):
        assert done.acquire(timeout=30)


def assert_exact(count: int) -> None:
    snapshot = cache_stats.snapshot()
    assert snapshot["short"] == CacheStat(
        hit=count, put=2 * count, put_calls=count, put_seconds=0.5 * count
    )
    assert snapshot["other"] == CacheStat(miss=count)
    assert snapshot["third"] == CacheStat(corrupt=count)


class TestShortLivedThreads:
    """A thread's counts outlive it, but its shard does not: memory follows the live threads."""

    def test_threading_threads_are_folded_when_they_end(self) -> None:
        live = cache_stats._shard_count()  # this thread's, when an earlier test recorded here
        run_threading_threads(SHORT_LIVED)
        # No read happened in between: the shards were folded as each thread ended.
        assert cache_stats._shard_count() == live
        assert_exact(SHORT_LIVED)

    def test_raw_threads_are_folded_when_they_end(self) -> None:
        cache_stats.hit("short")  # this thread keeps its shard
        live = cache_stats._shard_count()
        run_raw_threads(SHORT_LIVED)
        assert wait_for(lambda: cache_stats._shard_count() == live), cache_stats._shard_count()
        snapshot = cache_stats.snapshot()
        assert snapshot["short"].hit == SHORT_LIVED + 1
        assert snapshot["other"].miss == SHORT_LIVED
        assert cache_stats._shard_count() == live

    def test_exact_while_readers_hold_the_lock(self) -> None:
        """Threads ending while another thread reads (holding the lock) lose no count."""
        live = cache_stats._shard_count()
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                cache_stats.snapshot()
                cache_stats._shard_count()

        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        try:
            run_threading_threads(SHORT_LIVED // 2)
            run_raw_threads(SHORT_LIVED // 2)
        finally:
            stop.set()
            for reader in readers:
                reader.join()
        # the readers ended too
        assert wait_for(lambda: cache_stats._shard_count() == live), cache_stats._shard_count()
        assert_exact(SHORT_LIVED)

    def test_memory_per_ended_thread(self) -> None:
        """What the registry allocates does not grow with the number of threads that ended."""
        # Warm up as measured: the common counts exist, and the registry's containers have
        # grown once to hold the most threads alive at a time (a raw batch is 1,000 at once).
        run_threading_threads(50)
        live = cache_stats._shard_count()
        run_raw_threads(SHORT_LIVED // 2)
        assert wait_for(lambda: cache_stats._shard_count() == live)
        gc.collect()
        # A container that grows once (more threads alive at a time on a loaded machine than
        # in the warm-up) is not growth per ended thread; a leak grows in every round.
        per_thread = []
        for _ in range(3):
            tracemalloc.start()
            try:
                only_ours = [tracemalloc.Filter(True, stats_module.__file__)]
                before = tracemalloc.take_snapshot().filter_traces(only_ours)
                run_threading_threads(SHORT_LIVED // 2)
                run_raw_threads(SHORT_LIVED // 2)
                assert wait_for(lambda: cache_stats._shard_count() == live)
                gc.collect()
                after = tracemalloc.take_snapshot().filter_traces(only_ours)
            finally:
                tracemalloc.stop()
            grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
            per_thread.append(grown / SHORT_LIVED)
            if per_thread[-1] < 16:
                break
        assert per_thread[-1] < 16, f"bytes per ended thread, round by round: {per_thread}"
        assert_exact(50 + SHORT_LIVED // 2 + SHORT_LIVED * len(per_thread))


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

    def test_every_field_on_request(self) -> None:
        stat = CacheStat(hit=1, miss=2, put=3, exception=4, skipped=5, corrupt=6, fail_open=7)
        stat.get_calls, stat.get_seconds, stat.put_calls, stat.put_seconds = 8, 0.5, 9, 0.25
        upstream = "{hit: 1, miss: 2, put: 3, exception: 4}"
        assert str(stat) == f"{stat}" == format(stat) == upstream
        assert f"{stat:all}" == (
            "{hit: 1, miss: 2, put: 3, exception: 4, skipped: 5, corrupt: 6, fail_open: 7, "
            "get_calls: 8, get_seconds: 0.5, put_calls: 9, put_seconds: 0.25}"
        )
        assert f"{CacheStat():all}".count(": 0") == 11
        with pytest.raises(ValueError, match="Unknown format 'full' for CacheStat"):
            format(stat, "full")

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
