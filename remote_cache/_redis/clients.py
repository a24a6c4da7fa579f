"""Building redis-py clients, and sharing one per server and timeout in a process.

``build_client`` makes a client whose connections keep the call's deadline; the registry
(``_shared_client``, ``close_shared_clients``) shares it, builds it once however many threads
ask, and forgets the parent's clients in a forked child.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from remote_cache import _process
from remote_cache._guard import Guard, ReenteredError
from remote_cache._redis.connections import _deadline_pool_class
from remote_cache._redis.deadline import _time_left
from remote_cache._redis.errors import import_redis
from remote_cache._redis.internals import (
    no_cluster_retries,
    quiet_handshake_options,
    renew_cluster_locks,
)
from remote_cache._settings import RedisSettings

__all__ = ["build_client", "close_shared_clients"]

log = logging.getLogger("remote_cache")


def _handshake_options(*, tls: bool = False) -> dict[str, Any]:
    """Options that spare the handshake's optional round trips, for the installed redis-py.

    ``CLIENT SETINFO`` (two round trips) and ``CLIENT MAINT_NOTIFICATIONS`` (redis-py 7 and
    later, in RESP3) are off (``quiet_handshake_options``). Without TLS, RESP2 spares the
    ``HELLO`` round trip (the replies we read are the same in RESP3). With TLS, redis-py 8
    finds a new connection unready when nothing was read from it since the TLS handshake
    (the server's session tickets wait in the socket), so the protocol stays redis-py's
    choice and ``HELLO`` reads them. A URL's own ``protocol`` wins over both.
    """
    options: dict[str, Any] = {} if tls else {"protocol": 2}
    return {**options, **quiet_handshake_options()}


_clients_lock = Guard()  # guards the two dicts below; never held while connecting
_clients: dict[tuple[object, ...], Any] = {}
_builds: dict[tuple[object, ...], _Build] = {}


class _Build:
    """Serializes building one identity's client; how many attempts ended, how the last did."""

    __slots__ = ("attempts", "builder", "failure", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts = 0
        self.failure: str | None = None
        self.builder: int | None = None  # the thread building now, while it holds the lock


def build_client(settings: RedisSettings) -> Any:
    """Build a redis-py client: short timeouts, no retries (a cache must not stall a build).

    Its connections keep the deadline of the backend call under way (``_DeadlineSocket``),
    whatever the URL's scheme, on every node of a cluster; the handshake sends nothing it
    can spare (``_handshake_options``).
    """
    redis = import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pool_class = _deadline_pool_class()
    options: dict[str, Any] = {
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.timeout,
        "retry": Retry(NoBackoff(), 0),
        **_handshake_options(tls=(settings.url or "").lower().startswith("rediss:")),
    }
    if settings.cluster:
        from redis.cluster import RedisCluster

        # Through a URL, so that every node's pool is ``pool_class`` (redis-py builds node
        # pools from ``connection_pool_class`` only for clients made from a URL).
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        url = settings.url or f"redis://{host}:{settings.port}"
        cluster = RedisCluster.from_url(url, connection_pool_class=pool_class, **options)
        no_cluster_retries(cluster)
        return cluster
    if settings.url:
        pool = pool_class.from_url(settings.url, **options)  # type: ignore[attr-defined]
    else:
        pool = pool_class(host=settings.host, port=settings.port, **options)
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # close() closes the pool (not on redis-py 5.0)
    return client


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
    if build.builder == threading.get_ident():
        # A signal handler (or a __del__) of the thread that is building it: waiting would
        # wait for the frame it interrupted.
        raise ReenteredError("called while this thread builds the client, from a signal handler?")
    attempts = build.attempts
    left = _time_left()
    wait = settings.timeout if left is None else max(0.0, min(settings.timeout, left))
    if not build.lock.acquire(timeout=wait):
        raise TimeoutError(f"another thread has been connecting for {wait:.3g} s")
    build.builder = threading.get_ident()
    try:
        client = _clients.get(identity)
        if client is not None:
            return client
        if build.attempts != attempts and build.failure is not None:
            raise ConnectionError(f"connecting failed: {build.failure}")
        build.failure = None
        try:
            client = build_client(settings)
        except Exception as exc:
            build.failure = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            build.attempts += 1  # counted when over, so that threads waiting for it can tell
        with _clients_lock:
            _clients[identity] = client
        return client
    finally:
        build.builder = None
        build.lock.release()


@_process.on_reset
def close_shared_clients() -> None:
    """Close and forget every shared client (for tests; a forked child needs not call it)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
        _builds.clear()
    for client in clients:
        try:
            client.close()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:  # redis-py 5.0's close() leaves the pool's connections open
                pool.disconnect()
        except Exception:
            log.debug("closing a Redis client failed", exc_info=True)


def _disown(client: Any) -> None:
    """Make a client inherited from the parent safe to collect in a forked child.

    Closing a redis-py cluster client takes its locks, which a thread of the parent may have
    held at the fork; that thread does not exist here, so they get new ones. Standalone
    clients need nothing: redis-py's pools see the new process id and let go of the
    parent's sockets without shutting them down.
    """
    renew_cluster_locks(client, threading.RLock)


def _after_fork_in_child() -> None:
    """A forked child builds clients of its own: the parent's connections are not its to use."""
    global _clients_lock  # noqa: PLW0603 - the parent's may be held by a thread not here
    _clients_lock = Guard()
    for client in _clients.values():
        with contextlib.suppress(Exception):  # a redis-py without these attributes: nothing to do
            _disown(client)
    _clients.clear()
    _builds.clear()  # a thread of the parent may have been connecting: not here


_process.at_fork(after_in_child=_after_fork_in_child)
