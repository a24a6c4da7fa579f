"""Framework-free set-ups behind the pytest fixtures, and their handle types."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from remote_cache import RedisRemoteCacheBackend
from remote_cache import _controller as controller_module
from remote_cache._breaker import reset_breakers
from remote_cache._redis import close_shared_clients
from remote_cache.testing._backends import (
    BackendCall,
    FaultInjectingBackend,
    FaultPlan,
    InMemoryBackend,
    RecordingBackend,
)
from remote_cache.testing._override import override_backends
from remote_cache.testing._redis_cluster import RedisClusterServer
from remote_cache.testing._redis_server import RedisServer

__all__ = [
    "FakeRedisFixture",
    "MemoryFixture",
    "OutageFixture",
    "RecorderFixture",
    "RedisFixture",
    "fakeredis_backends",
    "memory_backends",
    "outage_backends",
    "recording_backends",
    "redis_environment",
]

TEST_TIMEOUT = 0.5
"""Connect and reply timeout the fixtures give Redis caches, in seconds."""


class MemoryFixture:
    """Every cache class uses ``backend``, one shared in-memory store."""

    def __init__(self) -> None:
        self.backend = InMemoryBackend()

    @property
    def entries(self) -> dict[str, Any]:
        """A copy of what is stored: backend keys (``pt2:...:c1``) to stored bytes."""
        return self.backend.entries

    def clear(self) -> None:
        """Forget everything stored."""
        self.backend.clear()


class RecorderFixture(MemoryFixture):
    """As ``MemoryFixture``, and ``calls`` lists every backend call in order."""

    def __init__(self) -> None:
        super().__init__()
        self.recorder = RecordingBackend(self.backend)

    @property
    def calls(self) -> list[BackendCall]:
        """Every backend call so far, as ``BackendCall`` records."""
        return self.recorder.calls

    def ops(self) -> list[str]:
        """The operation of each call, in order."""
        return self.recorder.ops()


class OutageFixture(MemoryFixture):
    """As ``MemoryFixture``, behind a ``FaultInjectingBackend`` (``injector``)."""

    def __init__(self) -> None:
        super().__init__()
        self.injector = FaultInjectingBackend(self.backend)

    def down(self) -> None:
        """Every backend call raises a ``BackendUnavailableError`` (a ``ConnectionError``)."""
        self.injector.down()

    def up(self) -> None:
        """End ``down()``; what was stored before is still there."""
        self.injector.up()

    def flaky(self, p: float, *, seed: int | None = 0) -> FaultPlan:
        """Fail each backend call with probability ``p``, repeatably for ``seed``."""
        return self.injector.fail_randomly(p, seed=seed)

    def slow(self, seconds: float) -> FaultPlan:
        """Add ``seconds`` of latency to every backend call."""
        return self.injector.add_latency(seconds)

    def restore(self) -> None:
        """End every fault: up, no plans."""
        self.injector.clear()

    @property
    def injected(self) -> int:
        """Failures injected so far."""
        return self.injector.injected


@contextlib.contextmanager
def memory_backends() -> Iterator[MemoryFixture]:
    """Every cache built in the block uses one shared in-memory store."""
    handle = MemoryFixture()
    with override_backends(lambda: handle.backend):
        yield handle


@contextlib.contextmanager
def recording_backends() -> Iterator[RecorderFixture]:
    """As ``memory_backends``, recording every call."""
    handle = RecorderFixture()
    with override_backends(lambda: handle.recorder):
        yield handle


@contextlib.contextmanager
def outage_backends() -> Iterator[OutageFixture]:
    """As ``memory_backends``, behind a fault injector."""
    handle = OutageFixture()
    with override_backends(lambda: handle.injector):
        yield handle


_REDIS_VARIABLES = [
    f"{prefix}REDIS_{name}"
    for prefix in ("REMOTE_CACHE_", "TORCHINDUCTOR_")
    for name in ("URL", "HOST", "PORT", "CLUSTER", "TIMEOUT", "RETRY_AFTER")
]


def _reset_connections() -> None:
    close_shared_clients()
    reset_breakers()
    controller_module._failing.clear()


@contextlib.contextmanager
def redis_environment(
    url: str | None,
    *,
    timeout: float = TEST_TIMEOUT,
    retry_after: float = 0.0,
    client_factory: Callable[[Any], Any] | None = None,
    cluster: bool = False,
) -> Iterator[None]:
    """Point Redis caches at ``url`` the way users' code meets it: the environment.

    Sets ``REMOTE_CACHE_REDIS_URL`` (and short timeouts and cool-down, and
    ``REMOTE_CACHE_REDIS_CLUSTER=1`` with ``cluster``), clears the other Redis variables,
    installs ``client_factory`` when given, and restores all of it on exit, closing the
    clients and breakers the block used.
    """
    saved = {name: os.environ.get(name) for name in _REDIS_VARIABLES}
    saved_factory = RedisRemoteCacheBackend.client_factory
    _reset_connections()
    try:
        for name in _REDIS_VARIABLES:
            os.environ.pop(name, None)
        if url is not None:
            os.environ["REMOTE_CACHE_REDIS_URL"] = url
        os.environ["REMOTE_CACHE_REDIS_TIMEOUT"] = str(timeout)
        os.environ["REMOTE_CACHE_REDIS_RETRY_AFTER"] = str(retry_after)
        if cluster:
            os.environ["REMOTE_CACHE_REDIS_CLUSTER"] = "1"
        RedisRemoteCacheBackend.client_factory = client_factory
        yield
    finally:
        RedisRemoteCacheBackend.client_factory = saved_factory
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reset_connections()


class FakeRedisFixture:
    """Redis caches talk to ``server``, a fresh fakeredis server."""

    def __init__(self) -> None:
        import fakeredis

        self.server = fakeredis.FakeServer()
        self.client = fakeredis.FakeRedis(server=self.server)

    def make_client(self, settings: Any = None) -> Any:
        """A new client of the fake server (what each Redis backend gets)."""
        import fakeredis

        return fakeredis.FakeRedis(server=self.server)

    def disconnect(self) -> None:
        """Make every client raise ``ConnectionError``, as a server outage would."""
        self.server.connected = False

    def reconnect(self) -> None:
        """End ``disconnect()``; the data is still there."""
        self.server.connected = True

    @property
    def entries(self) -> dict[Any, Any]:
        """Every stored key and its bytes (the fixture's own client bypasses outages)."""
        connected, self.server.connected = self.server.connected, True
        try:
            return {key: self.client.get(key) for key in self.client.scan_iter()}
        finally:
            self.server.connected = connected


@contextlib.contextmanager
def fakeredis_backends() -> Iterator[FakeRedisFixture]:
    """Redis caches built in the block talk to a fresh fakeredis server."""
    handle = FakeRedisFixture()
    with redis_environment(None, client_factory=handle.make_client):
        yield handle


class _KeyGuard:
    """Remembers the keys tests write on a server we do not own, to undo exactly that."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.saved: dict[bytes | str, tuple[bytes, int]] = {}
        self.written: set[bytes | str] = set()

    def before_write(self, keys: list[Any]) -> None:
        for key in keys:
            if key in self.written:
                continue
            self.written.add(key)
            dumped = self.client.dump(key)
            if dumped is not None:
                ttl = self.client.pttl(key)
                self.saved[key] = (dumped, max(ttl, 0))

    def undo(self) -> None:
        if self.written:
            self.client.delete(*self.written)
        for key, (dumped, ttl) in self.saved.items():
            self.client.restore(key, ttl, dumped, replace=True)
        self.written.clear()
        self.saved.clear()


class _GuardedPipeline:
    def __init__(self, pipeline: Any, guard: _KeyGuard) -> None:
        self._pipeline = pipeline
        self._guard = guard
        self._keys: list[Any] = []

    def set(self, key: Any, *args: Any, **options: Any) -> Any:
        self._keys.append(key)
        return self._pipeline.set(key, *args, **options)

    def execute(self) -> Any:
        self._guard.before_write(self._keys)
        return self._pipeline.execute()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)


class _GuardedClient:
    """A redis-py client whose writes are undone by the guard at the end of the test."""

    def __init__(self, client: Any, guard: _KeyGuard) -> None:
        self._client = client
        self._guard = guard

    def set(self, key: Any, *args: Any, **options: Any) -> Any:
        self._guard.before_write([key])
        return self._client.set(key, *args, **options)

    def mset(self, mapping: Any) -> Any:
        self._guard.before_write(list(mapping))
        return self._client.mset(mapping)

    def pipeline(self, *args: Any, **options: Any) -> _GuardedPipeline:
        return _GuardedPipeline(self._client.pipeline(*args, **options), self._guard)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RedisFixture:
    """Redis caches talk to a real server: ``url``; ``client`` reads it directly."""

    def __init__(self, url: str, client: Any, server: RedisServer | None) -> None:
        self.url = url
        self.client = client
        self.server = server
        """The ``RedisServer`` the plugin started, or None with ``--remote-cache-redis-url``."""


class RedisClusterFixture:
    """Redis caches talk to a real Redis Cluster: ``url``; ``client`` is a cluster client."""

    def __init__(self, cluster: RedisClusterServer, client: Any) -> None:
        self.cluster = cluster
        self.url = cluster.url
        self.client = client

    def kill(self, index: int) -> None:
        """Kill master ``index`` (restarted after the test if the test does not)."""
        self.cluster.kill(index)

    def restart(self, index: int) -> None:
        """Start master ``index`` again, with its slots and without its data."""
        self.cluster.restart(index)

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the master serving ``key`` (a backend key, as stored)."""
        return self.cluster.node_for_key(key)
