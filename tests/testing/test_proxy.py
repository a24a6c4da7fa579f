"""OutageProxy keeps every byte in order under fault changes, and no client blocks another."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from remote_cache.testing import OutageProxy


class EchoServer:
    """A loopback server that sends back every byte it receives, one thread per connection."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(128)
        self.port: int = self.socket.getsockname()[1]
        self.echoed = threading.Semaphore(0)
        """Released once for each chunk sent back."""
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _echo(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)
                self.echoed.release()
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
                conn.close()

    def wait_idle(self) -> None:
        """Wait until every connection so far has ended (each thread closes its own)."""
        for thread in list(self._threads):
            thread.join(timeout=5)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self.socket.close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """An echo server for the test, closed after it."""
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes (fewer if the connection ends first)."""
    chunks = []
    while size > 0:
        data = sock.recv(size)
        if not data:
            break
        chunks.append(data)
        size -= len(data)
    return b"".join(chunks)


def connect(proxy: OutageProxy, timeout: float = 5.0) -> socket.socket:
    """A client socket connected through ``proxy``."""
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def ended(sock: socket.socket) -> bool:
    """Whether ``sock`` was reset or closed by the other side (a byte sent gets no echo)."""
    try:
        sock.sendall(b"y")
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def refused(proxy: OutageProxy) -> bool:
    """Whether a new connection through ``proxy`` is reset (at connect or at first use)."""
    try:
        sock = connect(proxy)
    except ConnectionError:
        return True
    with sock:
        return ended(sock)


def send_and_wait_echoed(client: socket.socket, server: EchoServer, data: bytes) -> None:
    """Send ``data`` and wait until the server has sent it back (into the proxy)."""
    client.sendall(data)
    assert server.echoed.acquire(timeout=5)
    time.sleep(0.05)  # let the proxy read the echo; the ordering must hold however long it takes


class TestOrdering:
    """Bytes held by a fault come out before later bytes, whatever the fault changes to."""

    def test_latency_lowered_keeps_order(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            proxy.latency(0.5)
            send_and_wait_echoed(client, echo_server, b"first ")
            proxy.latency(0)
            send_and_wait_echoed(client, echo_server, b"second")
            assert recv_exactly(client, 12) == b"first second"

    def test_restore_keeps_order(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            proxy.latency(0.5)
            send_and_wait_echoed(client, echo_server, b"first ")
            proxy.restore()
            send_and_wait_echoed(client, echo_server, b"second")
            assert recv_exactly(client, 12) == b"first second"

    def test_restore_releases_held_bytes_at_once(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            proxy.latency(30)
            send_and_wait_echoed(client, echo_server, b"held")
            started = time.monotonic()
            proxy.restore()
            assert recv_exactly(client, 4) == b"held"
            assert time.monotonic() - started < 2

    def test_blackhole_holds_then_restore_delivers_in_order(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            send_and_wait_echoed(client, echo_server, b"a")
            assert recv_exactly(client, 1) == b"a"
            proxy.blackhole()
            client.sendall(b"bc")
            client.settimeout(0.2)
            with pytest.raises(TimeoutError):
                client.recv(10)
            client.settimeout(5)
            proxy.restore()
            client.sendall(b"d")
            assert recv_exactly(client, 3) == b"bcd"

    def test_latency_applies_to_replies(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            proxy.latency(0.3)
            started = time.monotonic()
            client.sendall(b"x")
            assert recv_exactly(client, 1) == b"x"
            assert time.monotonic() - started >= 0.3


class TestIndependence:
    """A client that stops reading never delays the others."""

    def test_non_reading_client_does_not_freeze_others(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy:
            stuck = connect(proxy)
            payload = b"z" * (32 * 1024 * 1024)

            def flood() -> None:
                with contextlib.suppress(OSError):
                    stuck.sendall(payload)

            flooder = threading.Thread(target=flood, daemon=True)
            flooder.start()
            try:
                time.sleep(0.3)  # the flood fills every buffer on the way back
                with connect(proxy, timeout=2) as other:
                    for round_trip in range(20):
                        started = time.monotonic()
                        message = f"ping {round_trip}".encode()
                        other.sendall(message)
                        assert recv_exactly(other, len(message)) == message
                        assert time.monotonic() - started < 1.0
            finally:
                stuck.close()
                flooder.join(timeout=5)


class TestLifeCycle:
    """cut, reset_mid_reply and slow_close as a client sees them; close stops everything."""

    def test_cut_resets_and_refuses(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy:
            client = connect(proxy)
            client.sendall(b"x")
            assert recv_exactly(client, 1) == b"x"
            proxy.cut()
            assert proxy.mode == "cut"
            assert ended(client)
            client.close()
            assert refused(proxy)
            proxy.restore()
            with connect(proxy) as fresh:
                fresh.sendall(b"z")
                assert recv_exactly(fresh, 1) == b"z"

    def test_reset_mid_reply_delivers_a_prefix(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            proxy.reset_mid_reply()
            client.sendall(b"0123456789")
            received = b""
            with contextlib.suppress(OSError):
                while data := client.recv(100):
                    received += data
            assert b"0123456789".startswith(received)
            assert len(received) < 10

    def test_slow_close_holds_the_client_open(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        try:
            with OutageProxy("127.0.0.1", listener.getsockname()[1]) as proxy:
                proxy.slow_close(0.4)
                client = connect(proxy)
                server_side, _ = listener.accept()
                server_side.sendall(b"bye")
                server_side.close()
                started = time.monotonic()
                assert recv_exactly(client, 3) == b"bye"
                assert client.recv(1) == b""
                assert time.monotonic() - started >= 0.35
                client.close()
        finally:
            listener.close()

    def test_close_stops_serving(self, echo_server: EchoServer) -> None:
        proxy = OutageProxy("127.0.0.1", echo_server.port)
        client = connect(proxy)
        proxy.close()
        proxy.close()  # idempotent
        assert not proxy.running
        assert client.recv(1) == b""
        client.close()

    def test_no_descriptor_or_thread_left(self, echo_server: EchoServer) -> None:
        def open_fds() -> int:
            return len(os.listdir("/proc/self/fd"))

        fds, threads = open_fds(), threading.active_count()
        with OutageProxy("127.0.0.1", echo_server.port) as proxy:
            clients = [connect(proxy) for _ in range(10)]
            for client in clients:
                client.sendall(b"x")
                assert recv_exactly(client, 1) == b"x"
            proxy.blackhole()
            clients.append(connect(proxy))  # held until restore(), then closed by close()
            proxy.latency(0.2)
            proxy.restore()
        for client in clients:
            assert client.recv(1) == b""
            client.close()
        echo_server.wait_idle()
        assert (open_fds(), threading.active_count()) == (fds, threads)
