"""OutageProxy under a random schedule of faults: every byte of every connection checked.

The seed is printed (and in every failure message); set ``REMOTE_CACHE_PROXY_SEED`` to replay one.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from remote_cache.testing import OutageProxy
from tests.testing.test_proxy import EchoServer

CLIENTS = 20
SCHEDULE_SECONDS = 8.0
REPLY_TIMEOUT = 3.0
"""Longer than any stall the schedule makes (a black hole lasts one step, latency <= 0.3 s)."""


@dataclass
class Tally:
    """What the clients saw, added up under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    violations: list[str] = field(default_factory=list)
    connections: int = 0
    ended_early: int = 0
    completed: int = 0
    bytes_checked: int = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def violation(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)


def exchange(proxy: OutageProxy, rng: random.Random, tally: Tally, name: str) -> bool:
    """One connection: send random chunks, check each echo is the exact prefix; half-close.

    Returns whether the connection delivered everything and ended cleanly. A reset or a
    refused connection is a legitimate early end; a wrong byte, a clean end before every
    byte came back, or a stall past ``REPLY_TIMEOUT`` is a violation.
    """
    sent = bytearray()
    received = bytearray()
    total = rng.randint(1, 120_000)
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=REPLY_TIMEOUT)
    except OSError:
        tally.add(ended_early=1)
        return False
    tally.add(connections=1)
    with sock:
        try:
            while len(sent) < total:
                chunk = rng.randbytes(min(rng.randint(1, 16384), total - len(sent)))
                sock.sendall(chunk)
                sent += chunk
                while len(received) < len(sent):
                    data = sock.recv(65536)
                    if not data:
                        tally.violation(f"{name}: clean end after {len(received)}/{len(sent)}")
                        return False
                    received += data
                    if received != sent[: len(received)]:
                        tally.violation(f"{name}: wrong bytes at or after {len(received)}")
                        return False
            sock.shutdown(socket.SHUT_WR)
            if sock.recv(1) != b"":
                tally.violation(f"{name}: bytes after everything was echoed")
                return False
        except TimeoutError:
            tally.violation(f"{name}: stalled over {REPLY_TIMEOUT} s at {len(received)} bytes")
            return False
        except OSError:
            # A reset (cut, reset_mid_reply): what came before it must still be a prefix.
            if received != sent[: len(received)]:
                tally.violation(f"{name}: wrong bytes before a reset")
            tally.add(ended_early=1, bytes_checked=len(received))
            return False
    tally.add(completed=1, bytes_checked=len(received))
    return True


def fault_schedule(proxy: OutageProxy, rng: random.Random, stop: threading.Event) -> list[str]:
    """Apply random fault changes until ``stop``; a black hole is always followed by a restore."""
    faults: list[tuple[str, Callable[[], None]]] = [
        ("cut", proxy.cut),
        ("blackhole", proxy.blackhole),
        ("latency up", lambda: proxy.latency(rng.uniform(0.1, 0.3))),
        ("latency down", lambda: proxy.latency(rng.uniform(0.0, 0.05))),
        ("latency 0", lambda: proxy.latency(0)),
        ("reset_mid_reply", proxy.reset_mid_reply),
        ("slow_close", lambda: proxy.slow_close(rng.uniform(0.05, 0.3))),
        ("restore", proxy.restore),
    ]
    applied = []
    while not stop.is_set():
        name, apply = rng.choice(faults)
        apply()
        applied.append(name)
        stop.wait(rng.uniform(0.02, 0.25))
        if name == "blackhole" or rng.random() < 0.3:
            proxy.restore()
            applied.append("restore")
    proxy.restore()
    return applied


class TestProxyStress:
    """Twenty clients under random fault changes get exact prefixes, in order, never a stall."""

    def test_random_faults_never_reorder_or_corrupt(self) -> None:
        seed = int(os.environ.get("REMOTE_CACHE_PROXY_SEED") or random.randrange(2**32))
        print(f"proxy stress seed: {seed} (REMOTE_CACHE_PROXY_SEED={seed} replays it)")
        tally = Tally()
        stop = threading.Event()
        server = EchoServer()
        try:
            with OutageProxy("127.0.0.1", server.port) as proxy:

                def client(index: int) -> None:
                    rng = random.Random(seed * 1000 + index)
                    while not stop.is_set():
                        exchange(proxy, rng, tally, f"client {index}")

                threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
                for thread in threads:
                    thread.start()
                faults = fault_schedule(proxy, random.Random(seed), _stop_after(stop))
                for thread in threads:
                    thread.join(timeout=30)
                assert not any(thread.is_alive() for thread in threads), f"seed {seed}"
                # After restore(), every client gets a whole clean exchange.
                after = random.Random(seed + 1)
                for index in range(CLIENTS):
                    assert exchange(proxy, after, tally, f"after restore {index}"), (
                        f"seed {seed}: {tally.violations}"
                    )
        finally:
            stop.set()
            server.close()
        assert tally.violations == [], f"seed {seed}: {tally.violations[:5]}"
        assert len(faults) >= 20, f"seed {seed}: {faults}"
        assert tally.completed >= CLIENTS * 2, f"seed {seed}: {tally}"
        assert tally.ended_early >= 1, f"seed {seed}: no fault ever ended a connection"
        assert tally.bytes_checked >= 1_000_000, f"seed {seed}: {tally}"


def _stop_after(stop: threading.Event) -> threading.Event:
    """``stop``, set by a timer after ``SCHEDULE_SECONDS``."""
    timer = threading.Timer(SCHEDULE_SECONDS, stop.set)
    timer.daemon = True
    timer.start()
    return stop


class TestNoClientBlocksAnother:
    """Clients that stop reading slow only themselves: the others' round trips stay fast."""

    def test_stuck_readers_do_not_delay_the_others(self) -> None:
        server = EchoServer()
        stuck: list[socket.socket] = []
        floods: list[threading.Thread] = []
        slowest = 0.0
        try:
            with OutageProxy("127.0.0.1", server.port) as proxy:
                for _ in range(3):
                    sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
                    stuck.append(sock)
                    flood = threading.Thread(target=_flood, args=(sock,), daemon=True)
                    flood.start()
                    floods.append(flood)
                lock = threading.Lock()
                errors: list[BaseException] = []

                def round_trips(index: int) -> None:
                    nonlocal slowest
                    rng = random.Random(index)
                    try:
                        with socket.create_connection((proxy.host, proxy.port), timeout=5) as s:
                            for _ in range(30):
                                message = rng.randbytes(rng.randint(1, 4096))
                                started = time.monotonic()
                                s.sendall(message)
                                got = b""
                                while len(got) < len(message):
                                    data = s.recv(65536)
                                    assert data, "the connection ended"
                                    got += data
                                assert got == message
                                with lock:
                                    slowest = max(slowest, time.monotonic() - started)
                    except BaseException as exc:  # reported below, in the test's thread
                        errors.append(exc)

                workers = [
                    threading.Thread(target=round_trips, args=(i,)) for i in range(CLIENTS - 3)
                ]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join(timeout=60)
                assert errors == []
        finally:
            for sock in stuck:
                sock.close()
            for flood in floods:
                flood.join(timeout=5)
            server.close()
        assert slowest < 1.0, f"a round trip took {slowest:.2f} s behind clients not reading"


def _flood(sock: socket.socket) -> None:
    """Send far more than every buffer on the way can hold, and never read the echo."""
    with contextlib.suppress(OSError):
        for _ in range(64):
            sock.sendall(b"f" * (1024 * 1024))
