"""Each redis-py internal listed in ``remote_cache._redis.internals`` exists and behaves as
the backend assumes, on the installed redis-py (the floor venv runs this file on 5.0.0)."""

from __future__ import annotations

import inspect
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from remote_cache import RedisRemoteCacheBackend
from remote_cache._redis import close_shared_clients
from remote_cache._redis.clients import _handshake_options
from remote_cache._redis.connections import _deadline_pool_class, _DeadlineConnectionMixin
from remote_cache._redis.internals import (
    INTERNALS,
    checkout,
    is_connected,
    python_command_packer,
    quiet_handshake_options,
    renew_cluster_locks,
)
from remote_cache.testing._redis_cluster import RedisClusterServer
from remote_cache.testing._redis_server import RedisServer

pytestmark = pytest.mark.redis


class Recording:
    """A connection class mixin that records what redis-py does on the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[tuple[bytes, bool]] = []  # (packed command, inside a connect)
        self.connecting = 0
        self.health_checks = 0
        super().__init__(*args, **kwargs)

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        self.connecting += 1
        try:
            return super().connect(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.connecting -= 1

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        self.connecting += 1
        try:
            return super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.connecting -= 1

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packed = b"".join(
            bytes(part) for part in ([command] if isinstance(command, bytes) else command)
        )
        self.sent.append((packed, self.connecting > 0))
        super().send_packed_command(command, check_health)  # type: ignore[misc]

    def check_health(self) -> None:
        self.health_checks += 1
        super().check_health()  # type: ignore[misc]


def _recording_connection(**options: Any) -> Any:
    from redis.connection import Connection

    cls = type("RecordingConnection", (Recording, Connection), {})
    return cls(**options)


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    """The session's server, emptied."""
    return redis_server


class TestTheList:
    """The list names each internal once, with what we assume and why."""

    def test_entries(self) -> None:
        names = [internal.name for internal in INTERNALS]
        assert len(names) == len(set(names))
        assert all(internal.assumption and internal.needed_for for internal in INTERNALS)


class TestConnect:
    """``_connect`` opens the socket with the connection's timeouts as they are when called,
    and ``connect()`` goes through it; ``_sock`` is set before the handshake runs."""

    def test_connect_reads_the_timeouts_when_called(self, server: RedisServer) -> None:
        from redis.connection import Connection

        connection = Connection(host=server.host, port=server.port, socket_timeout=5)
        connection.socket_timeout = 0.75  # after __init__: what _DeadlineConnectionMixin does
        sock = connection._connect()
        try:
            assert sock.gettimeout() == 0.75
            assert sock.getpeername()[1] == server.port
        finally:
            sock.close()

    def test_connect_goes_through_it(self, server: RedisServer) -> None:
        from redis.connection import Connection

        opened: list[Any] = []

        class Counting(Connection):  # type: ignore[misc]
            def _connect(self) -> Any:
                opened.append(super()._connect())
                return opened[-1]

        connection = Counting(host=server.host, port=server.port)
        connection.connect()
        assert len(opened) == 1
        assert connection._sock is opened[0]
        connection.disconnect()

    def test_sock_is_set_before_the_handshake_and_cleared_after(self, server: RedisServer) -> None:
        from redis.connection import Connection

        during: list[bool] = []
        connection = Connection(
            host=server.host,
            port=server.port,
            redis_connect_func=lambda c: during.append(is_connected(c)),
        )
        assert not is_connected(connection)
        connection.connect()
        assert during == [True]
        assert is_connected(connection)
        connection.disconnect()
        assert not is_connected(connection)


class TestHandshakeInsideConnect:
    """Every command of the handshake is sent inside ``connect()`` or
    ``connect_check_health()``, and ``send_command`` and ``pack_commands`` end in
    ``send_packed_command``: what the owed-reply guard counts on."""

    def test_handshake_commands(self, server: RedisServer) -> None:
        connection = _recording_connection(
            host=server.host, port=server.port, db=3, client_name="ci", protocol=3
        )
        connection.connect()
        try:
            commands = [packed for packed, _ in connection.sent]
            assert any(b"SETNAME" in packed for packed in commands)
            assert any(b"SELECT" in packed for packed in commands)
            assert all(inside for _, inside in connection.sent)
            connection.send_command("PING")
            assert connection.sent[-1] == (b"*1\r\n$4\r\nPING\r\n", False)
            assert connection.read_response() in (b"PONG", "PONG")
            packed = connection.pack_commands([("PING",), ("PING",)])
            assert all(isinstance(part, bytes) for part in packed)
        finally:
            connection.disconnect()

    def test_check_health_is_called_by_send_packed_command(self, server: RedisServer) -> None:
        connection = _recording_connection(host=server.host, port=server.port)
        connection.connect()
        try:
            before = connection.health_checks
            connection.send_packed_command([b"*1\r\n$4\r\nPING\r\n"], check_health=True)
            connection.read_response()
            assert connection.health_checks == before + 1
        finally:
            connection.disconnect()

    def test_an_error_reply_is_raised(self, server: RedisServer) -> None:
        from redis.connection import Connection
        from redis.exceptions import ResponseError

        connection = Connection(host=server.host, port=server.port)
        try:
            connection.send_command("NO-SUCH-COMMAND")
            with pytest.raises(ResponseError):
                connection.read_response()
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG")  # the error was read whole
        finally:
            connection.disconnect()

    def test_a_connect_with_the_guard_sends_the_handshake_once(self, server: RedisServer) -> None:
        pool = _deadline_pool_class().from_url(
            f"redis://{server.host}:{server.port}/2?client_name=guarded&protocol=3"
        )
        admin = server.client()
        before = int(admin.info("stats")["total_connections_received"])
        connection = checkout(pool)
        try:
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG")
        finally:
            pool.release(connection)
            pool.disconnect()
        assert int(admin.info("stats")["total_connections_received"]) - before == 1


class TestCommandPacker:
    """``_construct_command_packer`` is called by ``__init__`` with its ``command_packer``,
    once ``encoder`` and ``_buffer_cutoff`` are set; the Python serializer built from them
    packs commands as the protocol says."""

    def test_called_from_init(self) -> None:
        from redis.connection import Connection

        seen: list[tuple[Any, int, bytes]] = []

        class Watching(Connection):  # type: ignore[misc]
            def _construct_command_packer(self, packer: Any) -> Any:
                seen.append((packer, self._buffer_cutoff, self.encoder.encode("é")))
                return python_command_packer(self)

        connection = Watching()
        assert seen == [(None, connection._buffer_cutoff, "é".encode())]
        assert isinstance(connection._buffer_cutoff, int)

    def test_python_packer(self) -> None:
        from redis.connection import Connection

        packer = python_command_packer(Connection())
        packed = b"".join(packer.pack("SET", b"k", b"v", "EX", 5))
        assert packed == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$1\r\n5\r\n"

    def test_our_connections_use_it(self) -> None:
        from redis.connection import Connection, PythonRespSerializer

        cls = _deadline_pool_class()(connection_class=Connection).connection_class
        assert issubclass(cls, _DeadlineConnectionMixin)
        assert isinstance(cls()._command_packer, PythonRespSerializer)


class TestQuietHandshake:
    """The options of ``quiet_handshake_options`` are accepted without a warning and keep
    ``CLIENT SETINFO`` and ``CLIENT MAINT_NOTIFICATIONS`` out of the handshake."""

    @pytest.mark.parametrize("protocol", [2, 3])
    def test_no_optional_commands(self, server: RedisServer, protocol: int) -> None:
        from redis.connection import Connection, ConnectionPool

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pool = ConnectionPool(  # the pool, which chooses the maintenance notifications
                connection_class=type("RecordingConnection", (Recording, Connection), {}),
                host=server.host,
                port=server.port,
                protocol=protocol,
                **quiet_handshake_options(),
            )
            connection = checkout(pool)
        try:
            sent = b"".join(packed for packed, _ in connection.sent)
            assert b"HELLO" in sent or protocol == 2
            assert b"SETINFO" not in sent
            assert b"MAINT_NOTIFICATIONS" not in sent
        finally:
            pool.release(connection)
            pool.disconnect()

    def test_unix_socket_in_resp3(self) -> None:
        from redis.connection import ConnectionPool, UnixDomainSocketConnection

        with RedisServer(unix_socket=True) as server:
            pool = ConnectionPool(
                connection_class=UnixDomainSocketConnection,
                path=str(server.unix_socket_path),
                protocol=3,
                **quiet_handshake_options(),
            )
            connection = checkout(pool)
            try:
                connection.send_command("PING")
                assert connection.read_response() in (b"PONG", "PONG")
            finally:
                pool.release(connection)
                pool.disconnect()

    def test_backend_options(self) -> None:
        assert _handshake_options(tls=False)["protocol"] == 2
        assert "protocol" not in _handshake_options(tls=True)
        signature = inspect.signature(__import__("redis").connection.AbstractConnection.__init__)
        assert set(quiet_handshake_options()) - {"maint_notifications_config"} <= set(
            signature.parameters
        )


def _parser_params() -> list[Any]:
    """The parser classes installed: the pure-Python one, and hiredis's where it is."""
    from redis._parsers import _HiredisParser, _RESP2Parser
    from redis.utils import HIREDIS_AVAILABLE

    params = [pytest.param(_RESP2Parser, id="python")]
    if HIREDIS_AVAILABLE:
        params.append(pytest.param(_HiredisParser, id="hiredis"))
    return params


@pytest.fixture(scope="module")
def tls_server() -> Iterator[RedisServer]:
    """A TLS-only server (TLS 1.3 on this machine's OpenSSL) for the module."""
    with RedisServer(tls=True) as server:
        yield server


def _polls_readable(sock: Any, within: float = 2.0) -> bool:
    """Whether ``sock``'s file descriptor becomes readable within ``within`` seconds."""
    import select

    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(within * 1000))


class TestTlsRecordsAreNoReply:
    """A fresh TLS connection whose handshake read nothing (RESP2, db 0, no name) polls
    readable once the server's session tickets arrive; that is no reply owed, and the
    connection is used, while a real reply or a closed connection is still seen."""

    def _pool(self, server: RedisServer, parser: type) -> Any:
        url = f"{server.url}?protocol=2&ssl_ca_certs={server.directory}/ca.crt"
        return _deadline_pool_class().from_url(
            url, ssl_check_hostname=False, parser_class=parser, **quiet_handshake_options()
        )

    @pytest.mark.parametrize("parser", _parser_params())
    def test_session_tickets_are_not_a_reply(self, tls_server: RedisServer, parser: type) -> None:
        pool = self._pool(tls_server, parser)
        try:
            connection = pool.make_connection()
            connection.connect()
            assert connection._sock.version() == "TLSv1.3"
            assert _polls_readable(connection._sock)  # the tickets: what redis-py 8.2 saw
            assert not connection.can_read()
            pool._available_connections.append(connection)  # idle in the pool, as after a call
            assert checkout(pool) is connection  # handed out, not dropped for "having data"
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG")
        finally:
            pool.disconnect()

    @pytest.mark.parametrize("parser", _parser_params())
    def test_a_reply_waiting_is_still_seen(self, tls_server: RedisServer, parser: type) -> None:
        pool = self._pool(tls_server, parser)
        try:
            connection = pool.make_connection()
            connection.connect()
            assert _polls_readable(connection._sock)
            connection.send_command("ECHO", "left unread")
            deadline = time.monotonic() + 2
            while not connection.can_read() and time.monotonic() < deadline:
                time.sleep(0.005)
            assert connection.can_read()  # asked twice: what the first read stays readable
            assert connection.read_response() in (b"left unread", "left unread")
        finally:
            pool.disconnect()

    @pytest.mark.parametrize("parser", _parser_params())
    def test_a_connection_the_server_closed_is_not_used(
        self, tls_server: RedisServer, parser: type
    ) -> None:
        pool = self._pool(tls_server, parser)
        try:
            connection = pool.make_connection()
            connection.connect()
            assert _polls_readable(connection._sock)
            connection.send_command("CLIENT", "ID")
            own = int(connection.read_response())
            tls_server.client().client_kill_filter(_id=own)
            pool._available_connections.append(connection)
            replacement = checkout(pool)  # reconnected: the killed one is never used
            replacement.send_command("CLIENT", "ID")
            assert int(replacement.read_response()) != own
        finally:
            pool.disconnect()

    def test_every_fresh_backend_connects(self, tls_server: RedisServer) -> None:
        url = f"{tls_server.url}?protocol=2&ssl_ca_certs={tls_server.directory}/ca.crt"
        url += "&ssl_check_hostname=false"
        for attempt in range(20):  # 3 of 30 failed with redis-py 8.2 and hiredis
            backend = RedisRemoteCacheBackend(url=url, timeout=5)
            try:
                backend.put(f"k{attempt}", b"v")
                assert backend.get(f"k{attempt}") == b"v"
            finally:
                close_shared_clients()


class TestPool:
    """``from_url`` hands the scheme's connection class to the pool's ``__init__``;
    ``connection_kwargs`` holds the address; ``checkout`` takes a connection without a
    warning; closing the shared clients closes their pools, whatever the redis-py."""

    def test_from_url_connection_classes(self) -> None:
        from redis.connection import SSLConnection, UnixDomainSocketConnection

        pool_class = _deadline_pool_class()
        tls = pool_class.from_url("rediss://127.0.0.1:1/0")
        unix = pool_class.from_url("unix:///tmp/x.sock?db=0")
        assert issubclass(tls.connection_class, SSLConnection)
        assert issubclass(unix.connection_class, UnixDomainSocketConnection)
        assert issubclass(tls.connection_class, _DeadlineConnectionMixin)
        assert unix.connection_kwargs["path"] == "/tmp/x.sock"
        assert tls.connection_kwargs["host"] == "127.0.0.1"

    def test_checkout_without_a_warning(self, server: RedisServer) -> None:
        pool = _deadline_pool_class()(host=server.host, port=server.port)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            connection = checkout(pool)
        try:
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG")
        finally:
            pool.release(connection)
        pool.disconnect()

    def test_closing_shared_clients_leaves_no_connection(self, server: RedisServer) -> None:
        backend = RedisRemoteCacheBackend(url=f"{server.url}?client_name=closing")
        backend.put("k", b"v")
        admin = server.client()
        assert "closing" in [entry["name"] for entry in admin.client_list()]
        close_shared_clients()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            names = [entry["name"] for entry in admin.client_list()]
            if "closing" not in names:
                break
            time.sleep(0.02)
        assert "closing" not in names


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServer]:
    """A real cluster for the module."""
    with RedisClusterServer() as servers:
        yield servers


@pytest.fixture
def cluster_client(cluster: RedisClusterServer) -> Iterator[Any]:
    """A ``RedisCluster`` client whose node pools are ours, as ``build_client`` makes it."""
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(cluster.url, connection_pool_class=_deadline_pool_class())
    yield client
    client.close()


class TestClusterClient:
    """A cluster client's ``close()`` takes only ``_lock`` and ``_initialization_lock``,
    which ``renew_cluster_locks`` replaces; node pools are ``connection_pool_class``."""

    def test_close_needs_only_the_renewed_locks(self, cluster_client: Any) -> None:
        manager = cluster_client.nodes_manager
        old = [cluster_client._lock, manager._lock, getattr(manager, "_initialization_lock", None)]
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:  # a thread of the parent holding the locks at the fork
            for lock in old:
                if lock is not None:
                    lock.acquire()
            held.set()
            release.wait(10)

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        assert held.wait(5)
        try:
            renew_cluster_locks(cluster_client, threading.RLock)
            assert cluster_client._lock is not old[0]
            assert manager._lock is cluster_client._lock
            closer = threading.Thread(target=cluster_client.close, daemon=True)
            closer.start()
            closer.join(5)
            assert not closer.is_alive(), "close() waits for a lock that was not renewed"
        finally:
            release.set()
            holder.join(5)

    def test_initialize_reads_the_slot_map_again(self, cluster_client: Any) -> None:
        manager = cluster_client.nodes_manager
        manager.slots_cache.clear()
        manager.initialize()
        assert len(manager.slots_cache) == 16384
        assert cluster_client.get_node_from_key(b"k").server_type == "primary"

    def test_standalone_client_untouched(self) -> None:
        import redis

        client = redis.Redis()
        renew_cluster_locks(client, threading.RLock)
        assert not hasattr(client, "nodes_manager")

    def test_key_to_master_and_its_pool(self, cluster_client: Any) -> None:
        node = cluster_client.get_node_from_key(b"k")
        assert node.server_type == "primary"
        assert cluster_client.keyslot(b"k") in [
            slot
            for slot, nodes in cluster_client.nodes_manager.slots_cache.items()
            if nodes[0].name == node.name
        ]
        pool = cluster_client.get_redis_connection(node).connection_pool
        assert isinstance(pool, _deadline_pool_class())
        connection = checkout(pool)
        try:
            connection.send_command("SET", b"k", b"v")
            assert connection.read_response() in (b"OK", "OK", True)
        finally:
            pool.release(connection)

    def test_one_attempt_per_command(self, cluster: RedisClusterServer) -> None:
        import redis

        from remote_cache._redis import build_client
        from remote_cache._settings import RedisSettings

        cluster_client = build_client(RedisSettings(url=cluster.url, cluster=True))
        attempts = []
        node = cluster_client.get_node_from_key(b"k")
        real = cluster_client._execute_command

        def failing(target: Any, *args: Any, **kwargs: Any) -> Any:
            attempts.append(target.name)
            raise redis.exceptions.ConnectionError("refused")

        cluster_client._execute_command = failing
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                cluster_client.get(b"k")
        finally:
            cluster_client._execute_command = real
            cluster_client.close()
        assert attempts == [node.name]

    def test_node_pools(self, cluster_client: Any) -> None:
        nodes = cluster_client.get_nodes()
        assert len(nodes) == 3
        for node in nodes:
            assert isinstance(node.redis_connection.connection_pool, _deadline_pool_class())
