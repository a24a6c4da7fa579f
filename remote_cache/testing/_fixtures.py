"""Framework-free set-ups behind the pytest fixtures, and their handle types."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import types
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from remote_cache import RedisRemoteCacheBackend
from remote_cache import _controller as controller_module
from remote_cache._breaker import reset_breakers
from remote_cache._redis import close_shared_clients
from remote_cache.exceptions import MissingDependencyError
from remote_cache.testing._backends import (
    BackendCall,
    FaultInjectingBackend,
    FaultPlan,
    InMemoryBackend,
    RecordingBackend,
)
from remote_cache.testing._fakeredis import new_fake_server
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

        self.server = new_fake_server()
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


_COMMAND_TABLES: dict[str, dict[str, tuple[int, int, int, bool]]] = {}
"""Each server's key positions per command (``COMMAND``), fetched once per process."""


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    return str(value).encode()


class KeyNamespace:
    """Put every key of every redis-py command under ``prefix``, and take it off replies.

    The isolation of ``remote_cache_redis`` on a server the plugin does not own: each test
    gets its own prefix, so runs, xdist workers and tests sharing one server never see each
    other's keys, and ``cleanup()`` deletes exactly what the test wrote. Key positions come
    from the server's ``COMMAND`` table (``COMMAND GETKEYS`` for commands with movable keys);
    ``KEYS``, ``SCAN``, ``RANDOMKEY``, ``DBSIZE``, ``FLUSHDB`` and ``FLUSHALL`` act on the
    prefix only. Scripts see prefixed key names.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        """A plain client of the server: key positions, clean-up."""
        self.prefix = prefix.encode()

    def _positions(self, name: str) -> tuple[int, int, int, bool]:
        where = self.client.connection_pool.connection_kwargs
        identity = f"{where.get('host')}:{where.get('port')}:{where.get('path')}"
        table = _COMMAND_TABLES.get(identity)
        if table is None:
            table = {}
            for command, info in self.client.command().items():
                table[command.upper()] = (
                    info["first_key_pos"],
                    info["last_key_pos"],
                    info["step_count"],
                    "movablekeys" in info["flags"],
                )
            _COMMAND_TABLES[identity] = table
        return table.get(name, (0, 0, 0, False))

    def _key_indexes(self, args: tuple[Any, ...]) -> list[int]:
        words = _as_bytes(args[0]).decode().upper().split()
        name, extra = words[0], len(words) - 1
        first, last, step, movable = self._positions(name)
        if movable:
            keys = self.client.execute_command("COMMAND GETKEYS", *words, *args[1:])
            wanted = [_as_bytes(key) for key in keys]
            indexes = []
            for index in range(1, len(args)):
                if wanted and _as_bytes(args[index]) == wanted[0]:
                    indexes.append(index)
                    wanted.pop(0)
            return indexes
        if first <= 0:
            return []
        count = len(args) + extra  # positions count the words of the command name
        last = count + last if last < 0 else last
        positions = range(first - extra, last - extra + 1, max(step, 1))
        return [index for index in positions if 0 < index < len(args)]

    def key(self, key: Any) -> bytes:
        """``key`` under the prefix."""
        return self.prefix + _as_bytes(key)

    def strip(self, key: Any) -> Any:
        """``key`` without the prefix (as str if it came as str)."""
        raw = _as_bytes(key)
        if not raw.startswith(self.prefix):
            return key
        stripped = raw[len(self.prefix) :]
        return stripped.decode() if isinstance(key, str) else stripped

    def pattern(self, pattern: Any) -> bytes:
        """A glob ``pattern`` under the prefix (the prefix's own glob characters escaped)."""
        special = b"*?[]\\"
        escaped = b"".join(b"\\" * (c in special) + bytes([c]) for c in self.prefix)
        return escaped + _as_bytes(pattern)

    def own_keys(self) -> list[bytes]:
        """Every key under the prefix (SCAN, never KEYS)."""
        return list(self.client.scan_iter(match=self.pattern(b"*"), count=1000))

    def cleanup(self) -> int:
        """Delete every key under the prefix; return how many."""
        keys = self.own_keys()
        for start in range(0, len(keys), 500):
            self.client.delete(*keys[start : start + 500])
        return len(keys)

    def rewrite(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The command ``args`` with their keys under the prefix."""
        name = _as_bytes(args[0]).decode().upper()
        if name in ("KEYS",) and len(args) > 1:
            return (args[0], self.pattern(args[1]), *args[2:])
        if name == "SCAN":
            rest = list(args[1:])
            upper = [str(a).upper() if isinstance(a, str) else a for a in rest]
            if "MATCH" in upper:
                at = upper.index("MATCH") + 1
                rest[at] = self.pattern(rest[at])
            else:
                rest += ["MATCH", self.pattern(b"*")]
            return (args[0], *rest)
        indexes = self._key_indexes(args)
        if not indexes:
            return args
        changed = list(args)
        for index in indexes:
            changed[index] = self.key(changed[index])
        return tuple(changed)

    def execute(self, execute: Callable[..., Any], args: tuple[Any, ...], options: Any) -> Any:
        """Run one command through ``execute`` inside the namespace."""
        name = _as_bytes(args[0]).decode().upper()
        if name in ("FLUSHDB", "FLUSHALL"):
            self.cleanup()
            return True
        if name == "DBSIZE":
            return len(self.own_keys())
        options.pop("keys", None)  # client-side caching hints, in the caller's key names
        result = execute(*self.rewrite(args), **options)
        if name == "KEYS":
            return [self.strip(key) for key in result]
        if name == "SCAN":
            cursor, keys = result
            return cursor, [self.strip(key) for key in keys]
        if name == "RANDOMKEY":
            keys = self.own_keys()
            return self.strip(keys[0]) if keys else None
        return result


def _bind(owner: Any, cls: type, name: str) -> Any:
    attribute = inspect.getattr_static(cls, name, None)
    if inspect.isfunction(attribute):
        return types.MethodType(attribute, owner)  # runs with the owner's execute_command
    return None


class NamespacedPipeline:
    """A redis-py pipeline whose commands run inside a ``KeyNamespace``."""

    def __init__(self, pipeline: Any, namespace: KeyNamespace) -> None:
        self._pipeline = pipeline
        self._namespace = namespace

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Queue one command, its keys under the prefix."""
        options.pop("keys", None)
        self._pipeline.execute_command(*self._namespace.rewrite(args), **options)
        return self

    def execute(self, raise_on_error: bool = True) -> Any:
        """Send the queued commands."""
        return self._pipeline.execute(raise_on_error=raise_on_error)

    def __enter__(self) -> NamespacedPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pipeline.reset()

    def __getattr__(self, name: str) -> Any:
        return _bind(self, type(self._pipeline), name) or getattr(self._pipeline, name)


class NamespacedClient:
    """A redis-py client whose every command runs inside a ``KeyNamespace``."""

    def __init__(self, client: Any, namespace: KeyNamespace) -> None:
        self._client = client
        self._namespace = namespace

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command, its keys under the prefix."""
        return self._namespace.execute(self._client.execute_command, args, options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> NamespacedPipeline:
        """A pipeline inside the same namespace."""
        return NamespacedPipeline(self._client.pipeline(transaction, shard_hint), self._namespace)

    def close(self) -> None:
        """Close the underlying client."""
        self._client.close()

    def __getattr__(self, name: str) -> Any:
        return _bind(self, type(self._client), name) or getattr(self._client, name)


class RedisFixture:
    """Redis caches talk to a real server: ``url``; ``client`` reads it directly."""

    def __init__(self, url: str, client: Any, server: RedisServer | None) -> None:
        self.url = url
        self.client = client
        """A redis-py client of the server (on an external server: inside the test's namespace)."""
        self.server: RedisServer | None = server
        """The ``RedisServer`` the plugin started, or None with ``--remote-cache-redis-url``."""


def _require_redis(what: str) -> None:
    """Raise ``MissingDependencyError`` naming the extra when redis-py is missing."""
    try:
        import redis  # noqa: F401 - only to say what is missing
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs redis-py, which is not installed: pip install 'remote-cache[redis]' "
            "(or 'remote-cache[testing]')"
        ) from exc


class ServerBaseline:
    """The configuration and ACL of a server we own, to put back after each test."""

    def __init__(self, server: RedisServer) -> None:
        client = server.client(socket_timeout=5)
        try:
            self.config: dict[str, Any] = client.config_get("*")
            self.acl: list[Any] = client.acl_list()
        finally:
            client.close()

    def _differences(self, client: Any) -> dict[str, Any]:
        current = client.config_get("*")
        return {name: value for name, value in self.config.items() if current.get(name) != value}

    def restore(self, server: RedisServer) -> None:
        """Put the configuration and ACL back (``CONFIG SET``), or restart the server."""
        import redis

        if not server.running:
            server.start()
            return
        try:
            client = server.client(socket_timeout=5)
            try:
                if client.acl_list() == self.acl:
                    for name, value in self._differences(client).items():
                        with contextlib.suppress(redis.ResponseError):  # not settable
                            client.config_set(name, value)
                    if not self._differences(client):
                        return
            finally:
                client.close()
        except redis.RedisError:  # a password, a renamed command: it cannot be put back
            pass
        server.restart()


_baselines: weakref.WeakKeyDictionary[RedisServer, ServerBaseline] = weakref.WeakKeyDictionary()
_session_token = uuid.uuid4().hex[:12]
_test_numbers = itertools.count(1)


def unique_key_prefix() -> str:
    """A key prefix unique to this test, run and xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"remote-cache-test:{_session_token}:{worker}:{next(_test_numbers)}:"


def _empty(client: Any) -> None:
    """Empty a server of ours of what a test may have left: paused clients, keys, functions
    and scripts (``FLUSHALL`` keeps the last two)."""
    import redis

    for command in (
        ("CLIENT", "UNPAUSE"),
        ("FLUSHALL",),
        ("FUNCTION", "FLUSH"),
        ("SCRIPT", "FLUSH"),
    ):
        with contextlib.suppress(redis.ResponseError):  # a server too old for the command
            client.execute_command(*command)


@contextlib.contextmanager
def own_redis(server: RedisServer) -> Iterator[RedisFixture]:
    """Redis caches in the block talk to ``server`` (ours: emptied first, restored after)."""
    _require_redis("remote_cache_redis")
    if not server.running:  # a test killed it
        server.start()
    baseline = _baselines.get(server)
    if baseline is None:
        baseline = _baselines[server] = ServerBaseline(server)
    client = server.client()
    _empty(client)
    try:
        with redis_environment(server.url):
            yield RedisFixture(server.url, client, server)
    finally:
        client.close()
        baseline.restore(server)


@contextlib.contextmanager
def external_redis(url: str, prefix: str | None = None) -> Iterator[RedisFixture]:
    """Redis caches in the block use the server at ``url``, inside a key namespace.

    Every key the caches and ``.client`` use is put under ``prefix`` (unique per call by
    default), so blocks sharing one server never see each other's keys; on exit every key
    under the prefix is deleted. Nothing else on the server is read, written or flushed.
    """
    _require_redis("remote_cache_redis")
    import redis

    from remote_cache._redis import _build_client

    namespace = KeyNamespace(redis.Redis.from_url(url), prefix or unique_key_prefix())
    try:
        with redis_environment(
            url,
            client_factory=lambda settings: NamespacedClient(_build_client(settings), namespace),
        ):
            yield RedisFixture(url, NamespacedClient(namespace.client, namespace), None)
    finally:
        try:
            namespace.cleanup()
        finally:
            namespace.client.close()


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

    def failover(self, index: int) -> int:
        """Kill master ``index`` and wait until its replica serves its slots; the replica's
        index. Needs ``@pytest.mark.remote_cache_cluster(replicas=1)`` (roles are put back
        after the test)."""
        if not self.cluster.replicas:
            raise RuntimeError(
                "failover() needs replicas: mark the test "
                "@pytest.mark.remote_cache_cluster(replicas=1)"
            )
        return self.cluster.failover(index)

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the master serving ``key`` (a backend key, as stored)."""
        return self.cluster.node_for_key(key)
