"""The Redis caches against real redis-server processes started by this suite."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from remote_cache import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    RedisRemoteCacheBackend,
    RemoteAutotuneCache,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache.testing._proxy import OutageProxy
from remote_cache.testing._redis_server import RedisServer
from tests.conftest import BlackHole

pytestmark = pytest.mark.redis

VALUE = {"data": "gASVAAAA" * 10, "time_taken_ms": 42, "é": [1.5, 2**70]}


@pytest.fixture
def count_commands(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[RedisRemoteCacheBackend], list[Any]]:
    """Wrap a backend's client so that every command sent is listed."""

    def install(backend: RedisRemoteCacheBackend) -> list[Any]:
        client = backend.client()
        sent: list[Any] = []
        original = client.execute_command

        def counting(*args: Any, **options: Any) -> Any:
            sent.append(args)
            return original(*args, **options)

        monkeypatch.setattr(client, "execute_command", counting)
        return sent

    return install


class TestRoundTrips:
    """Values written through the environment's settings come back equal."""

    def test_url_from_environment(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)
        RemoteFxGraphCache("fx-graph-v1").put("k" * 52, VALUE)
        assert RemoteFxGraphCache("fx-graph-v1").get("k" * 52) == VALUE
        assert redis_server.client().get(f"pt2:fx-graph-v1::{'k' * 52}:c1") is not None
        assert RemoteFxGraphCache("fx-graph-v1").get("absent") is None
        assert cache_stats["RemoteFxGraphCache"].hit == 1
        assert cache_stats["RemoteFxGraphCache"].miss == 1

    def test_upstream_host_and_port(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TORCHINDUCTOR_REDIS_HOST", redis_server.host)
        monkeypatch.setenv("TORCHINDUCTOR_REDIS_PORT", str(redis_server.port))
        cache = RemoteAutotuneCache("ab" * 32)
        cache.put("cd" * 32, {"num_warps": 4, "num_stages": 2, "found_by_coordesc": False})
        assert cache.get("cd" * 32) == {"num_warps": 4, "num_stages": 2, "found_by_coordesc": False}

    def test_batch(self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)
        cache = RemoteFxGraphCache("batch")
        cache.put_many({f"k{i}": {"i": i} for i in range(50)})
        found = cache.get_many([f"k{i}" for i in range(60)])
        assert found == {f"k{i}": {"i": i} for i in range(50)}

    def test_ttl(self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)
        monkeypatch.setenv("TORCHINDUCTOR_REDIS_EXPIRE", "1")
        cache = RemoteFxGraphCache("ttl")
        cache.put("k", VALUE)
        cache.put_many({"b": 1})
        client = redis_server.client()
        assert client.ttl("pt2:ttl::k:c1") == 1
        assert client.ttl("pt2:ttl::b:c1") == 1
        assert cache.get("k") == VALUE
        deadline = time.monotonic() + 3
        while cache.get("k") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cache.get("k") is None

    def test_no_ttl_by_default(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)
        RemoteFxGraphCache("ttl").put("k", 1)
        assert redis_server.client().ttl("pt2:ttl::k:c1") == -1


class TestAuthAndSockets:
    """Passwords and unix sockets from the URL."""

    @pytest.fixture
    def secured(self) -> Iterator[RedisServer]:
        with RedisServer(password="s3cret-pw", unix_socket=True) as server:
            yield server

    def test_password_url(self, secured: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", secured.url)
        cache = RemoteFxGraphCache("auth")
        cache.put("k", VALUE)
        assert cache.get("k") == VALUE
        assert "s3cret-pw" not in repr(cache.backend)

    def test_wrong_password_fails_open_without_leaking(
        self,
        secured: RedisServer,
        monkeypatch: pytest.MonkeyPatch,
        caplog_rc: pytest.LogCaptureFixture,
    ) -> None:
        url = secured.url.replace("s3cret-pw", "wrong-pw")
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", url)
        cache = RemoteFxGraphCache("auth")
        cache.put("k", VALUE)
        assert cache.get("k") is None
        assert cache_stats["RemoteFxGraphCache"].fail_open == 2
        assert cache_stats["backend:RedisRemoteCacheBackend"].exception == 1
        logged = "\n".join(r.getMessage() for r in caplog_rc.records)
        assert "wrong-pw" not in logged
        assert "s3cret-pw" not in logged
        assert "AuthenticationError" in logged

    def test_missing_password_fails_open(
        self, secured: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", f"redis://{secured.host}:{secured.port}/0")
        cache = RemoteFxGraphCache("auth")
        assert cache.get("k") is None
        assert cache_stats["RemoteFxGraphCache"].fail_open == 1

    def test_unix_socket_url(self, secured: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", secured.unix_url)
        cache = RemoteFxGraphCache("unix")
        cache.put("k", VALUE)
        assert cache.get("k") == VALUE
        assert secured.client().get("pt2:unix::k:c1") is not None


class TestServerKilled:
    """A crash mid-use: misses and dropped puts within the timeout, then recovery."""

    def test_kill_breaker_restart(
        self,
        fresh_redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch,
        count_commands: Callable[[RedisRemoteCacheBackend], list[Any]],
        caplog_rc: pytest.LogCaptureFixture,
    ) -> None:
        server = fresh_redis_server
        timeout, cool_down = 0.5, 1.0
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", server.url)
        monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", str(timeout))
        monkeypatch.setenv("REMOTE_CACHE_REDIS_RETRY_AFTER", str(cool_down))
        cache = RemoteFxGraphCache("kill")
        assert isinstance(cache.backend, RedisRemoteCacheBackend)
        sent = count_commands(cache.backend)
        cache.put("before", VALUE)
        assert cache.get("before") == VALUE

        server.kill()
        started = time.monotonic()
        assert cache.get("before") is None
        cache.put("during", VALUE)
        assert time.monotonic() - started < timeout + 0.5
        commands_when_opened = len(sent)

        # A new cache per compile: same server, same breaker, no network call.
        for _ in range(20):
            again = RemoteFxGraphCache("kill")
            assert again.get("before") is None
            again.put("x", 1)
        assert len(sent) == commands_when_opened, "the open breaker made no network call"
        stat = cache_stats["backend:RedisRemoteCacheBackend"]
        assert stat.exception == 1
        assert stat.skipped == 41
        assert stat.put == 1, "dropped puts are not counted as puts"
        cache_stat = cache_stats["RemoteFxGraphCache"]
        assert (cache_stat.hit, cache_stat.put, cache_stat.fail_open) == (1, 1, 42)
        assert len([r for r in caplog_rc.records if r.levelno >= logging.WARNING]) == 1

        server.restart()
        time.sleep(cool_down + 0.1)
        cache.put("after", VALUE)
        assert cache.get("after") == VALUE
        assert RemoteFxGraphCache("kill").get("after") == VALUE
        assert not cache.backend.breaker.is_open
        assert any("works again" in r.getMessage() for r in caplog_rc.records)

    def test_refused_from_the_start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from remote_cache.testing._processes import free_port

        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        started = time.monotonic()
        cache = RemoteFxGraphCache("refused")
        assert cache.get("k") is None
        cache.put("k", 1)
        assert time.monotonic() - started < 1.5
        assert cache_stats["RemoteFxGraphCache"].fail_open == 2


class TestBlackHole:
    """A server that accepts and never answers costs at most the timeout per call."""

    @pytest.mark.parametrize("retry_after", ["0", "30"])
    def test_every_call_bounded(
        self, black_hole: BlackHole, monkeypatch: pytest.MonkeyPatch, retry_after: str
    ) -> None:
        timeout = 0.3
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", f"redis://127.0.0.1:{black_hole.port}/0")
        monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", str(timeout))
        monkeypatch.setenv("REMOTE_CACHE_REDIS_RETRY_AFTER", retry_after)
        cache = RemoteFxGraphCache("hole")
        durations = []
        for operation in range(6):
            started = time.monotonic()
            if operation % 2:
                cache.put("k", VALUE)
            else:
                assert cache.get("k") is None
            durations.append(time.monotonic() - started)
        assert max(durations) < timeout + 0.5, durations
        backend_stat = cache_stats["backend:RedisRemoteCacheBackend"]
        if retry_after == "0":
            assert backend_stat.exception == 6
        else:
            assert (backend_stat.exception, backend_stat.skipped) == (1, 5)
            assert sum(durations) < timeout + 0.5


class TestTls:
    """rediss:// with the CA works; without it the cache fails open, password unseen."""

    def test_trusted_and_untrusted(
        self, monkeypatch: pytest.MonkeyPatch, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        with RedisServer(tls=True, password="tls-pw") as server:
            assert server.url.startswith("rediss://")
            monkeypatch.setenv(
                "REMOTE_CACHE_REDIS_URL", f"{server.url}?ssl_ca_certs={server.ca_file}"
            )
            cache = RemoteFxGraphCache("tls")
            cache.put("k", VALUE)
            assert cache.get("k") == VALUE
            assert server.client().get("pt2:tls::k:c1") is not None

            monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", server.url)  # no CA: untrusted
            monkeypatch.setenv("REMOTE_CACHE_REDIS_PORT", "1")  # ignored: the URL wins
            untrusted = RemoteFxGraphCache("tls")
            assert untrusted.get("k") is None
            untrusted.put("k", 1)
            assert cache_stats["RemoteFxGraphCache"].fail_open == 2
            logged = caplog_rc.text
            assert "CERTIFICATE_VERIFY_FAILED" in logged
            assert "tls-pw" not in logged


class TestNeverReachableCluster:
    """A cluster never reached: once the breaker is open, every call returns at once."""

    def test_skipped_calls_do_not_connect(
        self, black_hole: BlackHole, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": black_hole.port,
            "cluster": True,
            "timeout": 0.3,
        }
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            RedisRemoteCacheBackend(**settings).get("k")  # the first call pays the timeout
        assert time.monotonic() - started < 2 * 0.3 + 0.5
        calls: list[Callable[[RedisRemoteCacheBackend], object]] = [
            lambda backend: backend.get("k"),
            lambda backend: backend.put("k", b"v"),
            lambda backend: backend.get_many(["a", "b"]),
            lambda backend: backend.put_many({"a": b"1"}),
        ]
        reused = RedisRemoteCacheBackend(**settings)
        for call in calls * 2:
            for backend in (reused, RedisRemoteCacheBackend(**settings)):  # new one per compile
                started = time.monotonic()
                with pytest.raises(CircuitOpenError):
                    call(backend)
                assert time.monotonic() - started < 0.05
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", f"redis://127.0.0.1:{black_hole.port}/0")
        monkeypatch.setenv("REMOTE_CACHE_REDIS_CLUSTER", "1")
        monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", "0.3")
        started = time.monotonic()
        for _ in range(5):
            assert RemoteFxGraphCache("never").get("k") is None
        assert time.monotonic() - started < 2 * 0.3 + 0.5  # one timeout for the new URL, at most


class TestClientBuilding:
    """Building a client to a dead server holds up no call to another server."""

    def test_healthy_server_not_held_up_by_dead_cluster(
        self, black_hole: BlackHole, redis_server: RedisServer
    ) -> None:
        timeout = 1.0
        durations: list[float] = []
        errors: list[BackendError] = []

        def call_dead_cluster() -> None:
            backend = RedisRemoteCacheBackend(
                host="127.0.0.1", port=black_hole.port, cluster=True, timeout=timeout
            )
            started = time.monotonic()
            try:
                backend.get("k")
            except BackendError as exc:
                errors.append(exc)
            durations.append(time.monotonic() - started)

        threads = [threading.Thread(target=call_dead_cluster) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + 5
            while not black_hole._held and time.monotonic() < deadline:
                time.sleep(0.005)  # wait until a thread is connecting to the dead cluster
            assert black_hole._held
            started = time.monotonic()
            healthy = RedisRemoteCacheBackend(url=redis_server.url, timeout=timeout)
            healthy.put("k", b"v")
            assert healthy.get("k") == b"v"
            assert time.monotonic() - started < 0.5
        finally:
            for thread in threads:
                thread.join(timeout=10)
        assert len(errors) == 3
        # Threads that waited for another's connect fail with it: no timeout of their own.
        assert max(durations) < timeout + 0.5, durations


class TestBreakerScope:
    """A breaker per server and timeout: a short timeout's failures skip no longer backend."""

    def test_short_timeout_does_not_skip_a_longer_one(self, redis_server: RedisServer) -> None:
        from remote_cache.testing import OutageProxy

        with OutageProxy.for_url(redis_server.url) as proxy:
            slow = RedisRemoteCacheBackend(url=proxy.url, timeout=2.0, retry_after=30)
            slow.put("k", b"v")
            proxy.latency(0.3)
            quick = RedisRemoteCacheBackend(url=proxy.url, timeout=0.1, retry_after=30)
            with pytest.raises(BackendTimeoutError):
                quick.get("k")
            with pytest.raises(CircuitOpenError):
                RedisRemoteCacheBackend(url=proxy.url, timeout=0.1).get("k")  # same scope
            assert slow.get("k") == b"v"  # its own timeout is long enough: not skipped
            assert RedisRemoteCacheBackend(url=proxy.url, timeout=2.0).get("k") == b"v"
            assert quick.breaker.is_open
            assert not slow.breaker.is_open


class TestCallDeadline:
    """A whole call (connect, handshake, command, reply) ends within the timeout."""

    def test_first_call_sends_no_optional_handshake(self, redis_server: RedisServer) -> None:
        direct = redis_server.client()
        direct.config_resetstat()
        backend = RedisRemoteCacheBackend(url=redis_server.url, timeout=0.5)
        assert backend.get("k") is None
        commands = set(direct.info("commandstats"))
        assert commands == {"cmdstat_get", "cmdstat_config|resetstat"}, commands

    def test_handshake_counts_against_the_deadline(self) -> None:
        timeout = 0.5
        with (
            RedisServer(password="s3cret-pw") as server,
            OutageProxy.for_url(server.url) as proxy,
        ):
            server.client().set("k", b"v")
            # AUTH then GET: two round trips, each under the timeout, together over it.
            proxy.latency(0.3)
            backend = RedisRemoteCacheBackend(url=proxy.url, timeout=timeout, retry_after=0)
            started = time.monotonic()
            with pytest.raises(BackendTimeoutError):
                backend.get("k")
            elapsed = time.monotonic() - started
            assert timeout - 0.05 < elapsed < timeout + 0.25, elapsed
            # Both round trips fit: the value, in about two latencies.
            proxy.latency(0.1)
            assert backend.get("k") == b"v"

    def test_building_the_client_is_not_the_servers_time(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A process's first call builds a client (imports, a loaded machine): that time is
        not counted against the server, so it cannot open the breaker."""
        import remote_cache._redis.backend as redis_module

        build = redis_module._shared_client

        def slow_build(*args: Any) -> Any:
            time.sleep(0.6)
            return build(*args)

        monkeypatch.setattr(redis_module, "_shared_client", slow_build)
        redis_server.client().set("k", b"v")
        backend = RedisRemoteCacheBackend(url=redis_server.url, timeout=0.5)
        assert backend.get("k") == b"v"
        assert not backend.breaker.is_open

    def test_slow_link_costs_one_round_trip(self, redis_server: RedisServer) -> None:
        redis_server.client().set("k", b"v")
        with OutageProxy.for_url(redis_server.url) as proxy:
            proxy.latency(0.4)
            backend = RedisRemoteCacheBackend(url=proxy.url, timeout=0.5)
            started = time.monotonic()
            assert backend.get("k") == b"v"
            # Before: HELLO and two CLIENT SETINFO first, 2 s in all.
            assert time.monotonic() - started < 0.5 + 0.25

    def test_every_cluster_node_keeps_the_deadline(self) -> None:
        from remote_cache._redis.connections import _DeadlineConnectionMixin
        from remote_cache._redis.deadline import _DeadlineSocket
        from remote_cache.testing import RedisClusterServer

        with RedisClusterServer() as cluster:
            backend = RedisRemoteCacheBackend(
                url=cluster.url, cluster=True, timeout=5
            )  # checks classes, not speed
            backend.put_many({f"k{i}": b"v" for i in range(20)})  # every master
            assert backend.get("k1") == b"v"
            nodes = backend.client().get_nodes()
            assert len(nodes) >= 3
            for node in nodes:
                pool = node.redis_connection.connection_pool
                assert issubclass(pool.connection_class, _DeadlineConnectionMixin), node
                assert pool.connection_kwargs["protocol"] == 2
            connected = [
                connection
                for node in nodes
                for connection in node.redis_connection.connection_pool._available_connections
            ]
            assert connected
            assert all(isinstance(c._sock, _DeadlineSocket) for c in connected)


class TestInterruptedBetweenSendAndRead:
    """An interrupt after a command left and before its reply was read never makes another
    call read that reply: the connection owes a reply, so it is dropped, not reused."""

    @pytest.fixture
    def slow_link(self, redis_server: RedisServer) -> Iterator[OutageProxy]:
        redis_server.client().mset({b"A": b"value-of-A", b"B": b"value-of-B"})
        with OutageProxy.for_url(redis_server.url) as proxy:
            proxy.latency(0.05)  # the reply is still on its way when the next call is sent
            yield proxy

    @staticmethod
    def interrupt_once(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """The next ``target.<name>(...)`` raises KeyboardInterrupt before it does anything:
        the gap between redis-py's send and its read, where it does not disconnect."""
        original = getattr(target, name)
        calls = iter([True])

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            if next(calls, False):
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(target, name, interrupted)

    def test_get(self, slow_link: OutageProxy, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = RedisRemoteCacheBackend(url=slow_link.url, timeout=2)
        assert backend.get("A") == b"value-of-A"  # connected
        self.interrupt_once(backend.client(), "parse_response", monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            backend.get("A")
        assert backend.get("B") == b"value-of-B"
        assert backend.get("A") == b"value-of-A"
        assert backend.get_many(["B", "A"]) == {"A": b"value-of-A", "B": b"value-of-B"}

    def test_batch(self, slow_link: OutageProxy, monkeypatch: pytest.MonkeyPatch) -> None:
        from redis.connection import AbstractConnection

        backend = RedisRemoteCacheBackend(url=slow_link.url, timeout=2)
        assert backend.get("A") == b"value-of-A"
        backend.put_many({"C": b"value-of-C", "D": b"value-of-D"})
        # A pipeline's replies are read one by one: interrupted before the first.
        self.interrupt_once(AbstractConnection, "read_response", monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            backend.put_many({"C": b"new-C", "D": b"new-D"})
        assert backend.get("B") == b"value-of-B"
        assert backend.get_many(["A", "B"]) == {"A": b"value-of-A", "B": b"value-of-B"}


class TestInterruptedConnect:
    """A connect cut short by an interrupt leaves no connection open, even while the
    interrupt's traceback is kept (as a notebook keeps the last one)."""

    # The socket is closed when collected (redis-py never saw it): Python warns about that.
    @pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
    def test_no_connection_left(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import gc

        from redis.connection import Connection

        admin = redis_server.client(client_name="admin")
        admin.ping()  # connected before connects are interrupted
        connect = Connection._connect

        def connected_then_interrupted(self: Any) -> Any:
            sock = connect(self)  # connected: only this frame holds it
            assert sock is not None
            raise KeyboardInterrupt

        monkeypatch.setattr(Connection, "_connect", connected_then_interrupted)
        backend = RedisRemoteCacheBackend(url=redis_server.url, timeout=2)
        with pytest.raises(KeyboardInterrupt) as kept:
            backend.get("k")
        gc.collect()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            others = [c for c in admin.client_list() if c.get("name") != "admin"]
            if not others:
                break
            time.sleep(0.02)
        assert others == [], others
        assert kept.value.__traceback__ is not None  # still referenced, as said
