"""OutageProxy keeps every byte in order under fault changes, and no client blocks another."""

from __future__ import annotations

import contextlib
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

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
        self.accepted = 0
        """Connections accepted so far."""
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
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            with self._lock:
                self._connections.append(conn)
                self._threads.append(thread)
                self.accepted += 1
                thread.start()  # under the lock: wait_idle() never sees it unstarted

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

    def wait_idle(self, connections: int = 0) -> None:
        """Wait until ``connections`` were accepted, and every one so far has ended.

        Each thread closes its own connection. A connection the proxy opened and closed may
        still wait in the listening backlog, hence the count to wait for.
        """
        deadline = time.monotonic() + 5
        while self.accepted < connections and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    def close(self) -> None:
        """Stop accepting and close every connection; return once every thread has ended."""
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.socket.close()
        self._accepting.join(timeout=5)
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

    def test_blackhole_new_connection_answered_only_after_restore(
        self, echo_server: EchoServer
    ) -> None:
        payload = random.Random(1).randbytes(1024 * 1024)  # more than the proxy holds
        with OutageProxy("127.0.0.1", echo_server.port) as proxy:
            proxy.blackhole()
            with connect(proxy) as client:  # the connect succeeds
                sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
                sender.start()
                try:
                    client.settimeout(0.3)
                    with pytest.raises(TimeoutError):
                        client.recv(1)  # nothing answered
                    assert echo_server.accepted == 0  # not even connected to the server
                    client.settimeout(5)
                    proxy.restore()
                    assert recv_exactly(client, len(payload)) == payload
                finally:
                    sender.join(timeout=10)

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
        echo_server.wait_idle(connections=11)  # the held one connected at restore()
        assert (open_fds(), threading.active_count()) == (fds, threads)


FAULTS_ON_A_CLOSED_PROXY: dict[str, Callable[[OutageProxy], object]] = {
    "cut": lambda proxy: proxy.cut(),
    "blackhole": lambda proxy: proxy.blackhole(),
    "latency": lambda proxy: proxy.latency(0.1),
    "reset_mid_reply": lambda proxy: proxy.reset_mid_reply(),
    "slow_close": lambda proxy: proxy.slow_close(0.1),
}


class TestClosed:
    """A closed proxy refuses every fault loudly, says it is closed, and leaves nothing open."""

    @pytest.mark.parametrize("fault", sorted(FAULTS_ON_A_CLOSED_PROXY))
    def test_fault_after_close_raises(self, echo_server: EchoServer, fault: str) -> None:
        proxy = OutageProxy("127.0.0.1", echo_server.port)
        proxy.close()
        with pytest.raises(RuntimeError, match="closed"):
            FAULTS_ON_A_CLOSED_PROXY[fault](proxy)
        assert proxy.mode == "closed"
        assert "closed" in repr(proxy)
        proxy.restore()  # nothing to end: a no-op, safe in clean-up code
        proxy.close()
        assert proxy.mode == "closed"

    def test_with_block_on_a_closed_proxy_raises(self, echo_server: EchoServer) -> None:
        proxy = OutageProxy("127.0.0.1", echo_server.port)
        proxy.close()
        with pytest.raises(RuntimeError, match="closed"), proxy:
            pass

    def test_exception_in_with_block_closes_everything(self, echo_server: EchoServer) -> None:
        proxy = OutageProxy("127.0.0.1", echo_server.port)
        client = connect(proxy, timeout=2)

        def fail_inside() -> None:
            with proxy:
                proxy.blackhole()
                raise ZeroDivisionError

        try:
            with pytest.raises(ZeroDivisionError):
                fail_inside()
            assert not proxy.running
            assert proxy.mode == "closed"
            assert client.recv(1) == b""
        finally:
            client.close()
            proxy.close()

    def test_close_with_busy_clients_is_prompt_and_leaves_nothing(
        self, echo_server: EchoServer
    ) -> None:
        fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
        clients: list[socket.socket] = []
        try:
            proxy = OutageProxy("127.0.0.1", echo_server.port)
            port = proxy.port
            clients += [connect(proxy, timeout=2) for _ in range(5)]  # connect, never send
            talking = [connect(proxy, timeout=2) for _ in range(5)]
            clients += talking
            for client in talking:
                send_and_wait_echoed(client, echo_server, b"held")  # held by the latency below
            proxy.latency(30)
            for client in talking:
                send_and_wait_echoed(client, echo_server, b"more")
            proxy.blackhole()
            clients += [connect(proxy, timeout=2) for _ in range(5)]  # accepted, never connected
            started = time.monotonic()
            proxy.close()
            assert time.monotonic() - started < 1.0
            assert not proxy.running
            for client in clients:
                with contextlib.suppress(ConnectionResetError):
                    while client.recv(65536):  # ends: a close or a reset, never a hang
                        pass
            with pytest.raises(ConnectionRefusedError):  # the port is released
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        finally:
            for client in clients:
                client.close()
        echo_server.wait_idle(connections=10)  # the 5 accepted in the black hole never connected
        assert (len(os.listdir("/proc/self/fd")), threading.active_count()) == (fds, threads)

    def test_concurrent_close_calls_all_return(self, echo_server: EchoServer) -> None:
        proxy = OutageProxy("127.0.0.1", echo_server.port)
        client = connect(proxy, timeout=2)
        errors: list[BaseException] = []

        def close() -> None:
            try:
                proxy.close()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        closers = [threading.Thread(target=close) for _ in range(8)]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(timeout=10)
        try:
            assert not any(closer.is_alive() for closer in closers)
            assert errors == []
            assert not proxy.running
            assert client.recv(1) == b""
        finally:
            client.close()


class TestThreads:
    """Fault methods called from many threads at once, with clients talking, never hang."""

    def test_fault_calls_race_with_traffic_and_close(self, echo_server: EchoServer) -> None:
        proxy = OutageProxy("127.0.0.1", echo_server.port)
        stop = threading.Event()
        errors: list[BaseException] = []
        slowest = [0.0]
        refused_after_close = [0]

        def change_faults(seed: int) -> None:
            rng = random.Random(seed)
            calls: list[Callable[[], None]] = [
                proxy.cut,
                proxy.blackhole,
                lambda: proxy.latency(rng.uniform(0, 0.1)),
                proxy.reset_mid_reply,
                lambda: proxy.slow_close(rng.uniform(0, 0.1)),
                proxy.restore,
            ]
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        rng.choice(calls)()
                    except RuntimeError as exc:
                        if "closed" not in str(exc):
                            raise
                        refused_after_close[0] += 1
                        return
                    slowest[0] = max(slowest[0], time.monotonic() - started)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        def talk(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                with contextlib.suppress(OSError), connect(proxy, timeout=0.5) as client:
                    message = rng.randbytes(rng.randint(1, 50_000))
                    client.sendall(message)
                    received = b""
                    while len(received) < len(message) and (data := client.recv(65536)):
                        received += data
                    if not message.startswith(received):
                        errors.append(AssertionError("a reply that is not a prefix"))

        workers = [threading.Thread(target=change_faults, args=(i,)) for i in range(4)]
        workers += [threading.Thread(target=talk, args=(100 + i,)) for i in range(4)]
        try:
            for worker in workers:
                worker.start()
            time.sleep(1.5)
            proxy.close()  # while the fault threads keep calling
            time.sleep(0.2)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=10)
            proxy.close()
        assert not any(worker.is_alive() for worker in workers)
        assert errors == []
        assert refused_after_close[0] == 4
        assert slowest[0] < 2.0


def _reset_mid_reply_under_latency(proxy: OutageProxy) -> None:
    proxy.latency(5)
    proxy.reset_mid_reply()


HEALING_CASES: dict[str, tuple[Callable[[OutageProxy], object], bool, str]] = {
    # name: (the fault, whether the server hears the bytes sent during it, what then of
    # the connection open meanwhile)
    "cut": (lambda proxy: proxy.cut(), False, "ended"),
    "blackhole": (lambda proxy: proxy.blackhole(), False, "carries on"),
    "latency": (lambda proxy: proxy.latency(5), True, "carries on"),
    "reset_mid_reply": (lambda proxy: proxy.reset_mid_reply(), True, "ends or carries on"),
    "reset_mid_reply, reset pending": (_reset_mid_reply_under_latency, True, "carries on"),
    "slow_close": (lambda proxy: proxy.slow_close(30), True, "carries on"),
}


class TestRestoreHeals:
    """After any fault and ``restore()``, the proxy passes every byte through at once."""

    @pytest.mark.parametrize("case", list(HEALING_CASES))
    def test_fault_then_restore_passes_through(self, echo_server: EchoServer, case: str) -> None:
        fault, server_hears, outcome = HEALING_CASES[case]
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as old:
            send_and_wait_echoed(old, echo_server, b"before")
            assert recv_exactly(old, 6) == b"before"
            fault(proxy)
            with contextlib.suppress(OSError):  # a cut connection refuses it
                if server_hears:
                    send_and_wait_echoed(old, echo_server, b"during")
                else:
                    old.sendall(b"during")
            proxy.restore()
            assert proxy.mode == "up"
            with connect(proxy) as fresh:
                for round_trip in range(5):
                    message = f"round trip {round_trip}".encode()
                    started = time.monotonic()
                    fresh.sendall(message)
                    assert recv_exactly(fresh, len(message)) == message
                    assert time.monotonic() - started < 1.0
                big = random.Random(case).randbytes(1_000_000)
                fresh.sendall(big)
                assert recv_exactly(fresh, len(big)) == big
                fresh.shutdown(socket.SHUT_WR)
                assert fresh.recv(1) == b""  # a clean end, no reset
            try:
                received = recv_exactly(old, 6)
                old.sendall(b"after")
                received += recv_exactly(old, 5)
            except OSError:
                received, alive = b"", False
            else:
                alive = received == b"duringafter"
                assert b"duringafter".startswith(received)
            assert {"ended": not alive, "carries on": alive}.get(outcome, True), received

    def test_restore_ends_a_slow_close_at_once(self, echo_server: EchoServer) -> None:
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            proxy.slow_close(30)
            client.shutdown(socket.SHUT_WR)  # the echo server then closes its side
            echo_server.wait_idle()
            time.sleep(0.05)  # the proxy reads that end and starts the slow close
            started = time.monotonic()
            proxy.restore()
            assert client.recv(1) == b""
            assert time.monotonic() - started < 1.0


class TestHostileUse:
    """Odd arguments are refused; huge payloads, idle clients and a reused port are fine."""

    @pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
    @pytest.mark.parametrize("method", ["latency", "slow_close"])
    def test_bad_seconds_refused(
        self, echo_server: EchoServer, method: str, seconds: float
    ) -> None:
        with (
            OutageProxy("127.0.0.1", echo_server.port) as proxy,
            pytest.raises(ValueError, match="seconds"),
        ):
            getattr(proxy, method)(seconds)

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_a_crashed_serving_thread_is_loud(
        self, echo_server: EchoServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        proxy = OutageProxy("127.0.0.1", echo_server.port)
        try:
            client = connect(proxy, timeout=2)

            def crash() -> None:
                raise OSError("simulated failure inside the serving thread")

            monkeypatch.setattr(proxy, "_do_cut", crash)
            with pytest.raises(RuntimeError, match="stopped serving"):
                proxy.cut()
            assert proxy.mode == "closed"
            with client:
                assert client.recv(1) == b""  # its sockets were closed, not left hanging
            with pytest.raises(RuntimeError, match="closed"):
                proxy.blackhole()
        finally:
            proxy.close()

    def test_unresolvable_target_fails_at_construction(self) -> None:
        threads = threading.active_count()
        with pytest.raises(socket.gaierror):
            OutageProxy("no-such-host.invalid", 6379)
        assert threading.active_count() == threads

    def test_huge_payload_exact(self, echo_server: EchoServer) -> None:
        payload = random.Random(0).randbytes(16 * 1024 * 1024)
        with OutageProxy("127.0.0.1", echo_server.port) as proxy, connect(proxy) as client:
            idle = connect(proxy)  # connects and never sends: harmless
            sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
            sender.start()
            try:
                assert recv_exactly(client, len(payload)) == payload
            finally:
                sender.join(timeout=10)
                idle.close()

    def test_server_restarted_on_the_same_port(self) -> None:
        first = EchoServer()
        port = first.port
        try:
            with OutageProxy("127.0.0.1", port) as proxy:
                first.close()
                assert refused(proxy)  # nothing listens: the client is reset
                again = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    again.bind(("127.0.0.1", port))
                    again.listen(1)
                    with connect(proxy) as client:
                        server_side, _ = again.accept()
                        with server_side:
                            client.sendall(b"hello")
                            assert recv_exactly(server_side, 5) == b"hello"
                finally:
                    again.close()
        finally:
            first.close()


_OUT_OF_DESCRIPTORS_SCRIPT = """
import os, resource, socket, sys, time
from remote_cache.testing import OutageProxy

proxy = OutageProxy("127.0.0.1", int(sys.argv[1]))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))  # the listing's own fd
resource.setrlimit(resource.RLIMIT_NOFILE, (highest, hard))
try:
    socket.socket().close()
except OSError:
    pass
else:
    raise SystemExit("descriptors left: the test would prove nothing")
print(proxy.port, flush=True)
sys.stdin.readline()  # a client is waiting in the backlog
started = time.process_time()
time.sleep(1.0)
print(time.process_time() - started, flush=True)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
sys.stdin.readline()
proxy.close()
"""


class TestOutOfDescriptors:
    """Without a free descriptor the proxy waits instead of spinning, then accepts again."""

    def test_no_busy_loop_and_recovery(self, echo_server: EchoServer) -> None:
        child = subprocess.Popen(
            [sys.executable, "-c", _OUT_OF_DESCRIPTORS_SCRIPT, str(echo_server.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            port = int(child.stdout.readline())
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                child.stdin.write("connected\n")
                child.stdin.flush()
                cpu_seconds = float(child.stdout.readline())
                assert cpu_seconds < 0.1, f"{cpu_seconds:.2f} s of CPU in 1 s while waiting"
                client.sendall(b"x")  # served once descriptors are back
                assert recv_exactly(client, 1) == b"x"
            child.stdin.write("done\n")
            child.stdin.flush()
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)
            child.stdin.close()
            child.stdout.close()
