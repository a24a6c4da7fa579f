"""The Redis backend without a server: error translation, breaker use, batches, redaction."""

from __future__ import annotations

import builtins
import contextlib
import inspect
import logging
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.exceptions as rexc

from remote_cache import (
    BackendCommandError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    RedisRemoteCacheBackend,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache._breaker import CircuitBreaker, breaker_for
from remote_cache._redis import translate_redis_error
from remote_cache._redis.clients import _handshake_options, _shared_client
from remote_cache._redis.connections import _DeadlineConnectionMixin
from remote_cache._redis.deadline import _DeadlineSocket
from remote_cache._settings import RedisSettings
from remote_cache.testing import RedisServer

# What each of these classes means, whatever the redis-py release: the server or the link to
# it is unusable (a transport failure, which opens the breaker), or the server refused one
# command (it is alive). Classes not named here are judged by the family redis-py puts them
# in, so a release that adds or moves a class needs no change here.
TRANSPORT = {
    rexc.ConnectionError,
    rexc.AuthenticationError,
    rexc.AuthorizationError,
    rexc.BusyLoadingError,
    rexc.ClusterError,
    rexc.ClusterDownError,
    rexc.MasterDownError,
    rexc.RedisClusterException,
    rexc.SlotNotCoveredError,
    rexc.InvalidResponse,
    rexc.AuthenticationWrongNumberOfArgsError,
}
COMMAND = {
    rexc.ResponseError,
    rexc.OutOfMemoryError,
    rexc.ReadOnlyError,
    rexc.NoPermissionError,
    rexc.NoScriptError,
    rexc.ExecAbortError,
    rexc.ModuleError,
    rexc.DataError,
}
TRANSPORT_FAMILIES = (
    rexc.ConnectionError,
    rexc.ClusterError,
    rexc.RedisClusterException,
    rexc.InvalidResponse,
    rexc.AuthenticationWrongNumberOfArgsError,
)


def expected_error(cls: type[Exception]) -> type[BackendError]:
    """Our class for a redis-py exception class, by our rules."""
    if issubclass(cls, rexc.MaxConnectionsError):
        return BackendError  # a limit of this process's own pool: opens no breaker
    if issubclass(cls, rexc.TimeoutError):
        return BackendTimeoutError
    if cls in TRANSPORT or (cls not in COMMAND and issubclass(cls, TRANSPORT_FAMILIES)):
        return BackendUnavailableError
    return BackendCommandError


def redis_exception_classes() -> list[type[BaseException]]:
    return sorted(
        (
            cls
            for _, cls in inspect.getmembers(rexc, inspect.isclass)
            if issubclass(cls, Exception) and cls.__module__ == rexc.__name__
        ),
        key=lambda cls: cls.__name__,
    )


class TestTranslation:
    """Every redis-py exception class maps to the most specific of ours."""

    @pytest.mark.parametrize("cls", redis_exception_classes(), ids=lambda c: c.__name__)
    def test_every_class_mapped(self, cls: type[Exception]) -> None:
        try:
            exc = cls("boom")
        except ValueError:  # redirections parse "<slot> <host:port>"
            exc = cls("1 127.0.0.1:7000")
        error = translate_redis_error(exc, backend="redis://h:1", operation="get", key="k")
        if cls in (rexc.ChildDeadlockedError, rexc.IncorrectPolicyType):
            assert error is None, "not a server failure: a bug to re-raise"
            return
        assert error is not None
        assert type(error) is expected_error(cls)
        assert (error.backend, error.operation, error.key) == ("redis://h:1", "get", "k")
        assert cls.__name__ in str(error)

    @pytest.mark.parametrize(
        ("classes", "expected"),
        [(TRANSPORT, BackendUnavailableError), (COMMAND, BackendCommandError)],
        ids=["transport", "command"],
    )
    def test_named_meanings(self, classes: set[type[Exception]], expected: type) -> None:
        for cls in classes:
            error = translate_redis_error(cls("x"), backend="b", operation="get")
            assert type(error) is expected, cls

    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (TimeoutError("timed out"), BackendTimeoutError),
            (builtins.TimeoutError("timed out"), BackendTimeoutError),
            (ConnectionRefusedError(111, "refused"), BackendUnavailableError),
            (ssl.SSLError("bad cert"), BackendUnavailableError),
            (rexc.OutOfMemoryError("OOM command not allowed"), BackendCommandError),
            (rexc.ReadOnlyError("READONLY"), BackendCommandError),
            (rexc.ResponseError("WRONGTYPE"), BackendCommandError),
            (ValueError("a bug"), type(None)),
        ],
    )
    def test_socket_and_server_errors(self, exc: Exception, expected: type[object]) -> None:
        assert type(translate_redis_error(exc, backend="b", operation="put")) is expected

    def test_secrets_scrubbed(self) -> None:
        error = translate_redis_error(
            rexc.ConnectionError("AUTH hunter2 failed"),
            backend="b",
            operation="get",
            secrets=["hunter2"],
        )
        assert error is not None
        assert "hunter2" not in str(error)


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FlakyClient:
    """A client whose calls raise ``error`` while it is set, counting every call."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0
        self.store = fakeredis.FakeRedis()

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error

    def get(self, key: str) -> Any:
        self._maybe_fail()
        return self.store.get(key)

    def set(self, key: str, data: bytes, ex: int | None = None) -> Any:
        self._maybe_fail()
        return self.store.set(key, data, ex=ex)

    def mget(self, keys: list[str]) -> Any:
        self._maybe_fail()
        return self.store.mget(keys)

    def mset(self, mapping: dict[Any, bytes]) -> Any:
        self._maybe_fail()
        return self.store.mset(mapping)

    def pipeline(self, transaction: bool = False) -> Any:
        self._maybe_fail()
        return self.store.pipeline(transaction=transaction)


class FakeConnection:
    """A connection whose every reply is ``reply`` (raised when it is an exception)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.sent: list[list[tuple[Any, ...]]] = []
        self.disconnected = False

    def pack_commands(self, commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return list(commands)

    def send_packed_command(self, packed: list[tuple[Any, ...]]) -> None:
        self.sent.append(packed)

    def read_response(self) -> Any:
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply

    def disconnect(self) -> None:
        self.disconnected = True


class FakePool:
    def __init__(self, reply: Any) -> None:
        self.connection = FakeConnection(reply)
        self.released: list[FakeConnection] = []

    def get_connection(self) -> FakeConnection:
        return self.connection

    def release(self, connection: FakeConnection) -> None:
        self.released.append(connection)


class FakeClusterClient(FlakyClient):
    """One master whose connection answers ``reply``; redis-py's slow paths on fakeredis."""

    class Node:
        name = "127.0.0.1:1"

    def __init__(self, reply: Any) -> None:
        super().__init__()
        self.pool = FakePool(reply)

    def get_node_from_key(self, key: Any) -> Node:
        return self.Node()

    def get_redis_connection(self, node: Node) -> Any:
        return type("NodeClient", (), {"connection_pool": self.pool})()

    def mget_nonatomic(self, keys: list[Any]) -> Any:
        return self.store.mget(keys)


class Gate:
    """A stalled call: ``entered`` once it reached the client, then it waits for ``release``."""

    def __init__(self, error: BaseException | None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.error = error


class GatedClient(FlakyClient):
    """A ``FlakyClient`` whose gets of gated keys stall until released, then raise or answer."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[bytes, Gate] = {}

    def gate(self, key: bytes, error: BaseException | None) -> Gate:
        self.gates[key] = gate = Gate(error)
        return gate

    def get(self, key: bytes) -> Any:
        gate = self.gates.get(key)
        if gate is None:
            return super().get(key)
        self.calls += 1
        gate.entered.set()
        assert gate.release.wait(10)
        if gate.error is not None:
            raise gate.error
        return None


class TestBreakerInBackend:
    """Transport failures open the breaker; server errors do not; skips make no call."""

    def make(self, retry_after: float | None = 30) -> tuple[RedisRemoteCacheBackend, FlakyClient]:
        client = FlakyClient()
        return RedisRemoteCacheBackend(client=client, retry_after=retry_after), client

    def test_transport_failure_opens_and_skips(self) -> None:
        backend, client = self.make()
        client.error = rexc.ConnectionError("refused")
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
        client.error = None
        with pytest.raises(CircuitOpenError):
            backend.get("k")
        with pytest.raises(CircuitOpenError):
            backend.put("k", b"v")
        assert client.calls == 1, "no network call while the breaker is open"
        stat = cache_stats["backend:RedisRemoteCacheBackend"]
        assert (stat.exception, stat.skipped, stat.put) == (1, 2, 0)

    def test_zero_retry_after_probes_every_call_and_recovers(self) -> None:
        backend, client = self.make(retry_after=0)
        client.error = rexc.TimeoutError("slow")
        with pytest.raises(BackendTimeoutError):
            backend.put("k", b"v")
        client.error = None
        backend.put("k", b"v")
        assert backend.get("k") == b"v"
        assert not backend.breaker.is_open

    def test_server_errors_do_not_open(self) -> None:
        backend, client = self.make()
        client.error = rexc.OutOfMemoryError(
            "OOM command not allowed when used memory > 'maxmemory'"
        )
        with pytest.raises(BackendCommandError):
            backend.put("k", b"v")
        client.error = None
        backend.put("k", b"v")
        assert client.calls == 2

    @pytest.mark.parametrize(
        "error", [KeyError("x"), AttributeError("x"), TypeError("x"), ValueError("x")]
    )
    def test_unknown_client_exception_is_a_protocol_error(self, error: Exception) -> None:
        # What redis-py raises when a reply has a shape it does not expect: the server
        # does not speak Redis, a transport failure.
        backend, client = self.make()
        client.error = error
        with pytest.raises(BackendUnavailableError, match="protocol error") as caught:
            backend.get("k")
        assert caught.value.__cause__ is error
        assert backend.breaker.is_open

    def test_interrupted_probe_frees_the_probe(self) -> None:
        backend, client = self.make(retry_after=0)
        client.error = rexc.ConnectionError("refused")
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
        client.error = KeyboardInterrupt()  # type: ignore[assignment]  # during the probe
        with pytest.raises(KeyboardInterrupt):
            backend.get("k")
        assert backend.breaker.is_open, "an interrupt says nothing about the server"
        client.error = None
        assert backend.get("k") is None  # the next call probes, and closes the breaker
        assert not backend.breaker.is_open
        assert client.calls == 3

    def test_interrupted_cluster_probe_frees_the_probe(self) -> None:
        client = FakeClusterClient(reply=None)
        backend = RedisRemoteCacheBackend(client=client, cluster=True, retry_after=0)
        client.pool.connection.reply = rexc.ConnectionError("reset")
        with pytest.raises(BackendUnavailableError):
            backend.get_many(["a"])
        client.pool.connection.reply = KeyboardInterrupt()
        with pytest.raises(KeyboardInterrupt):
            backend.get_many(["a"])
        assert client.pool.connection.disconnected
        client.pool.connection.reply = None
        assert backend.get_many(["a"]) == {}
        assert not backend.breaker.is_open

    def test_interrupt_right_after_the_breaker_allows_a_probe_expires_with_the_lease(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(clock)
        client = FlakyClient()
        backend = RedisRemoteCacheBackend(client=client, timeout=1, retry_after=30, breaker=breaker)
        client.error = rexc.ConnectionError("refused")
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
        client.error = None
        clock.now += 31

        # A real SIGINT, delivered the moment the breaker has handed the probe out: Python
        # raises KeyboardInterrupt at the next bytecode, before the call's `try` is entered.
        def interrupt_after(method: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                monkeypatch.undo()  # interrupt this call only
                result = method(*args, **kwargs)
                signal.raise_signal(signal.SIGINT)
                return result

            return wrapper

        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            for name in ("allow", "admit"):  # whichever the backend asks
                if hasattr(breaker, name):
                    monkeypatch.setattr(breaker, name, interrupt_after(getattr(breaker, name)))
            with pytest.raises(KeyboardInterrupt):
                backend.get("k")
        finally:
            signal.signal(signal.SIGINT, previous)
        assert client.calls == 1, "interrupted before the probe reached the server"
        assert breaker.is_open
        with pytest.raises(CircuitOpenError):
            backend.get("k")  # the lost probe may still be under way: nobody else probes
        clock.now += 2 * 1 + 1 + 0.1  # the lease: twice the timeout, plus 1 s
        assert backend.get("k") is None, "the lost probe's lease is over: this call probes"
        assert not breaker.is_open
        assert client.calls == 2

    def test_late_interrupt_of_another_call_does_not_free_the_probe(self) -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(clock)
        client = GatedClient()
        backend = RedisRemoteCacheBackend(client=client, timeout=1, retry_after=30, breaker=breaker)
        outcomes: dict[str, object] = {}

        def call(key: str) -> None:
            try:
                outcomes[key] = backend.get(key)
            except BaseException as exc:
                outcomes[key] = exc

        # A call through the closed breaker stalls; it will be interrupted much later.
        plain = client.gate(b"plain", KeyboardInterrupt())
        plain_thread = threading.Thread(target=call, args=("plain",))
        plain_thread.start()
        assert plain.entered.wait(10)
        client.error = rexc.ConnectionError("refused")
        with pytest.raises(BackendUnavailableError):
            backend.get("k")  # the outage begins
        client.error = None
        clock.now += 31
        probe = client.gate(b"probe", None)
        probe_thread = threading.Thread(target=call, args=("probe",))
        probe_thread.start()
        assert probe.entered.wait(10), "the probe is under way"
        plain.release.set()
        plain_thread.join(10)
        assert isinstance(outcomes["plain"], KeyboardInterrupt)
        calls = client.calls
        with pytest.raises(CircuitOpenError):
            backend.get("k")  # the probe is still out: no second probe
        assert client.calls == calls
        probe.release.set()
        probe_thread.join(10)
        assert outcomes["probe"] is None
        assert not breaker.is_open, "the probe's success closed the breaker"

    def test_never_is_upstreams_behaviour(self) -> None:
        backend, client = self.make(retry_after=None)
        client.error = rexc.ConnectionError("refused")
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
        client.error = None
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                backend.get("k")
        assert client.calls == 1

    def test_cache_over_failing_backend_is_quiet_and_counted(
        self, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        client = FlakyClient()
        client.error = rexc.ConnectionError(
            "Error 111 connecting to localhost:6379. Connection refused."
        )
        cache = RemoteFxGraphCache("fx", backend=RedisRemoteCacheBackend(client=client))
        for _ in range(5):
            assert cache.get("k") is None
            cache.put("k", {"a": 1})
        assert client.calls == 1
        stat = cache_stats["RemoteFxGraphCache"]
        assert (stat.miss, stat.put, stat.fail_open, stat.exception) == (5, 0, 10, 0)
        backend_stat = cache_stats["backend:RedisRemoteCacheBackend"]
        assert (backend_stat.exception, backend_stat.skipped, backend_stat.put) == (1, 9, 0)
        warnings = [r for r in caplog_rc.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1


class TestSharing:
    """Backends on one server share its breaker and its client."""

    def test_shared_breaker_by_settings(self) -> None:
        first = RedisRemoteCacheBackend(host="127.0.0.1", port=1)
        second = RedisRemoteCacheBackend(host="127.0.0.1", port=1)
        other = RedisRemoteCacheBackend(host="127.0.0.1", port=2)
        assert first.breaker is second.breaker
        assert first.breaker is not other.breaker
        assert first.breaker is breaker_for(
            (*RedisSettings(host="127.0.0.1", port=1).server_identity(), 1.0)
        )
        assert first.client() is second.client()

    def test_breaker_per_server_and_timeout(self) -> None:
        short = RedisRemoteCacheBackend(host="127.0.0.1", port=1, timeout=0.1)
        long = RedisRemoteCacheBackend(host="127.0.0.1", port=1, timeout=5)
        assert short.breaker is not long.breaker
        assert (
            short.breaker is RedisRemoteCacheBackend(host="127.0.0.1", port=1, timeout=0.1).breaker
        )
        short.breaker.record_failure()
        assert not long.breaker.is_open

    def test_client_has_timeouts_and_no_retries(self) -> None:
        client = _shared_client(RedisSettings(host="127.0.0.1", port=1, timeout=0.3))
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.3
        assert kwargs["socket_connect_timeout"] == 0.3
        assert client.get_retry().get_retries() == 0

    def test_url_client(self) -> None:
        client = _shared_client(RedisSettings(url="redis://:pw@127.0.0.1:1/3", timeout=0.5))
        assert isinstance(client, redis.Redis)
        assert client.connection_pool.connection_kwargs["db"] == 3

    def test_client_factory_hook(self) -> None:
        server = fakeredis.FakeServer()
        seen: list[RedisSettings] = []

        def factory(settings: RedisSettings) -> Any:
            seen.append(settings)
            return fakeredis.FakeRedis(server=server)

        RedisRemoteCacheBackend.client_factory = factory
        cache = RemoteFxGraphCache("fx")
        cache.put("k", [1])
        assert RemoteFxGraphCache("fx").get("k") == [1]
        assert len(seen) == 2
        assert fakeredis.FakeRedis(server=server).get("pt2:fx::k:c1") == b"[1]"


class TestBatchCommands:
    """Batches go out in one MGET or one pipeline, TTL included."""

    def test_mget_and_pipeline(self) -> None:
        client = FlakyClient()
        backend = RedisRemoteCacheBackend(client=client, expire=100)
        backend.put_many({"a": b"1", "b": b""})
        assert backend.get_many(["a", "b", "c"]) == {"a": b"1", "b": b""}
        assert client.calls == 2
        assert 0 < client.store.ttl("a") <= 100

    def test_without_ttl_one_mset(self) -> None:
        client = FlakyClient()
        backend = RedisRemoteCacheBackend(client=client)
        backend.put_many({"a": b"1", "b": b""})
        assert client.calls == 1
        assert client.store.mget(["a", "b"]) == [b"1", b""]
        assert client.store.ttl("a") == -1

    @pytest.mark.parametrize("redirect", [rexc.MovedError, rexc.AskError])
    def test_cluster_batches_follow_a_moved_slot(self, redirect: type[Exception]) -> None:
        # As redis-py raises them: the message is "slot host:port", without MOVED or ASK.
        client = FakeClusterClient(reply=redirect("3999 127.0.0.1:2"))
        backend = RedisRemoteCacheBackend(client=client, cluster=True, expire=50)
        backend.put_many({"a": b"1", "b": b"2"})  # redis-py's pipeline follows redirections
        assert client.store.mget(["a", "b"]) == [b"1", b"2"]
        assert 0 < client.store.ttl("b") <= 50
        assert backend.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2"}
        assert client.pool.released == [client.pool.connection] * 2

    def test_cluster_batch_error_reply_raised(self) -> None:
        client = FakeClusterClient(reply=rexc.ResponseError("OOM command not allowed"))
        backend = RedisRemoteCacheBackend(client=client, cluster=True)
        with pytest.raises(BackendCommandError, match="OOM"):
            backend.put_many({"a": b"1"})
        assert not client.pool.connection.disconnected  # every reply was read

    def test_cluster_batch_transport_failure_drops_the_connection(self) -> None:
        client = FakeClusterClient(reply=rexc.ConnectionError("reset"))
        backend = RedisRemoteCacheBackend(client=client, cluster=True)
        with pytest.raises(BackendUnavailableError):
            backend.get_many(["a", "b"])
        assert client.pool.connection.disconnected
        assert client.pool.released == [client.pool.connection]

    def test_cluster_batches_in_one_round_trip(self) -> None:
        client = FakeClusterClient(reply=None)
        backend = RedisRemoteCacheBackend(client=client, cluster=True)
        assert backend.get_many(["a", "b"]) == {}
        assert client.pool.connection.sent == [[("GET", b"a"), ("GET", b"b")]]

    def test_batch_failure_translated(self) -> None:
        client = FlakyClient()
        backend = RedisRemoteCacheBackend(client=client)
        client.error = rexc.ConnectionError("gone")
        with pytest.raises(BackendUnavailableError):
            backend.put_many({"a": b"1"})
        with pytest.raises(CircuitOpenError):
            backend.get_many(["a"])

    def test_repr_and_description(self) -> None:
        backend = RedisRemoteCacheBackend(client=FlakyClient(), url="redis://u:pw@h:1/0")
        assert backend.description == "redis://u:***@h:1/0"
        assert "pw@" not in repr(backend)


class ReplyClient:
    """A client whose every command returns ``reply``, as redis-py parsed it."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def get(self, key: bytes) -> Any:
        return self.reply

    def set(self, key: bytes, data: bytes, ex: int | None = None) -> Any:
        return self.reply

    def mget(self, keys: list[bytes]) -> Any:
        return self.reply

    def mset(self, mapping: dict[bytes, bytes]) -> Any:
        return self.reply


class TestReplyShapes:
    """A reply of a shape Redis never sends is a protocol error: it opens the breaker."""

    @pytest.mark.parametrize("reply", [1, "text", [b"a"], {b"a": 1}, 1.5, True])
    def test_get_not_bytes(self, reply: Any) -> None:
        backend = RedisRemoteCacheBackend(client=ReplyClient(reply))
        with pytest.raises(BackendUnavailableError, match=r"protocol error.*GET answered"):
            backend.get("k")
        assert backend.breaker.is_open

    @pytest.mark.parametrize("reply", [None, b"a", [b"a"], [b"a", b"b", b"c"], [b"a", 1]])
    def test_mget_wrong_shape(self, reply: Any) -> None:
        backend = RedisRemoteCacheBackend(client=ReplyClient(reply))
        with pytest.raises(BackendUnavailableError, match="protocol error"):
            backend.get_many(["a", "b"])

    @pytest.mark.parametrize("reply", [None, False, 1, b"QUEUED", [True]])
    def test_write_not_ok(self, reply: Any) -> None:
        backend = RedisRemoteCacheBackend(client=ReplyClient(reply))
        with pytest.raises(BackendUnavailableError, match=r"protocol error.*not OK"):
            backend.put("k", b"v")
        with pytest.raises(BackendUnavailableError, match="protocol error"):
            RedisRemoteCacheBackend(client=ReplyClient(reply)).put_many({"a": b"1"})
        assert cache_stats["backend:RedisRemoteCacheBackend"].put == 0

    def test_fail_open_cache_reads_a_miss_and_drops_the_put(self) -> None:
        cache = RemoteFxGraphCache("fx", backend=RedisRemoteCacheBackend(client=ReplyClient(1)))
        assert cache.get("k") is None
        cache.put("k", [1])
        assert cache.get_many(["a"]) == {}
        cache.put_many({"a": [1]})
        assert cache_stats["RemoteFxGraphCache"].fail_open == 4

    def test_a_huge_reply_is_shortened_in_the_message(self) -> None:
        backend = RedisRemoteCacheBackend(client=ReplyClient("<html>" * 1000))
        with pytest.raises(BackendUnavailableError) as caught:
            backend.get("k")
        assert len(str(caught.value)) < 300


class TestBuiltClients:
    """Clients the backend builds keep the call's deadline and skip optional handshakes."""

    @pytest.mark.parametrize(
        ("url", "base"),
        [
            ("redis://127.0.0.1:1/0", redis.connection.Connection),
            ("rediss://127.0.0.1:1/0", redis.connection.SSLConnection),
            ("unix:///tmp/none.sock", redis.connection.UnixDomainSocketConnection),
            (None, redis.connection.Connection),
        ],
    )
    def test_every_scheme_gets_deadline_connections(self, url: str | None, base: type) -> None:
        settings = RedisSettings(url=url, host="127.0.0.1", port=1, timeout=0.3)
        pool = _shared_client(settings).connection_pool
        assert issubclass(pool.connection_class, _DeadlineConnectionMixin)
        assert issubclass(pool.connection_class, base)
        connection = pool.make_connection()
        assert type(connection).__mro__[1] is _DeadlineConnectionMixin
        assert connection.socket_timeout == 0.3

    def test_no_optional_handshake(self) -> None:
        kwargs = _shared_client(RedisSettings(timeout=0.3)).connection_pool.connection_kwargs
        assert kwargs["protocol"] == 2, "RESP2 needs no HELLO round trip"
        options = _handshake_options()
        if "driver_info" in options:  # redis-py 8 and later
            assert kwargs["driver_info"] is None
        else:  # redis-py 5 to 7: no CLIENT SETINFO either
            assert (kwargs["lib_name"], kwargs["lib_version"]) == (None, None)
        tls = _shared_client(RedisSettings(url="rediss://127.0.0.1:1/0", timeout=0.3))
        tls_kwargs = tls.connection_pool.connection_kwargs
        assert "protocol" not in tls_kwargs, "over TLS, HELLO reads the session tickets"
        tls_options = _handshake_options(tls=True)
        assert "protocol" not in tls_options
        tls_options.pop("maint_notifications_config", None)  # the pool's, not in connection_kwargs
        assert {key: tls_kwargs[key] for key in tls_options} == tls_options

    def test_client_is_closed_with_its_pool(self) -> None:
        client = _shared_client(RedisSettings(timeout=0.3))
        assert client.auto_close_connection_pool


class TestDeadlineSocket:
    """A socket's waits end at the deadline of the call under way, and only then."""

    @pytest.fixture
    def pair(self) -> Iterator[tuple[_DeadlineSocket, socket.socket]]:
        left, right = socket.socketpair()
        with left, right:
            left.settimeout(5.0)
            yield _DeadlineSocket(left), right

    def test_outside_a_call_the_socket_is_unchanged(
        self, pair: tuple[_DeadlineSocket, socket.socket]
    ) -> None:
        wrapped, peer = pair
        peer.sendall(b"x")
        assert wrapped.recv(1) == b"x"
        assert wrapped.gettimeout() == 5.0

    def test_a_passed_deadline_times_out_at_once(
        self, pair: tuple[_DeadlineSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from remote_cache._redis import deadline as _redis

        wrapped, peer = pair
        monkeypatch.setattr(_redis._call_deadline, "at", time.monotonic() - 1, raising=False)
        peer.sendall(b"x")
        with pytest.raises(TimeoutError):
            wrapped.recv(1)
        with pytest.raises(TimeoutError):
            wrapped.sendall(b"y")

    def test_a_wait_ends_at_the_deadline(
        self, pair: tuple[_DeadlineSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from remote_cache._redis import deadline as _redis

        wrapped, _peer = pair
        monkeypatch.setattr(_redis._call_deadline, "at", time.monotonic() + 0.2, raising=False)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            wrapped.recv_into(bytearray(1))
        assert 0.15 < time.monotonic() - started < 1.0

    def test_a_non_blocking_poll_stays_non_blocking(
        self, pair: tuple[_DeadlineSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from remote_cache._redis import deadline as _redis

        wrapped, _peer = pair
        monkeypatch.setattr(_redis._call_deadline, "at", time.monotonic() + 5, raising=False)
        wrapped.settimeout(0)  # redis-py's can_read: is a reply already there?
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            wrapped.recv(1)
        assert time.monotonic() - started < 0.5

    def test_after_a_call_the_timeout_redis_py_set_comes_back(
        self, pair: tuple[_DeadlineSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from remote_cache._redis import deadline as _redis

        wrapped, peer = pair
        monkeypatch.setattr(_redis._call_deadline, "at", time.monotonic() + 0.05, raising=False)
        peer.sendall(b"xy")
        assert wrapped.recv(1) == b"x"
        assert wrapped._sock.gettimeout() <= 0.05  # type: ignore[operator]
        monkeypatch.setattr(_redis._call_deadline, "at", None)
        assert wrapped.recv(1) == b"y"
        assert wrapped._sock.gettimeout() == 5.0, "a client used outside a backend call"


class TestInterruptedWhilePacking:
    """A KeyboardInterrupt while a command is packed is a KeyboardInterrupt, not a crash.

    hiredis 3.x's serializer crashes the process (SIGSEGV) when one lands inside it: our
    connections pack with redis-py's own."""

    SCRIPT = """
import random, signal
from remote_cache import RedisRemoteCacheBackend

backend = RedisRemoteCacheBackend(url="redis://127.0.0.1:9", timeout=0.1)
connection = backend.client().connection_pool.make_connection()
armed = [False]

def interrupt(signum, frame):
    if armed[0]:
        armed[0] = False
        raise KeyboardInterrupt

signal.signal(signal.SIGALRM, interrupt)
rng, interrupted = random.Random(1), 0
for i in range(3000):
    try:
        armed[0] = True
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(0, 0.0002))
        try:
            for _ in range(20):
                connection.pack_commands([(b"SET", b"key%d" % i, b"v" * 200, b"EX", 60)])
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except KeyboardInterrupt:
        interrupted += 1
print("interrupted", interrupted)
"""

    def test_no_crash(self) -> None:
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-X", "faulthandler", "-c", self.SCRIPT],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert int(done.stdout.split()[-1]) > 100  # the interrupts did land


class NestingClient:
    """A client whose GET makes a call on another backend first, as a signal handler would."""

    def __init__(self, inner: RedisRemoteCacheBackend) -> None:
        self.inner = inner
        self.time_left: list[tuple[float | None, float | None]] = []

    def get(self, name: bytes) -> bytes:
        from remote_cache._redis.deadline import _time_left

        before = _time_left()
        with contextlib.suppress(BackendError):  # a fail-open cache's handler
            self.inner.get("nested")
        self.time_left.append((before, _time_left()))
        return b"v"


class TestNestedCallDeadline:
    """A call nested in another of the same thread leaves the outer call's deadline as it was."""

    @pytest.mark.parametrize("inner_fails", [False, True], ids=["inner-ok", "inner-fails"])
    def test_the_outer_deadline_survives_a_nested_call(self, inner_fails: bool) -> None:
        from remote_cache._redis.deadline import _time_left

        inner_client = FlakyClient()
        if inner_fails:
            inner_client.error = rexc.ConnectionError("down")
        inner = RedisRemoteCacheBackend(client=inner_client, timeout=30, retry_after=0)
        client = NestingClient(inner)
        outer = RedisRemoteCacheBackend(client=client, timeout=1)
        assert outer.get("k") == b"v"
        assert inner_client.calls == 1
        [(before, after)] = client.time_left
        assert before is not None
        assert after is not None, "the nested call cleared the outer call's deadline"
        assert 0 < after <= before <= 1, "the outer call keeps its own deadline, not the inner's"
        assert _time_left() is None, "no deadline once the outer call is over"


class TestCallersStackTooDeep:
    """A RecursionError inside a call is the caller's stack, not the server: no breaker."""

    def test_fails_the_call_alone(self, redis_server: RedisServer) -> None:
        redis_server.client().set("k", b"v")
        backend = RedisRemoteCacheBackend(url=redis_server.url, timeout=1, retry_after=30)

        def at_depth(depth: int) -> object:
            if depth > 0:
                return at_depth(depth - 1)
            try:
                return backend.get("k")
            except BackendError as exc:
                return exc

        limit = sys.getrecursionlimit()
        outcomes = []
        try:
            sys.setrecursionlimit(200)
            for headroom in range(15, 90, 5):  # from too shallow to enough
                here = len(inspect_stack_depth())
                outcomes.append(at_depth(max(0, 200 - here - headroom)))
        finally:
            sys.setrecursionlimit(limit)
        errors = [o for o in outcomes if isinstance(o, BackendError)]
        assert errors, "no depth made the call fail: the test does not reach the case"
        assert all(type(e) is BackendError and "RecursionError" in str(e) for e in errors), errors
        assert not backend.breaker.is_open
        assert backend.get("k") == b"v"


def inspect_stack_depth() -> list[object]:
    """The frames of the calling thread's stack."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames
