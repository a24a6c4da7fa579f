"""The Redis backend. The only module that imports redis-py, and only when used."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from remote_cache import _fork
from remote_cache._backend import RemoteCacheBackend
from remote_cache._breaker import CircuitBreaker, breaker_for
from remote_cache._config import (
    UNSET,
    RedisSettings,
    _Unset,
    resolve_redis_settings,
    url_secrets,
)
from remote_cache.exceptions import (
    BackendCommandError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["RedisRemoteCacheBackend", "translate_redis_error"]

log = logging.getLogger("remote_cache")

INSTALL_HINT = "pip install 'remote-cache[redis]'"


def import_redis() -> ModuleType:
    """Import redis-py, or raise ``MissingDependencyError`` saying what to install."""
    try:
        import redis
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Redis backend needs redis-py, which is not installed: {INSTALL_HINT}"
        ) from exc
    return redis


def _secrets(settings: RedisSettings) -> list[str]:
    """Every form of the password in the settings' URL, so that messages can be scrubbed of it."""
    return url_secrets(settings.url) if settings.url else []


def translate_redis_error(
    exc: BaseException,
    *,
    backend: str,
    operation: str,
    key: str | None = None,
    secrets: list[str] | tuple[str, ...] = (),
) -> BackendError | None:
    """Map a redis-py (or socket) exception to our most specific ``BackendError``.

    Transport failures (refused, reset, timeout, TLS, authentication, cluster down) become
    ``BackendUnavailableError`` (``BackendTimeoutError`` for timeouts); errors the server
    answered a command with (OOM, READONLY, WRONGTYPE, NOPERM) become
    ``BackendCommandError``. Returns None for anything else, which is a bug to re-raise.
    """
    import redis.exceptions as rexc

    message = f"{backend}: {type(exc).__name__}: {exc}"
    for secret in secrets:
        message = message.replace(secret, "***")
    error_class: type[BackendError]
    if isinstance(exc, (rexc.TimeoutError, TimeoutError)):
        error_class = BackendTimeoutError
    elif isinstance(exc, rexc.AuthenticationWrongNumberOfArgsError):
        error_class = BackendUnavailableError
    elif isinstance(
        exc,
        (
            rexc.ConnectionError,
            rexc.ClusterError,
            rexc.RedisClusterException,
            rexc.InvalidResponse,
            OSError,
        ),
    ):
        # ClusterDownError is also a ResponseError, so the cluster test comes first.
        error_class = BackendUnavailableError
    elif isinstance(exc, rexc.RedisError):
        error_class = BackendCommandError
    else:
        return None
    return error_class(message, backend=backend, operation=operation, key=key)


_clients_lock = threading.Lock()  # guards the two dicts below; never held while connecting
_clients: dict[tuple[object, ...], Any] = {}
_builds: dict[tuple[object, ...], _Build] = {}


class _Build:
    """Serializes building one identity's client; how many attempts ended, how the last did."""

    __slots__ = ("attempts", "failure", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts = 0
        self.failure: str | None = None


def _build_client(settings: RedisSettings) -> Any:
    """Build a redis-py client: short timeouts, no retries (a cache must not stall a build)."""
    redis = import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.cluster:
        from redis.cluster import RedisCluster

        if settings.url:
            return RedisCluster.from_url(settings.url, **options)
        return RedisCluster(host=settings.host, port=settings.port, **options)
    if settings.url:
        return redis.Redis.from_url(settings.url, **options)
    return redis.Redis(host=settings.host, port=settings.port, **options)


def _identity(settings: RedisSettings) -> tuple[object, ...]:
    """What shares a client and a breaker: the server (or cluster) and the timeout."""
    return (*settings.server_identity(), settings.timeout)


def _shared_client(settings: RedisSettings, identity: tuple[object, ...] | None = None) -> Any:
    """One client (and so one connection pool) per server and timeout, per process.

    Building a cluster client connects. Only threads that want the same identity wait for
    that, and for at most the timeout; when the connect they waited for failed, they fail
    the same way at once instead of each paying another timeout.
    """
    identity = identity or _identity(settings)
    client = _clients.get(identity)
    if client is not None:
        return client
    with _clients_lock:
        build = _builds.get(identity)
        if build is None:
            build = _builds[identity] = _Build()
    attempts = build.attempts
    if not build.lock.acquire(timeout=settings.timeout):
        raise TimeoutError(f"another thread has been connecting for {settings.timeout} s")
    try:
        client = _clients.get(identity)
        if client is not None:
            return client
        if build.attempts != attempts and build.failure is not None:
            raise ConnectionError(f"connecting failed: {build.failure}")
        build.failure = None
        try:
            client = _build_client(settings)
        except Exception as exc:
            build.failure = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            build.attempts += 1  # counted when over, so that threads waiting for it can tell
        with _clients_lock:
            _clients[identity] = client
        return client
    finally:
        build.lock.release()


def close_shared_clients() -> None:
    """Close and forget every shared client (for tests; a forked child needs not call it)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
        _builds.clear()
    for client in clients:
        try:
            client.close()
        except Exception:
            log.debug("closing a Redis client failed", exc_info=True)


def _disown(client: Any) -> None:
    """Make a client inherited from the parent safe to collect in a forked child.

    Closing a redis-py cluster client takes its locks, which a thread of the parent may have
    held at the fork; that thread does not exist here, so they get new ones. Standalone
    clients need nothing: redis-py's pools see the new process id and let go of the
    parent's sockets without shutting them down.
    """
    manager = getattr(client, "nodes_manager", None)
    if manager is None or not hasattr(client, "_lock"):
        return
    lock = threading.RLock()
    client._lock = lock
    if hasattr(manager, "_lock"):
        manager._lock = lock
    if hasattr(manager, "_initialization_lock"):
        manager._initialization_lock = threading.RLock()


def _after_fork_in_child() -> None:
    """A forked child builds clients of its own: the parent's connections are not its to use."""
    global _clients_lock  # noqa: PLW0603 - the parent's may be held by a thread not here
    _clients_lock = threading.Lock()
    for client in _clients.values():
        with contextlib.suppress(Exception):  # a redis-py without these attributes: nothing to do
            _disown(client)
    _clients.clear()
    _builds.clear()  # a thread of the parent may have been connecting: not here


_fork.after_fork_in_child(_after_fork_in_child)


def _wire_key(key: str) -> bytes:
    """The key as Redis stores it: UTF-8, with lone surrogates kept rather than refused."""
    return key.encode("utf-8", "surrogatepass")


def _is_in_process(client: object) -> bool:
    """True for a client whose data lives in this process (fakeredis)."""
    return client is not None and type(client).__module__.split(".")[0] == "fakeredis"


class RedisRemoteCacheBackend(RemoteCacheBackend[bytes]):
    """Bytes in Redis (standalone, Cluster, TLS, ACL auth, unix sockets).

    Settings come from the arguments, else ``REMOTE_CACHE_REDIS_*``, else
    ``TORCHINDUCTOR_REDIS_*`` (see ``resolve_redis_settings``). Connect and reply timeouts
    are 1 s by default and redis-py's retries are off. Every failure is raised as a
    ``BackendError``: transport failures open a circuit breaker, and while it is open calls
    raise ``CircuitOpenError`` without touching the network (nor connecting, nor looking a
    cluster's slots up) until ``retry_after`` seconds have passed; then one probe goes
    through. A probe interrupted by a ``BaseException`` (``KeyboardInterrupt``, a timeout of
    gevent or pytest) counts as neither success nor failure: the next call probes again.
    A probe that never reports (interrupted before it could, or its thread died) is lost
    after a lease of twice the timeout plus 1 s: then the next call probes.

    Breaker scope: one breaker per server (same URL, or host and port; same cluster) and
    timeout, per process, shared by every backend with those settings; so a new backend per
    compile against a dead server pays no timeout, and a backend with a short timeout that
    times out does not make one with a longer timeout skip a server that would answer it.
    On a cluster, single-key calls use one breaker per master and timeout. Backends given a
    ``client`` get a breaker of their own unless ``breaker`` is passed.

    Clients are shared the same way (one per server and timeout). A forked child builds
    its own on first use: the parent's connections are never used from the child.

    ``client`` injects a ready redis-py compatible client (fakeredis, say); setting the
    class attribute ``client_factory`` (called with the resolved settings) does it for every
    backend built afterwards. Raises ``MissingDependencyError`` when redis-py is needed and
    missing, ``ConfigurationError`` for a bad setting.
    """

    client_factory: ClassVar[Callable[[RedisSettings], Any] | None] = None

    def __init__(
        self,
        cache_id: str | None = None,
        *,
        url: str | _Unset | None = UNSET,
        host: str | _Unset = UNSET,
        port: int | _Unset = UNSET,
        expire: int | _Unset | None = UNSET,
        cluster: bool | _Unset = UNSET,
        timeout: float | _Unset = UNSET,
        retry_after: float | _Unset | None = UNSET,
        client: Any = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        super().__init__()
        self.cache_id = cache_id
        self.settings = resolve_redis_settings(
            url=url,
            host=host,
            port=port,
            expire=expire,
            cluster=cluster,
            timeout=timeout,
            retry_after=retry_after,
        )
        if client is not None and url is UNSET and host is UNSET and port is UNSET:
            self._description = f"<{type(client).__name__} client>"
        else:
            self._description = self.settings.describe()
        self._secrets = _secrets(self.settings)
        self._expire = self.settings.expire
        self._retry_after = self.settings.retry_after
        # A call is a connect and a reply, each bounded by the timeout; a probe slower than
        # its lease (a cluster connecting to several nodes) only lets a second probe overlap.
        self._probe_lease = 2 * self.settings.timeout + 1
        factory = type(self).client_factory
        self._cluster = self.settings.cluster
        self._identity = _identity(self.settings)
        self._shared = client is None and factory is None
        self._generation = _fork.generation
        # On a cluster, single-key calls use one breaker per master (a dead master costs
        # only its own slots); batches span masters and use the cluster-wide one.
        self._node_breakers: dict[str, CircuitBreaker] = {}
        self._breaker_scope: tuple[object, ...] | None = None
        if client is not None:
            self._client = client
            self._breaker = breaker or CircuitBreaker()
        elif factory is not None:
            self._client = factory(self.settings)
            self._breaker_scope = ("factory", factory, *self._identity)
            self._breaker = breaker or breaker_for(self._breaker_scope)
        else:
            import_redis()
            self._client = None  # built at first use: a cluster client connects when built
            self._breaker_scope = self._identity
            self._breaker = breaker or breaker_for(self._breaker_scope)
        # A real server is seen by every process; fakeredis lives in this process's memory.
        self.shared_between_processes = not _is_in_process(self._client)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._description}, timeout={self.settings.timeout}, "
            f"retry_after={self._retry_after}, expire={self._expire})"
        )

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker of this backend's server."""
        return self._breaker

    @property
    def description(self) -> str:
        """Where this backend keeps its data, without any password."""
        return self._description

    def client(self) -> Any:
        """The redis-py client (built on first use, shared per server and timeout)."""
        self._forget_if_forked()
        if self._client is None:
            self._client = _shared_client(self.settings, self._identity)
        return self._client

    def _forget_if_forked(self) -> None:
        """In a forked child, drop the parent's shared client (never one passed in)."""
        if self._generation != _fork.generation:
            self._generation = _fork.generation
            if self._shared:
                self._client = None

    def _built_client(self) -> Any:
        """The client if one was built (by any backend on this server), else None: no I/O."""
        self._forget_if_forked()
        client = self._client
        if client is None:
            client = self._client = _clients.get(self._identity)
        return client

    def _key_breaker(self, name: bytes) -> CircuitBreaker:
        """The breaker of the cluster master that serves ``name``.

        The cluster-wide breaker while no client is built: the breaker is asked before
        anything connects, so a call it skips returns at once.
        """
        client = self._built_client()
        if client is None:
            return self._breaker
        try:
            node = client.get_node_from_key(name).name
        except Exception:  # noqa: BLE001 - no topology yet: the cluster-wide breaker decides
            return self._breaker
        if self._breaker_scope is not None:
            return breaker_for((*self._breaker_scope, node))
        breaker = self._node_breakers.get(node)
        if breaker is None:
            breaker = self._node_breakers.setdefault(node, CircuitBreaker())
        return breaker

    def _call(
        self,
        operation: str,
        key: str | None,
        command: Callable[[Any], Any],
        breaker: CircuitBreaker | None = None,
    ) -> Any:
        """Run ``command(client)`` behind the breaker, translating failures."""
        breaker = breaker or self._breaker
        # An interrupt landing between `admit` and `try` loses the probe: its lease frees it.
        probe = breaker.admit(self._retry_after, self._probe_lease)
        if probe is None:
            raise CircuitOpenError(
                f"{self._description}: skipped, the server failed recently",
                backend=self._description,
                operation=operation,
                key=key,
            )
        try:
            client = self._client
            if client is None or self._generation != _fork.generation:
                client = self.client()
            result = command(client)
        except Exception as exc:
            error = translate_redis_error(
                exc,
                backend=self._description,
                operation=operation,
                key=key,
                secrets=self._secrets,
            )
            if error is None:
                breaker.record_success()  # the server answered; the bug is elsewhere
                raise
            if isinstance(error, BackendUnavailableError):
                if breaker.record_failure(probe):
                    log.debug("%s: circuit breaker opened", self._description)
            else:
                breaker.record_success()
            raise error from exc
        except BaseException:
            # An interrupt (KeyboardInterrupt, a gevent or pytest timeout) says nothing about
            # the server: if this call was the probe, the next one probes instead.
            breaker.release_probe(probe)
            raise
        if breaker.is_open and breaker.record_success():
            log.debug("%s: circuit breaker closed", self._description)
        return result

    def _get(self, key: str) -> bytes | None:
        name = _wire_key(key)
        breaker = self._key_breaker(name) if self._cluster else None
        value: bytes | None = self._call("get", key, lambda client: client.get(name), breaker)
        return value

    def _put(self, key: str, data: bytes) -> None:
        name, expire = _wire_key(key), self._expire
        breaker = self._key_breaker(name) if self._cluster else None
        self._call("put", key, lambda client: client.set(name, data, ex=expire), breaker)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        names = [_wire_key(key) for key in keys]
        if self._cluster:
            values = self._call("get_many", None, lambda client: _cluster_get_many(client, names))
        else:
            values = self._call("get_many", None, lambda client: client.mget(names))
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        items = {_wire_key(key): data for key, data in mapping.items()}
        expire = self._expire

        def write(client: Any) -> None:
            if self._cluster:
                _cluster_set_many(client, items, expire)
            elif expire is None:
                client.mset(items)  # one command
            else:
                _pipelined_set(client, items, expire)

        self._call("put_many", None, write)


def _pipelined_set(client: Any, items: Mapping[bytes, bytes], expire: int | None) -> None:
    """``SET key value [EX expire]`` for every item, in one pipeline (one round trip each)."""
    pipeline = client.pipeline(transaction=False)
    for name, data in items.items():
        pipeline.set(name, data, ex=expire)
    pipeline.execute()


def _set_command(name: bytes, data: bytes, expire: int | None) -> tuple[Any, ...]:
    return ("SET", name, data) if expire is None else ("SET", name, data, "EX", expire)


class _Redirected(Exception):
    """A slot moved while a batch was under way (MOVED or ASK)."""


def _cluster_round_trip(client: Any, commands: Mapping[bytes, tuple[Any, ...]]) -> list[Any]:
    """Send each key's command to the master of its slot, every master at once; the replies.

    One round trip in all: the commands for all masters are written before any reply is
    read. redis-py's cluster pipeline does the same with several times the Python work per
    key. Raises ``_Redirected`` when a slot moved (the caller then goes through redis-py,
    which follows redirections and refreshes its slot map), the first other error reply as
    redis-py raises it, and transport errors as they come.
    """
    from redis.exceptions import AskError, ResponseError

    by_node: dict[str, tuple[Any, list[bytes]]] = {}
    for name in commands:
        node = client.get_node_from_key(name)
        by_node.setdefault(node.name, (node, []))[1].append(name)
    sent: list[tuple[Any, Any, list[bytes]]] = []
    replies: dict[bytes, Any] = {}
    errors: list[ResponseError] = []
    try:
        for node, names in by_node.values():
            pool = client.get_redis_connection(node).connection_pool
            connection = pool.get_connection()
            sent.append((pool, connection, names))
            connection.send_packed_command(
                connection.pack_commands([commands[name] for name in names])
            )
        for _, connection, names in sent:
            for name in names:
                try:
                    replies[name] = connection.read_response()
                except ResponseError as exc:
                    errors.append(exc)
    except BaseException:
        for _, connection, _ in sent:
            connection.disconnect()  # replies may still be on the way: never reuse it
        raise
    finally:
        for pool, connection, _ in sent:
            pool.release(connection)
    if errors:
        # redis-py parses MOVED and ASK replies into AskError (MovedError subclasses it), with
        # only "slot host:port" as the message: the class tells, never the text.
        if any(isinstance(exc, AskError) for exc in errors):
            raise _Redirected
        raise errors[0]
    return [replies[name] for name in commands]


def _cluster_set_many(client: Any, items: Mapping[bytes, bytes], expire: int | None) -> None:
    """SET every item on a cluster in one round trip (redis-py's pipeline if a slot moved)."""
    commands = {name: _set_command(name, data, expire) for name, data in items.items()}
    try:
        _cluster_round_trip(client, commands)
    except _Redirected:
        _pipelined_set(client, items, expire)


def _cluster_get_many(client: Any, names: list[bytes]) -> list[bytes | None]:
    """GET every key on a cluster in one round trip (redis-py's MGETs if a slot moved)."""
    try:
        return _cluster_round_trip(client, {name: ("GET", name) for name in names})
    except _Redirected:
        return client.mget_nonatomic(names)  # type: ignore[no-any-return]
