"""Framework-free set-ups behind the pytest fixtures, and their handle types."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from remote_cache import RedisRemoteCacheBackend
from remote_cache._process import reset_process_state
from remote_cache._settings import resolve_redis_settings
from remote_cache.testing._backends import (
    BackendCall,
    FaultInjectingBackend,
    FaultPlan,
    InMemoryBackend,
    RecordingBackend,
)
from remote_cache.testing._fakeredis import new_fake_server
from remote_cache.testing._fakeredis_faults import faulting_client
from remote_cache.testing._override import override_backends
from remote_cache.testing.faults import Schedule

__all__ = [
    "FakeRedisFixture",
    "MemoryFixture",
    "OutageFixture",
    "RecorderFixture",
    "fakeredis_backends",
    "memory_backends",
    "outage_backends",
    "recording_backends",
    "redis_environment",
]

TEST_TIMEOUT = 0.5
"""Connect and reply timeout the fixtures give Redis caches, in seconds."""


class MemoryFixture:
    """Every cache class uses ``backend``, one shared in-memory store.

    Its entries expire as a Redis server's would under the Redis backend's settings
    (``REMOTE_CACHE_REDIS_EXPIRE`` when the fixture starts; none when unset), by the
    process's clock (a ``VirtualClock`` when one is installed).
    """

    def __init__(self) -> None:
        self.backend = InMemoryBackend(expire=resolve_redis_settings(url=None).expire)

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


def fixture_retry_after() -> float:
    """The circuit breaker's cool-down the fixtures keep: ``REMOTE_CACHE_REDIS_RETRY_AFTER``
    when it is set (the Redis backend's own reading), else 0: no cool-down, every call after
    a failure goes to the server (production's default is 30 s; set it, and advance a
    ``remote_cache_clock``, to test that)."""
    if not os.environ.get("REMOTE_CACHE_REDIS_RETRY_AFTER", "").strip():
        return 0.0
    retry_after = resolve_redis_settings(url=None).retry_after
    return math.inf if retry_after is None else retry_after  # "never": math.inf


def redis_deadline() -> float:
    """A call's deadline, as the Redis backend would resolve it now.

    ``REMOTE_CACHE_REDIS_TIMEOUT``, else 1 second (the URL, which the fakes never use, is not
    read).
    """
    return resolve_redis_settings(url=None).timeout


class OutageFixture(MemoryFixture):
    """As ``MemoryFixture``, behind a ``FaultInjectingBackend`` (``injector``).

    Calls keep the deadline a Redis server's client would (``redis_deadline()`` when the
    fixture starts): a call slowed past it ends at the deadline as a ``BackendTimeoutError``,
    so a cache misses (or drops a put) then, as it would in production.
    """

    def __init__(self) -> None:
        super().__init__()
        self.injector = FaultInjectingBackend(
            self.backend, deadline=redis_deadline(), retry_after=fixture_retry_after()
        )

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
        """Add ``seconds`` of latency to every backend call (past the deadline: a timeout)."""
        return self.injector.add_latency(seconds)

    def restore(self) -> None:
        """End every fault: up, no plans, no schedule."""
        self.injector.clear()

    def apply(self, schedule: Schedule) -> Schedule:
        """Apply ``schedule`` to every backend call (``FaultInjectingBackend.apply``)."""
        return self.injector.apply(schedule)

    @property
    def schedule(self) -> Schedule | None:
        """The ``Schedule`` applied; its ``fired`` logs every fault that fired."""
        return self.injector.schedule

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


@contextlib.contextmanager
def redis_environment(
    url: str | None,
    *,
    timeout: float = TEST_TIMEOUT,
    retry_after: float | None = None,
    client_factory: Callable[[Any], Any] | None = None,
    cluster: bool = False,
) -> Iterator[None]:
    """Point Redis caches at ``url`` the way users' code meets it: the environment.

    Sets ``REMOTE_CACHE_REDIS_URL`` (and short timeouts, the cool-down ``retry_after``, by
    default ``fixture_retry_after()``, and ``REMOTE_CACHE_REDIS_CLUSTER=1`` with
    ``cluster``), clears the other Redis variables, installs ``client_factory`` when given,
    and restores all of it on exit, closing the clients and breakers the block used.
    """
    if retry_after is None:
        retry_after = fixture_retry_after()
    saved = {name: os.environ.get(name) for name in _REDIS_VARIABLES}
    saved_factory = RedisRemoteCacheBackend.client_factory
    reset_process_state(counters=False)  # clients, breakers and outages of before: not ours
    try:
        for name in _REDIS_VARIABLES:
            os.environ.pop(name, None)
        if url is not None:
            os.environ["REMOTE_CACHE_REDIS_URL"] = url
        os.environ["REMOTE_CACHE_REDIS_TIMEOUT"] = str(timeout)
        os.environ["REMOTE_CACHE_REDIS_RETRY_AFTER"] = (
            "never" if math.isinf(retry_after) else str(retry_after)
        )
        if cluster:
            os.environ["REMOTE_CACHE_REDIS_CLUSTER"] = "1"
        RedisRemoteCacheBackend.client_factory = client_factory
        yield
    finally:
        reset_process_state(counters=False)  # the block's clients and breakers go with it
        RedisRemoteCacheBackend.client_factory = saved_factory
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class FakeRedisFixture:
    """Redis caches talk to ``server``, a fresh fakeredis server."""

    def __init__(self) -> None:
        import fakeredis

        self.server = new_fake_server()
        self.client = fakeredis.FakeRedis(server=self.server)
        self.schedule: Schedule | None = None
        """The ``Schedule`` applied (``apply``); its ``fired`` logs every fault that fired."""
        self._clients: dict[float, Any] = {}

    def make_client(self, settings: Any = None) -> Any:
        """The client of the fake server a Redis backend gets: one per deadline, shared by
        every backend, as the Redis backend shares one per server, so its connections outlive
        a schedule applied later. Its data commands meet the faults of the schedule applied,
        if any, as replies of a real server."""
        deadline = settings.timeout if settings is not None else redis_deadline()
        client = self._clients.get(deadline)
        if client is None:
            client = faulting_client(self.server, lambda: self.schedule, deadline=deadline)
            self._clients[deadline] = client
        return client

    def close_clients(self) -> None:
        """Close the caches' connections: their next calls connect anew, as a new process's
        would (a fault with ``connections="new"`` meets them)."""
        for client in self._clients.values():
            client.connection_pool.disconnect()

    def apply(self, schedule: Schedule) -> Schedule:
        """Apply ``schedule`` to every Redis cache's commands (its counts and clock start
        now); ``ValueError`` for a fault fakeredis cannot simulate. Returns it."""
        if not isinstance(schedule, Schedule):
            raise TypeError(f"Expected a Schedule but got {schedule!r}")
        schedule.check_layer("fakeredis")
        schedule.start()
        self.schedule = schedule
        return schedule

    def restore(self) -> None:
        """End the schedule's faults and ``disconnect()``."""
        self.schedule = None
        self.reconnect()

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
    # The deadline the environment gives a Redis cache (1 s when unset), not the real-server
    # fixtures' short one: fakeredis has no network, so only simulated faults meet it.
    with redis_environment(None, timeout=redis_deadline(), client_factory=handle.make_client):
        yield handle
