"""Limits against real redis-server processes: the client's own pool, the server's value size
limit, and a reply that ends after the call's deadline."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from remote_cache import (
    BackendCommandError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    RedisRemoteCacheBackend,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache.testing import OutageProxy, RedisClusterFixture
from remote_cache.testing._redis_server import RedisServer

pytestmark = pytest.mark.redis

BACKEND_STATS = "backend:RedisRemoteCacheBackend"


class TestLocalPoolLimit:
    """A pool limit of this process (``max_connections``) is not a server failure: calls wait
    for a free connection within their deadline, and one that gets none fails alone."""

    def test_more_threads_than_connections_all_read(self, redis_server: RedisServer) -> None:
        redis_server.client().set("k", b"v")
        backend = RedisRemoteCacheBackend(
            url=f"{redis_server.url}?max_connections=2", timeout=1, retry_after=30
        )
        results: Counter[object] = Counter()

        def read() -> None:
            for _ in range(50):
                try:
                    results[backend.get("k")] += 1
                except BackendError as exc:
                    results[type(exc).__name__] += 1

        threads = [threading.Thread(target=read) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert results == {b"v": 300}
        assert not backend.breaker.is_open
        stats = cache_stats[BACKEND_STATS]
        assert (stats.hit, stats.skipped, stats.exception) == (300, 0, 0)

    def test_waiting_for_a_connection_then_timing_out_opens_no_breaker(
        self, redis_server: RedisServer
    ) -> None:
        # Each reply takes 0.3 s: a call that waits its turn behind two others reaches the
        # server with too little of its 1 s deadline left, and times out there.
        redis_server.client().set("k", b"v")
        with OutageProxy.for_url(redis_server.url) as proxy:
            proxy.latency(0.3)
            backend = RedisRemoteCacheBackend(
                url=f"{proxy.url}?max_connections=2", timeout=1.0, retry_after=30
            )
            results: Counter[object] = Counter()

            def read() -> None:
                for _ in range(3):
                    try:
                        results[backend.get("k")] += 1
                    except BackendTimeoutError:
                        results["timeout"] += 1  # would say the server failed
                    except BackendError:
                        results["waited"] += 1

            threads = [threading.Thread(target=read) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
        assert results["waited"], results  # the case happened
        assert results["timeout"] == 0, results
        assert not backend.breaker.is_open
        assert cache_stats[BACKEND_STATS].skipped == 0

    @pytest.fixture
    def all_in_use(
        self, redis_server: RedisServer
    ) -> Iterator[tuple[RedisRemoteCacheBackend, Any]]:
        """A backend whose pool's two connections are both taken by someone else."""
        redis_server.client().set("k", b"v")
        backend = RedisRemoteCacheBackend(
            url=f"{redis_server.url}?max_connections=2", timeout=0.2, retry_after=30
        )
        pool = backend.client().connection_pool
        taken = [pool.get_connection(), pool.get_connection()]
        yield backend, taken
        for connection in taken:
            pool.release(connection)

    def test_no_free_connection_by_the_deadline_fails_that_call_only(
        self, all_in_use: tuple[RedisRemoteCacheBackend, Any]
    ) -> None:
        backend, taken = all_in_use
        started = time.monotonic()
        with pytest.raises(BackendError) as raised:
            backend.get("k")
        elapsed = time.monotonic() - started
        assert not isinstance(raised.value, BackendUnavailableError)
        assert "connections of this process's pool are in use" in str(raised.value)
        assert 0.15 < elapsed < 0.6, elapsed  # it waited for a connection, until its deadline
        assert not backend.breaker.is_open
        assert cache_stats[BACKEND_STATS].exception == 1
        pool = backend.client().connection_pool
        pool.release(taken.pop())
        assert backend.get("k") == b"v"  # at once: nothing to wait for, no breaker to wait out

    def test_a_released_connection_goes_to_the_waiting_call(
        self, all_in_use: tuple[RedisRemoteCacheBackend, Any]
    ) -> None:
        backend, taken = all_in_use
        pool = backend.client().connection_pool
        released = taken.pop()
        timer = threading.Timer(0.05, pool.release, args=(released,))
        timer.start()
        try:
            started = time.monotonic()
            assert backend.get("k") == b"v"
            assert time.monotonic() - started < 0.19  # it got the connection, before its deadline
        finally:
            timer.join()

    def test_a_probe_ended_by_the_pool_limit_lets_the_next_call_probe(
        self, all_in_use: tuple[RedisRemoteCacheBackend, Any]
    ) -> None:
        backend, taken = all_in_use
        backend.breaker.record_failure()
        backend._retry_after = 0
        with pytest.raises(BackendError):
            backend.get("k")  # the probe: no connection, no verdict on the server
        assert backend.breaker.is_open
        backend.client().connection_pool.release(taken.pop())
        assert backend.get("k") == b"v"  # probes again at once, rather than after a lease
        assert not backend.breaker.is_open


@pytest.fixture(scope="module")
def small_limit_server() -> Iterator[RedisServer]:
    """A server that refuses bulk strings over 1 MB (``proto-max-bulk-len``)."""
    with RedisServer(config={"proto-max-bulk-len": "1mb"}) as server:
        yield server


class TestValueOverServerLimit:
    """A value over the server's ``proto-max-bulk-len`` is a dropped put, not an outage.

    The server replies ``-ERR Protocol error: invalid bulk length`` as soon as it reads the
    length, and closes the connection with the rest of the value unread: the kernel resets
    it, so the client's send usually fails (broken pipe, reset) with that reply waiting."""

    BIG = b"x" * (2 << 20)

    @pytest.mark.parametrize("write", ["put", "put_many", "put_many_ttl"])
    def test_refused_writes_leave_the_server_usable(
        self, small_limit_server: RedisServer, write: str
    ) -> None:
        backend = RedisRemoteCacheBackend(
            url=small_limit_server.url,
            timeout=1,
            retry_after=30,
            expire=60 if write == "put_many_ttl" else None,
        )

        def refused_write() -> None:
            if write == "put":
                backend.put("big", self.BIG)
            else:
                backend.put_many({"small-first": b"s", "big": self.BIG})

        for round_number in range(8):
            with pytest.raises(BackendCommandError, match="invalid bulk length"):
                refused_write()
            assert not backend.breaker.is_open, round_number
            backend.put("small", b"s")  # at once, on a new connection
            assert backend.get("small") == b"s"
        assert backend.get("big") is None
        assert cache_stats[BACKEND_STATS].skipped == 0

    JUST_OVER = b"y" * ((1 << 20) + 100)  # sent whole, as a rule: then read, it is refused

    @pytest.mark.parametrize("expire", [None, 60], ids=["mset", "pipeline"])
    def test_replies_after_the_refusal_are_no_outage(
        self, small_limit_server: RedisServer, expire: int | None
    ) -> None:
        # When the whole batch was sent before the server refused it, the refusal comes back
        # as replies are read, and the replies after it meet the server's close.
        backend = RedisRemoteCacheBackend(
            url=small_limit_server.url, timeout=1, retry_after=30, expire=expire
        )
        for round_number in range(30):
            with pytest.raises(BackendCommandError, match="invalid bulk length"):
                backend.put_many({"a-before": b"a", "big": self.JUST_OVER, "z-after": b"z"})
            assert not backend.breaker.is_open, round_number
            assert backend.get("a-before") in (None, b"a")  # at once, on a new connection
        assert cache_stats[BACKEND_STATS].skipped == 0

    def test_a_fail_open_cache_drops_it_and_counts_it(
        self, small_limit_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", small_limit_server.url)
        cache = RemoteFxGraphCache("limits")
        cache.put("small", {"v": 1})
        for _ in range(4):
            cache.put("big", {"data": "x" * (2 << 20)})
            assert cache.get("small") == {"v": 1}
        stats = cache_stats["RemoteFxGraphCache"]
        assert (stats.fail_open, stats.put, stats.hit) == (4, 1, 4)
        assert cache_stats[BACKEND_STATS].skipped == 0


class TestValueOverTheLimitOnACluster:
    """The same refusal in a cluster batch (one slot, so one pipeline) opens no breaker."""

    def test_same_slot_batch(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        cluster = remote_cache_redis_cluster.cluster
        clients = [node.client() for node in cluster.nodes]
        try:
            for client in clients:
                client.config_set("proto-max-bulk-len", "1mb")
            backend = RedisRemoteCacheBackend(
                url=cluster.url, cluster=True, timeout=1, retry_after=30
            )
            big = b"y" * ((1 << 20) + 100)
            for round_number in range(10):
                with pytest.raises(BackendCommandError, match="invalid bulk length"):
                    backend.put_many({"{t}a": b"a", "{t}big": big, "{t}z": b"z"})
                assert backend.get_many(["{t}a", "{t}z"]) is not None, round_number
            assert cache_stats[BACKEND_STATS].skipped == 0
        finally:
            for client in clients:
                client.config_set("proto-max-bulk-len", "512mb")
                client.close()


class TestReplyDeadline:
    """The deadline covers the whole reply: one not in full by then is a timeout (a miss)."""

    def test_a_reply_completed_after_the_deadline_is_a_timeout(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        redis_server.client().set("k", b"v")
        backend = RedisRemoteCacheBackend(url=redis_server.url, timeout=0.2, retry_after=0)
        client = backend.client()
        parse = client.parse_response

        def parsed_late(*args: Any, **kwargs: Any) -> Any:
            reply = parse(*args, **kwargs)  # read in full before the deadline...
            time.sleep(0.25)  # ...then, as a large value's last chunk, done after it
            return reply

        monkeypatch.setattr(client, "parse_response", parsed_late)
        with pytest.raises(BackendTimeoutError):
            backend.get("k")
        monkeypatch.undo()
        assert backend.get("k") == b"v"  # the connection was left clean

    def test_a_large_value_overshoots_by_little(self, redis_server: RedisServer) -> None:
        timeout = 0.05
        redis_server.client().set("big", b"x" * (40 << 20))  # ~0.1 s to read on loopback
        backend = RedisRemoteCacheBackend(url=redis_server.url, timeout=timeout, retry_after=0)
        for _ in range(3):
            started = time.monotonic()
            try:
                value = backend.get("big")
            except BackendTimeoutError:
                assert time.monotonic() - started < timeout + 0.1
            else:
                assert value is not None
                assert len(value) == 40 << 20
                assert time.monotonic() - started < timeout + 0.01, "a hit after the deadline"
        healthy = RedisRemoteCacheBackend(url=redis_server.url, timeout=1)
        assert healthy.get("absent") is None  # the server is fine
