"""The Redis backend, ``RedisRemoteCacheBackend``: one call, behind its breaker, by its deadline."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from remote_cache import _process
from remote_cache._backend import RemoteCacheBackend
from remote_cache._breaker import CircuitBreaker, breaker_for
from remote_cache._redis.clients import _clients, _identity, _shared_client
from remote_cache._redis.cluster import _cluster_get_many, _cluster_set_many, _pipelined_set
from remote_cache._redis.deadline import _call_deadline, _deadline_passed
from remote_cache._redis.errors import _protocol_error, import_redis, translate_redis_error
from remote_cache._redis.replies import _ok_reply, _value_reply, _values_reply
from remote_cache._settings import (
    UNSET,
    RedisSettings,
    Unset,
    resolve_redis_settings,
    url_secrets,
)
from remote_cache.exceptions import (
    BackendError,
    BackendTimeoutError,
    CircuitOpenError,
)

__all__ = ["RedisRemoteCacheBackend"]

log = logging.getLogger("remote_cache")


def _secrets(settings: RedisSettings) -> list[str]:
    """Every form of the password in the settings' URL, so that messages can be scrubbed of it."""
    return url_secrets(settings.url) if settings.url else []


def _wire_key(key: str) -> bytes:
    """The key as Redis stores it: UTF-8, with lone surrogates kept rather than refused."""
    return key.encode("utf-8", "surrogatepass")


def _is_in_process(client: object) -> bool:
    """True for a client whose data lives in this process (fakeredis)."""
    return client is not None and type(client).__module__.split(".")[0] == "fakeredis"


class RedisRemoteCacheBackend(RemoteCacheBackend[bytes]):
    """Bytes in Redis (standalone, Cluster, TLS, ACL auth, unix sockets).

    Settings come from the arguments, else ``REMOTE_CACHE_REDIS_*``, else
    ``TORCHINDUCTOR_REDIS_*`` (see ``resolve_redis_settings``). The timeout (1 s by default)
    bounds each call as a whole: connect, TLS and Redis handshakes, command and reply end by
    one deadline, however the server paces its bytes; redis-py's retries are off. Not
    bounded by it: resolving a host name, and clients from ``client`` or ``client_factory``
    (bounded as far as their own connections allow). Every failure is raised as a
    ``BackendError``; a server that does not speak Redis (a reply of the wrong shape, or
    one redis-py fails on with any exception) is a protocol error, raised as
    ``BackendUnavailableError``: a transport failure.
    The deadline covers the whole reply: one not in full by then is a timeout. A value
    the server refuses mid-send (over its ``proto-max-bulk-len``: it replies an error and
    resets the connection) is a ``BackendCommandError``; every connection of this
    process's pool in use (``max_connections``) until the deadline a plain
    ``BackendError``; neither opens the breaker.
    Transport failures open a circuit breaker, and while it is open calls
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
        url: str | Unset | None = UNSET,
        host: str | Unset = UNSET,
        port: int | Unset = UNSET,
        expire: int | Unset | None = UNSET,
        cluster: bool | Unset = UNSET,
        timeout: float | Unset = UNSET,
        retry_after: float | Unset | None = UNSET,
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
        # A call ends by its deadline (the timeout) but for host name lookups; a probe slower
        # than its lease only lets a second probe overlap.
        self._probe_lease = 2 * self.settings.timeout + 1
        factory = type(self).client_factory
        self._cluster = self.settings.cluster
        self._identity = _identity(self.settings)
        self._shared = client is None and factory is None
        self._generation = _process.generation
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
        if self._generation != _process.generation:
            self._generation = _process.generation
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
        """Run ``command(client)`` behind the breaker, translating failures.

        The call, reply included, ends by its deadline: a reply that has not arrived in full
        by then is a timeout, even when it did arrive before the next read would have
        waited (clients of our own; ``client=`` and ``client_factory`` keep their timeouts).
        """
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
        # A call nested in another of this thread (a signal handler, a ``__del__``) gives
        # the outer call its deadline back when it ends.
        outer_deadline = getattr(_call_deadline, "at", None)
        outer_waited = getattr(_call_deadline, "waited", False)
        _call_deadline.waited = False
        try:
            client = self._client
            stale = client is None or self._generation != _process.generation
            if stale and not self._cluster:
                # Built before the deadline is set: building touches no network, and the
                # first call of a process (imports, a loaded machine) is not the server's time.
                client = self.client()
            # The whole call (connect, handshake, command, reply) ends by this deadline: a
            # cluster client too, which connects while it is built.
            deadline = _call_deadline.at = time.monotonic() + self.settings.timeout
            if stale and self._cluster:
                client = self.client()
            result = command(client)
            if self._shared and time.monotonic() > deadline:
                raise _deadline_passed()  # the last read began in time, the reply ended late
        except Exception as exc:
            error = translate_redis_error(
                exc,
                backend=self._description,
                operation=operation,
                key=key,
                secrets=self._secrets,
            ) or _protocol_error(
                exc,
                backend=self._description,
                operation=operation,
                key=key,
                secrets=self._secrets,
            )
            if isinstance(error, BackendTimeoutError) and _call_deadline.waited:
                # Part of the deadline went waiting for one of this process's pooled
                # connections: the server was not given the whole timeout.
                error = BackendError(
                    f"{error} (after waiting for a pooled connection of this process)",
                    backend=self._description,
                    operation=operation,
                    key=key,
                )
            self._report_failure(breaker, probe, error)
            raise error from exc
        except BaseException as exc:
            # An interrupt (KeyboardInterrupt, a gevent or pytest timeout) says nothing about
            # the server: if this call was the probe, the next one probes instead.
            breaker.release_probe(probe)
            # A connect it cut short leaves its socket in redis-py's frames, which the
            # traceback keeps alive (a notebook keeps the last one): let them go.
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            _call_deadline.at = outer_deadline
            _call_deadline.waited = outer_waited
        if breaker.is_open and breaker.record_success():
            log.debug("%s: circuit breaker closed", self._description)
        return result

    def _report_failure(self, breaker: CircuitBreaker, probe: int, error: BackendError) -> None:
        """Tell the breaker what a failed call says about the server (``record_error``):
        a transport failure opens it, an error reply closes it, a limit of this process's own
        (every pooled connection in use) lets the next call probe."""
        if breaker.record_error(error, probe):
            log.debug("%s: circuit breaker opened", self._description)

    def _get(self, key: str) -> bytes | None:
        name = _wire_key(key)
        breaker = self._key_breaker(name) if self._cluster else None
        value: bytes | None = self._call(
            "get", key, lambda client: _value_reply(client.get(name)), breaker
        )
        return value

    def _put(self, key: str, data: bytes) -> None:
        name, expire = _wire_key(key), self._expire
        breaker = self._key_breaker(name) if self._cluster else None
        self._call("put", key, lambda client: _ok_reply(client.set(name, data, ex=expire)), breaker)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        names = [_wire_key(key) for key in keys]
        if self._cluster:
            values = self._call(
                "get_many",
                None,
                lambda client: _values_reply(_cluster_get_many(client, names), names),
            )
        else:
            values = self._call(
                "get_many", None, lambda client: _values_reply(client.mget(names), names)
            )
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        items = {_wire_key(key): data for key, data in mapping.items()}
        expire = self._expire

        def write(client: Any) -> None:
            if self._cluster:
                _cluster_set_many(client, items, expire)
            elif expire is None:
                _ok_reply(client.mset(items))  # one command
            else:
                _pipelined_set(client, items, expire)

        self._call("put_many", None, write)


@_process.on_reset
def forget_client_factory() -> None:
    """Build clients from the settings again (``client_factory`` of the class back to None)."""
    RedisRemoteCacheBackend.client_factory = None
