"""Forked children: never blocked by a lock or a probe of the parent's, never on its clients."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from remote_cache import (
    BackendError,
    CircuitOpenError,
    RedisRemoteCacheBackend,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache import _breaker as breaker_module
from remote_cache.testing import RedisClusterFixture
from remote_cache.testing._redis_server import RedisServer
from tests.conftest import BlackHole

# Python 3.12+ warns when a process with threads forks; forking with threads is the point here.
pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

CHILD_BOUND = 10.0
"""Seconds a child may take before it is deemed blocked and killed."""


def run_in_child(body: Callable[[], Any]) -> Any:
    """Fork; run ``body`` in the child and return its JSON result; kill the child if it hangs."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                report = json.dumps({"result": body()})
            except BaseException as exc:  # reported to the parent, which fails
                report = json.dumps({"error": repr(exc)})
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + CHILD_BOUND
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([read_end], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_end, 65536)
            if not chunk:  # the child closed its end: it is exiting
                break
            chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child was still running after {CHILD_BOUND} s")
    finally:
        os.close(read_end)
    assert os.waitpid(pid, 0)[1] == 0
    report = json.loads(b"".join(chunks))
    assert "error" not in report, report["error"]
    return report["result"]


@pytest.fixture
def dead_cluster_connect(black_hole: BlackHole) -> Iterator[threading.Thread]:
    """A thread connecting to a cluster that never answers (2 s timeout), under way."""

    def connect() -> None:
        backend = RedisRemoteCacheBackend(
            host="127.0.0.1", port=black_hole.port, cluster=True, timeout=2.0
        )
        with contextlib.suppress(BackendError):
            backend.get("k")

    thread = threading.Thread(target=connect)
    thread.start()
    deadline = time.monotonic() + 5
    while not black_hole._held and time.monotonic() < deadline:
        time.sleep(0.005)  # until the connect is in progress
    assert black_hole._held
    yield thread
    thread.join(timeout=10)


class TestLocksHeldAtFork:
    """A lock another thread held when the process forked does not block the child."""

    def test_client_being_built(
        self,
        dead_cluster_connect: threading.Thread,
        redis_server: RedisServer,
        black_hole: BlackHole,
    ) -> None:
        def child() -> list[Any]:
            started = time.monotonic()
            healthy = RedisRemoteCacheBackend(url=redis_server.url)
            healthy.put("k", b"from the child")
            value = healthy.get("k")
            took = time.monotonic() - started
            dead = RedisRemoteCacheBackend(
                host="127.0.0.1", port=black_hole.port, cluster=True, timeout=0.3
            )
            try:
                dead.get("k")
            except BackendError as exc:
                return [value.decode() if value else None, took < 1.0, type(exc).__name__]
            return [value.decode() if value else None, took < 1.0, None]

        assert dead_cluster_connect.is_alive()
        assert run_in_child(child) == ["from the child", True, "BackendUnavailableError"]

    def test_breaker_and_registry_locks(self, redis_server: RedisServer) -> None:
        backend = RedisRemoteCacheBackend(url=redis_server.url, retry_after=0)
        backend.put("k", b"v")
        held, done = threading.Event(), threading.Event()

        def hold() -> None:
            # Held the way a thread recording a failure, or creating a breaker, holds them.
            with breaker_module._registry_lock, backend.breaker._lock:
                held.set()
                done.wait(timeout=CHILD_BOUND + 5)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert held.wait(timeout=5)

            def child() -> list[Any]:
                backend.breaker.record_failure()
                value = backend.get("k")  # the probe (retry_after=0) goes through
                other = RedisRemoteCacheBackend(url=redis_server.url, timeout=0.7)  # new breaker
                again = other.get("k")
                return [
                    value.decode() if value else None,
                    backend.breaker.is_open,
                    again.decode() if again else None,
                ]

            assert run_in_child(child) == ["v", False, "v"]
        finally:
            done.set()
            thread.join(timeout=5)


class FirstProbeBlocks:
    """A client whose first get fails, whose second (the probe) blocks until released."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        self.calls = 0
        self.probing = threading.Event()
        self.release = threading.Event()

    def get(self, key: bytes) -> bytes | None:
        self.calls += 1
        if os.getpid() != self.parent:
            return b"child"
        if self.calls == 1:
            import redis.exceptions

            raise redis.exceptions.ConnectionError("refused")
        self.probing.set()
        self.release.wait(timeout=CHILD_BOUND + 5)
        return b"parent"


class TestProbeInFlightAtFork:
    """A probe under way in a parent's thread does not leave the child's breaker half-open."""

    def test_child_probes_itself(self) -> None:
        client = FirstProbeBlocks()
        backend = RedisRemoteCacheBackend(client=client, retry_after=0)
        with pytest.raises(BackendError):
            backend.get("k")
        thread = threading.Thread(target=backend.get, args=("k",))
        thread.start()
        try:
            assert client.probing.wait(timeout=5)
            with pytest.raises(CircuitOpenError):
                backend.get("k")  # the parent's probe is under way: skipped

            def child() -> list[Any]:
                value = backend.get("k")
                return [value.decode() if value else None, backend.breaker.is_open]

            assert run_in_child(child) == ["child", False]
        finally:
            client.release.set()
            thread.join(timeout=5)
        assert not backend.breaker.is_open


class TestClientsAfterFork:
    """The child builds clients of its own; the parent's go on working."""

    def test_child_does_not_reuse_the_parents_client(self, redis_server: RedisServer) -> None:
        backend = RedisRemoteCacheBackend(url=redis_server.url)
        backend.put("k", b"parent")
        parents = backend.client()

        def child() -> list[Any]:
            value = backend.get("k")
            fresh = RedisRemoteCacheBackend(url=redis_server.url).client()
            return [
                value.decode() if value else None,
                backend.client() is parents,
                fresh is parents,
                fresh is backend.client(),
            ]

        assert run_in_child(child) == ["parent", False, False, True]
        assert backend.client() is parents
        assert backend.get("k") == b"parent"

    def test_cluster_client(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        backend = RedisRemoteCacheBackend(url=remote_cache_redis_cluster.url, cluster=True)
        keys = [f"k{i}" for i in range(30)]
        backend.put_many(dict.fromkeys(keys, b"parent"))
        parents = backend.client()

        def child() -> list[Any]:
            values = backend.get_many(keys)
            backend.put("from-child", b"1")
            seen = sorted({value.decode() for value in values.values()})
            return [backend.client() is parents, seen, len(values)]

        assert run_in_child(child) == [False, ["parent"], len(keys)]
        assert backend.client() is parents
        assert backend.get_many(keys) == dict.fromkeys(keys, b"parent")
        assert backend.get("from-child") == b"1"

    def test_forks_while_threads_hammer(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)
        monkeypatch.setenv("REMOTE_CACHE_REDIS_RETRY_AFTER", "0")
        stop = threading.Event()
        failures: list[BaseException] = []

        def hammer(index: int) -> None:
            try:
                for round_ in itertools.count():
                    if stop.is_set():
                        break
                    cache = RemoteFxGraphCache("hammer")  # a new cache per compile
                    cache.put(f"t{index}", index)
                    assert cache.get(f"t{index}") in (index, None)  # None: skipped
                    if index == 0:  # a client built (a new timeout each time), used, closed
                        once = RedisRemoteCacheBackend(
                            url=redis_server.url, timeout=2 + round_ / 10**6
                        )
                        once.put("once", b"1")
                        once.client().close()
                    elif index == 1:
                        cache.backend.breaker.record_failure()  # breakers flip
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:

            def child() -> list[Any]:
                cache = RemoteFxGraphCache("hammer")
                cache.put("child", os.getpid())
                return [cache.get("child") == os.getpid(), cache_stats["RemoteFxGraphCache"].put]

            for _ in range(8):
                seen, puts = run_in_child(child)
                assert seen
                assert puts >= 1
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert not failures
