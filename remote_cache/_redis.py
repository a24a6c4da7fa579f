"""The Redis backend. The only module that imports redis-py, and only when used."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from remote_cache._backend import RemoteCacheBackend
from remote_cache._breaker import CircuitBreaker, breaker_for
from remote_cache._config import UNSET, RedisSettings, _Unset, resolve_redis_settings
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
    """The password in the settings' URL, if any, so that messages can be scrubbed of it."""
    if not settings.url:
        return []
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(settings.url)
    found = [parts.password, unquote(parts.password or "")]
    found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    return [secret for secret in found if secret]


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


_clients_lock = threading.Lock()
_clients: dict[tuple[object, ...], Any] = {}


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


def _shared_client(settings: RedisSettings) -> Any:
    """One client (and so one connection pool) per server and timeout, per process."""
    identity = (*settings.server_identity(), settings.timeout)
    client = _clients.get(identity)
    if client is None:
        with _clients_lock:
            client = _clients.get(identity)
            if client is None:
                client = _clients[identity] = _build_client(settings)
    return client


def close_shared_clients() -> None:
    """Close and forget every shared client (tests and forked children may want this)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.close()
        except Exception:
            log.debug("closing a Redis client failed", exc_info=True)


def _wire_key(key: str) -> bytes:
    """The key as Redis stores it: UTF-8, with lone surrogates kept rather than refused."""
    return key.encode("utf-8", "surrogatepass")


class RedisRemoteCacheBackend(RemoteCacheBackend[bytes]):
    """Bytes in Redis (standalone, Cluster, TLS, ACL auth, unix sockets).

    Settings come from the arguments, else ``REMOTE_CACHE_REDIS_*``, else
    ``TORCHINDUCTOR_REDIS_*`` (see ``resolve_redis_settings``). Connect and reply timeouts
    are 1 s by default and redis-py's retries are off. Every failure is raised as a
    ``BackendError``: transport failures open the server's circuit breaker (shared by every
    backend on that server in the process), and while it is open calls raise
    ``CircuitOpenError`` without touching the network until ``retry_after`` seconds have
    passed; then one probe goes through.

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
        factory = type(self).client_factory
        self._cluster = self.settings.cluster
        # On a cluster, single-key calls use one breaker per master (a dead master costs
        # only its own slots); batches span masters and use the cluster-wide one.
        self._node_breakers: dict[str, CircuitBreaker] = {}
        self._breaker_scope: tuple[object, ...] | None = None
        if client is not None:
            self._client = client
            self._breaker = breaker or CircuitBreaker()
        elif factory is not None:
            self._client = factory(self.settings)
            self._breaker_scope = ("factory", factory, self.settings.server_identity())
            self._breaker = breaker or breaker_for(self._breaker_scope)
        else:
            import_redis()
            self._client = None  # built at first use: a cluster client connects when built
            self._breaker_scope = self.settings.server_identity()
            self._breaker = breaker or breaker_for(self._breaker_scope)

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
        """The redis-py client (built on first use, shared per server)."""
        if self._client is None:
            self._client = _shared_client(self.settings)
        return self._client

    def _key_breaker(self, name: bytes) -> CircuitBreaker:
        """The breaker of the cluster master that serves ``name``."""
        try:
            node = (self._client or self.client()).get_node_from_key(name).name
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
        if not breaker.allow(self._retry_after):
            raise CircuitOpenError(
                f"{self._description}: skipped, the server failed recently",
                backend=self._description,
                operation=operation,
                key=key,
            )
        try:
            result = command(self._client or self.client())
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
                if breaker.record_failure():
                    log.debug("%s: circuit breaker opened", self._description)
            else:
                breaker.record_success()
            raise error from exc
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
    from redis.exceptions import ResponseError

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
        if all(str(exc).startswith(("MOVED", "ASK")) for exc in errors):
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
