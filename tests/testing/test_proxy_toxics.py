"""``OutageProxy``'s Toxiproxy vocabulary: latency with jitter, bandwidth, slicer, limit_data,
timeout, reset_peer and down, per direction, with a per-connection toxicity."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from remote_cache.testing import OutageProxy
from tests.testing.test_proxy import EchoServer, connect, recv_exactly


@pytest.fixture
def proxy() -> Iterator[OutageProxy]:
    server = EchoServer()
    try:
        with OutageProxy("127.0.0.1", server.port) as proxy:
            yield proxy
    finally:
        server.close()


def round_trip(proxy: OutageProxy, payload: bytes = b"ping") -> float:
    """Seconds for ``payload`` to come back through the proxy on a new connection."""
    with connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        return time.monotonic() - started


class TestLatency:
    def test_downstream_by_default(self, proxy: OutageProxy) -> None:
        proxy.latency(0.2)
        assert 0.2 <= round_trip(proxy) < 2

    def test_upstream(self, proxy: OutageProxy) -> None:
        proxy.latency(0.2, direction="upstream")
        assert 0.2 <= round_trip(proxy) < 2

    def test_both_directions_add_up(self, proxy: OutageProxy) -> None:
        proxy.latency(0.15, direction="upstream")
        proxy.latency(0.15)
        assert 0.3 <= round_trip(proxy) < 2

    def test_jitter_moves_it_and_never_reorders(self, proxy: OutageProxy) -> None:
        proxy.latency(0.1, jitter=0.1)
        times = [round_trip(proxy) for _ in range(6)]
        assert all(0.0 <= t < 1.5 for t in times)
        assert max(times) - min(times) > 0.01  # it varies
        with connect(proxy) as sock:  # many small chunks: each arrives in order
            payload = bytes(range(256)) * 20
            for offset in range(0, len(payload), 256):
                sock.sendall(payload[offset : offset + 256])
            assert recv_exactly(sock, len(payload)) == payload

    def test_zero_ends_it(self, proxy: OutageProxy) -> None:
        proxy.latency(0.5)
        proxy.latency(0)
        assert round_trip(proxy) < 0.4


class TestBandwidth:
    def test_bytes_per_second(self, proxy: OutageProxy) -> None:
        proxy.bandwidth(100_000)
        payload = bytes(30_000)
        assert 0.25 <= round_trip(proxy, payload) < 3  # 30 kB at 100 kB/s

    def test_upstream(self, proxy: OutageProxy) -> None:
        proxy.bandwidth(100_000, direction="upstream")
        assert 0.25 <= round_trip(proxy, bytes(30_000)) < 3


class TestSlicer:
    def test_slices_arrive_apart(self, proxy: OutageProxy) -> None:
        proxy.slicer(100, size_variation=20, delay=0.02)
        with connect(proxy) as sock:
            payload = bytes(range(256)) * 4  # 1024 bytes: about ten slices
            started = time.monotonic()
            sock.sendall(payload)
            reads = []
            while sum(map(len, reads)) < len(payload):
                reads.append(sock.recv(4096))
            assert b"".join(reads) == payload
            assert time.monotonic() - started >= 0.1
            assert max(map(len, reads)) <= 240  # slices, not the whole chunk at once

    def test_variation_over_the_size_is_refused(self, proxy: OutageProxy) -> None:
        with pytest.raises(ValueError, match="size_variation <= average_size"):
            proxy.slicer(10, size_variation=11)


class TestLimitData:
    def test_closes_after_the_limit(self, proxy: OutageProxy) -> None:
        proxy.limit_data(100)
        with connect(proxy) as sock:
            sock.sendall(bytes(300))
            assert len(recv_exactly(sock, 300)) == 100  # then the close
            assert sock.recv(1) == b""

    def test_upstream(self, proxy: OutageProxy) -> None:
        proxy.limit_data(50, direction="upstream")
        with connect(proxy) as sock:
            sock.sendall(bytes(300))
            assert len(recv_exactly(sock, 300)) <= 50


class TestTimeout:
    def test_closes_after_its_seconds(self, proxy: OutageProxy) -> None:
        proxy.timeout(0.3)
        with connect(proxy) as sock:
            started = time.monotonic()
            sock.sendall(b"lost")
            # Nothing came back, then the end: a close, or a reset (its bytes were unread).
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(10) == b""
            assert time.monotonic() - started >= 0.25

    def test_zero_never_closes_and_restore_closes_what_it_stopped(self, proxy: OutageProxy) -> None:
        with connect(proxy, timeout=0.4) as sock:
            proxy.timeout(0)  # an open connection stops too
            sock.sendall(b"held")
            with pytest.raises(TimeoutError):
                sock.recv(10)
            proxy.restore()  # as Toxiproxy removing its toxic: the stream is closed
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(10) == b""  # what was held is dropped, never delivered
        assert round_trip(proxy) < 2  # a new connection moves again

    def test_one_direction(self, proxy: OutageProxy) -> None:
        proxy.timeout(0, direction="downstream")
        with connect(proxy, timeout=0.3) as sock:
            sock.sendall(b"echoed")  # reaches the echo server; its echo is stopped
            with pytest.raises(TimeoutError):
                sock.recv(10)


class TestResetPeer:
    def test_new_connections_are_reset_after_their_seconds(self, proxy: OutageProxy) -> None:
        proxy.reset_peer(0.2)
        with connect(proxy) as sock:
            sock.sendall(b"a")
            assert recv_exactly(sock, 1) == b"a"
            time.sleep(0.35)
            sock.settimeout(0.5)
            with pytest.raises(ConnectionResetError):
                sock.recv(1)

    def test_down_is_cut(self, proxy: OutageProxy) -> None:
        proxy.down()
        assert proxy.mode == "cut"


class TestToxicity:
    def slowed(self, proxy: OutageProxy, connections: int = 12) -> list[bool]:
        return [round_trip(proxy) >= 0.1 for _ in range(connections)]

    def test_none_all_and_a_seeded_part(self, proxy: OutageProxy) -> None:
        proxy.latency(0.15, toxicity=0)
        assert not any(self.slowed(proxy, 4))
        proxy.latency(0.15, toxicity=1)
        assert all(self.slowed(proxy, 4))
        proxy.seed = 7
        proxy.latency(0.15, toxicity=0.5)
        first = self.slowed(proxy)
        proxy.latency(0.15, toxicity=0.5)  # the same seed: the same connections slowed
        assert self.slowed(proxy) == first
        assert 0 < sum(first) < len(first)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.latency(1, direction="sideways"), "direction"),
        (lambda p: p.latency(1, toxicity=1.5), "toxicity"),
        (lambda p: p.latency(1, toxicity=True), "toxicity"),
        (lambda p: p.latency(1, jitter=-1), "seconds"),
        (lambda p: p.bandwidth(-5), "bytes_per_second"),
        (lambda p: p.limit_data(float("inf")), "size"),
        (lambda p: p.timeout(-1), "seconds"),
        (lambda p: p.reset_peer(float("nan")), "seconds"),
    ],
    ids=[
        "direction",
        "toxicity",
        "toxicity-bool",
        "jitter",
        "bandwidth",
        "limit",
        "timeout",
        "reset",
    ],
)
def test_bad_settings_are_refused(proxy: OutageProxy, call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(proxy)  # type: ignore[operator]


def test_restore_ends_every_toxic(proxy: OutageProxy) -> None:
    proxy.latency(0.3)
    proxy.bandwidth(1000)
    proxy.slicer(1, delay=0.05)
    proxy.limit_data(1)
    proxy.restore()
    assert round_trip(proxy, bytes(2000)) < 0.25
