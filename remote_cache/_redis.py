"""The Redis backend. The only module that imports redis-py, and only when used."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping, Sized
from typing import TYPE_CHECKING, Any, ClassVar

from remote_cache import _fork
from remote_cache._backend import RemoteCacheBackend
from remote_cache._breaker import CircuitBreaker, breaker_for
from remote_cache._config import (
    UNSET,
    RedisSettings,
    _Unset,
    resolve_redis_settings,
    scrub,
    url_secrets,
)
from remote_cache._guard import Guard, ReenteredError
from remote_cache._redis_internals import (
    checkout,
    is_connected,
    no_cluster_retries,
    python_command_packer,
    quiet_handshake_options,
    renew_cluster_locks,
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
    ``BackendCommandError``. A limit of this process, not the server's, is neither: a pool
    with every connection in use (``MaxConnectionsError``), a call re-entering the thread's
    own client build (``ReenteredError``), a stack too deep to make the call (deep recursion,
    nested signal handlers: ``RecursionError``) give a plain ``BackendError``, which opens no
    breaker.
    Returns None for anything else, which is a bug to re-raise.
    """
    import redis.exceptions as rexc

    message = scrub(f"{backend}: {type(exc).__name__}: {exc}", secrets)
    error_class: type[BackendError]
    if isinstance(exc, (rexc.MaxConnectionsError, ReenteredError, RecursionError)):
        error_class = BackendError  # a limit of our own process, not the server's
    elif isinstance(exc, (rexc.TimeoutError, TimeoutError)):
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


# -- a deadline per call ---------------------------------------------------------------------
#
# redis-py bounds each socket operation by itself: a connect, every round trip of the
# handshake, every recv of a reply. A server that answers each of them just in time (a slow
# link, or one byte at a time) makes one call last many timeouts. The backend sets a
# deadline for the whole call (connect, handshake, command and reply) in a thread-local, and
# the connections of the clients it builds wait on their sockets only until that deadline.

_call_deadline = threading.local()


def _time_left() -> float | None:
    """Seconds left before the current call's deadline; None outside a backend call."""
    deadline: float | None = getattr(_call_deadline, "at", None)
    if deadline is None:
        return None
    return deadline - time.monotonic()


def _deadline_passed() -> socket.timeout:
    # socket.timeout (the built-in TimeoutError) is what redis-py expects from a socket that
    # waited too long: it drops the connection (a reply may be half read) and raises its own.
    return TimeoutError("the call's deadline passed")


_TIMEOUT_SLACK = 0.001
"""How far a socket's timeout may be from the time left before it is set again (seconds).

Setting it costs a system call; within a call and from one call to the next the time left
moves by microseconds, so most reads and writes keep the timeout already set.
"""


class _DeadlineSocket:
    """A connected socket whose every wait ends at the current call's deadline.

    Reads and writes wait at most the time left before the deadline (or the timeout redis-py
    set, when shorter; give or take ``_TIMEOUT_SLACK``); once it has passed they raise
    ``socket.timeout`` at once. Outside a backend call it behaves as the socket it wraps,
    with the timeout redis-py set. Everything else is the wrapped socket's.
    """

    __slots__ = ("_applied", "_sock", "_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()  # what redis-py asked for; the deadline may cut it
        self._applied = self._timeout  # what the socket has now

    def _arm(self) -> None:
        left = _time_left()
        timeout = self._timeout
        if left is None:
            target = timeout
        elif left <= 0:
            raise _deadline_passed()
        else:
            target = left if timeout is None or left < timeout else timeout
            applied = self._applied
            if target and applied and abs(target - applied) <= _TIMEOUT_SLACK:
                return
        if target != self._applied:
            self._sock.settimeout(target)
            self._applied = target

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)
        self._timeout = self._applied = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._arm()
        return self._sock.recv(size, flags)

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, size, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._arm()
        return self._sock.send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()  # a timeout bounds the whole of a sendall, not each chunk
        try:
            self._sock.sendall(data, flags)
        except (BrokenPipeError, ConnectionResetError) as exc:
            refusal = _error_reply_waiting(self._sock)
            if refusal is None:
                raise
            from redis.exceptions import ResponseError

            # Not an OSError: redis-py then drops the connection and raises it as it is.
            raise ResponseError(f"the server refused the command: {refusal}") from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _error_reply_waiting(sock: socket.socket) -> str | None:
    """The error reply waiting unread in ``sock``, if the server sent one, else None.

    A server that refuses a command while it is still arriving (a value over its
    ``proto-max-bulk-len``) replies with an error and closes the connection with the rest
    of the command unread, so the kernel resets it and the send fails; the error reply
    stays readable. Looked at without taking it (``MSG_PEEK``) nor waiting. A TLS socket
    cannot peek: None.
    """
    try:
        waiting = sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (OSError, ValueError):  # ValueError: an SSLSocket takes no flags
        return None
    for line in waiting.split(b"\r\n")[:-1]:  # complete lines: replies to SET are one each
        if line.startswith(b"-"):
            return line[1:201].decode("utf-8", "replace")
    return None


class _PoolFull(Exception):
    """Every connection a pool may open (``max_connections``) is open and in use."""


class _WaitingPoolMixin:
    """Mixed into a redis-py ``ConnectionPool``: a call waits for a free connection.

    When all ``max_connections`` connections are in use, a backend call waits until one is
    released or its deadline passes, and only then raises ``MaxConnectionsError``: the limit
    is this process's own, so it says nothing about the server. Outside a backend call it
    raises at once, as redis-py does.
    """

    max_connections: int
    _created_connections: int
    _available_connections: list[Any]
    _freed: threading.Condition
    _waiting: int = 0  # threads waiting for a connection: releases notify only when some are

    def reset(self) -> None:
        # Called when the pool is made, and again in a forked child, where a thread of the
        # parent may have held the old condition's lock.
        self._freed = threading.Condition()  # an RLock: a signal handler may re-enter
        self._waiting = 0
        super().reset()  # type: ignore[misc]

    def make_connection(self) -> Any:
        if self._created_connections >= self.max_connections:
            raise _PoolFull
        return super().make_connection()  # type: ignore[misc]

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                return super().get_connection(*args, **kwargs)  # type: ignore[misc]
            except _PoolFull:
                self._wait_for_a_release()

    def _wait_for_a_release(self) -> None:
        """Wait until a connection is released or the call's deadline passes (then raise)."""
        left = _time_left()
        _call_deadline.waited = True  # the server will not have had the whole timeout
        if left is None or left <= 0:
            from redis.exceptions import MaxConnectionsError

            raise MaxConnectionsError(
                f"all {self.max_connections} connections of this process's pool are in use"
            )
        with self._freed:
            self._waiting += 1
            try:
                if not self._available_connections:
                    self._freed.wait(left)
            finally:
                self._waiting -= 1

    def release(self, connection: Any) -> None:
        super().release(connection)  # type: ignore[misc]
        if self._waiting:
            with self._freed:
                self._freed.notify()


def _shorter(configured: float | None, left: float) -> float:
    return left if configured is None or left < configured else configured


class _DeadlineConnectionMixin:
    """Mixed into a redis-py connection class: its sockets keep the call's deadline.

    The connect (TCP, and the TLS handshake of ``rediss://``) waits at most the time left;
    the socket it returns is a ``_DeadlineSocket``, so the handshake's round trips, the
    command and its reply do too. A connect that fails in any way, even with an exception
    redis-py does not expect (a garbage reply to HELLO), leaves no half-set-up connection
    to be reused.
    """

    socket_timeout: float | None
    socket_connect_timeout: float | None

    def _connect(self) -> Any:
        connect = super()._connect  # type: ignore[misc]
        left = _time_left()
        if left is None:
            return _DeadlineSocket(connect())
        if left <= 0:
            raise _deadline_passed()
        saved = (self.socket_connect_timeout, self.socket_timeout)
        self.socket_connect_timeout = _shorter(saved[0], left)
        self.socket_timeout = _shorter(saved[1], left)
        try:
            sock = connect()
        finally:
            self.socket_connect_timeout, self.socket_timeout = saved
        sock.settimeout(self.socket_timeout)
        return _DeadlineSocket(sock)

    def _construct_command_packer(self, packer: Any) -> Any:
        # redis-py's own serializer, not hiredis's: hiredis 3.x crashes the process
        # (SIGSEGV) when a KeyboardInterrupt lands while it packs a command.
        return packer if packer is not None else python_command_packer(self)

    # Replies the server owes this connection: counted when commands are sent, paid when
    # read. An interrupt (KeyboardInterrupt, a gevent or pytest timeout) landing between a
    # send and its read, where redis-py does not disconnect, leaves some owed: the next
    # command on the connection would read them as its own replies (another key's value),
    # so the connection is dropped first. The handshake is left out of the count: redis-py 8
    # sends several of its commands before reading their replies, and a connect that fails
    # in any way disconnects (``_handshake``), so it never leaves a reply owed.
    _owed: int = 0
    _sending: int = 0
    _handshaking: bool = False

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        self._sending = 1
        super().send_command(*args, **kwargs)  # type: ignore[misc]

    def pack_commands(self, commands: Any) -> Any:
        commands = list(commands)
        self._sending = len(commands)
        return super().pack_commands(commands)  # type: ignore[misc]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        count, self._sending = self._sending, 0
        if self._handshaking:
            super().send_packed_command(command, check_health=check_health)  # type: ignore[misc]
            return
        if self._owed or self._refused is not None:
            self.disconnect()
        if not is_connected(self):
            self.connect()  # here, so that its handshake's replies are counted on their own
        if check_health:
            self.check_health()
        self._owed += count  # before the bytes leave: an interrupt from here on drops it
        super().send_packed_command(command, check_health=False)  # type: ignore[misc]

    _error_reply: type[Exception]  # redis-py's ResponseError, set by ``_with_deadline``

    # A server that refuses a command as it arrives (a value over its proto-max-bulk-len)
    # answers "Protocol error" and closes the connection, the rest of what was sent
    # unread: the replies to the commands after it never come, and reading them would meet
    # the reset, which is no outage. They are answered here as that refusal, and the
    # connection is dropped before its next command.
    _refused: str | None = None

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if self._handshaking:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        if self._refused is not None:
            self._owed = max(0, self._owed - 1)
            raise self._error_reply(
                f"not run: the server closed the connection after {self._refused}"
            )
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except self._error_reply as exc:  # an error reply, read whole
            self._owed = max(0, self._owed - 1)
            if str(exc).startswith(("Protocol error", "ERR Protocol error")):
                self._refused = str(exc)[:200]
            raise
        self._owed = max(0, self._owed - 1)
        return response

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        self._owed = 0
        self._refused = None
        super().disconnect(*args, **kwargs)  # type: ignore[misc]

    def check_health(self) -> None:
        # Never inside the handshake: the connection has just been opened, and redis-py 5
        # sends its PING before HELLO's AUTH, which a server with a password refuses.
        if not self._handshaking:
            super().check_health()  # type: ignore[misc]

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return self._handshake(super().connect, *args, **kwargs)  # type: ignore[misc]

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        # redis-py 6 and later connect through this one too (redis-py 5 has only ``connect``).
        return self._handshake(super().connect_check_health, *args, **kwargs)  # type: ignore[misc]

    def _handshake(self, connect: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``connect`` (socket, TLS, Redis handshake) outside the owed-reply count.

        A connect that fails in any way, even with an exception redis-py does not expect,
        disconnects: no half-set-up connection, and no reply of the handshake left owed.
        """
        outer = self._handshaking  # connects nest in redis-py 8: connect_check_health in connect
        try:
            self._handshaking = True
            return connect(*args, **kwargs)
        except BaseException:
            self.disconnect()
            raise
        finally:
            self._handshaking = outer


_deadline_classes: dict[type, type] = {}


def _with_deadline(connection_class: type) -> type:
    """``connection_class`` with ``_DeadlineConnectionMixin`` mixed in (one class per base)."""
    if issubclass(connection_class, _DeadlineConnectionMixin):
        return connection_class
    cls = _deadline_classes.get(connection_class)
    if cls is None:
        from redis.exceptions import ResponseError

        cls = type(
            f"Deadline{connection_class.__name__}",
            (_DeadlineConnectionMixin, connection_class),
            {"__module__": __name__, "_error_reply": ResponseError},
        )
        cls = _deadline_classes.setdefault(connection_class, cls)
    return cls


_pool_class: type | None = None


def _deadline_pool_class() -> type:
    """A redis-py ``ConnectionPool`` whose connections keep the call's deadline.

    Given as the pool class, it catches the connection class wherever redis-py chose it:
    from a ``rediss://`` or ``unix://`` URL, and for each node of a cluster.
    """
    global _pool_class  # noqa: PLW0603 - built once, when redis-py is first needed
    if _pool_class is None:
        from redis.connection import Connection, ConnectionPool

        def __init__(self: Any, connection_class: type = Connection, **kwargs: Any) -> None:
            ConnectionPool.__init__(
                self, connection_class=_with_deadline(connection_class), **kwargs
            )

        _pool_class = type(
            "DeadlineConnectionPool",
            (_WaitingPoolMixin, ConnectionPool),
            {"__init__": __init__, "__module__": __name__},
        )
    return _pool_class


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


def _build_client(settings: RedisSettings) -> Any:
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
        build.builder = None
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


_fork.after_fork_in_child(_after_fork_in_child)


class _BadReply(Exception):
    """A reply of a shape no Redis server sends for the command: the server speaks garbage."""


def _shown(reply: object) -> str:
    """A short description of a reply, for messages (a reply may be a whole HTML page)."""
    text = repr(reply)
    return f"{type(reply).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _value_reply(reply: object) -> bytes | None:
    """The reply to GET: bytes or None, else ``_BadReply``."""
    if reply is None or isinstance(reply, bytes):
        return reply
    raise _BadReply(f"GET answered {_shown(reply)}")


def _values_reply(reply: object, names: Sized) -> list[bytes | None]:
    """The reply to MGET of ``names``: one bytes or None per key, else ``_BadReply``."""
    if not isinstance(reply, list) or len(reply) != len(names):
        raise _BadReply(f"MGET of {len(names)} keys answered {_shown(reply)}")
    for value in reply:
        _value_reply(value)
    return reply


def _ok_reply(reply: object) -> None:
    """Check the reply to SET or MSET: OK (redis-py makes it True), else ``_BadReply``."""
    if reply is not True and reply not in (b"OK", "OK"):
        raise _BadReply(f"a write answered {_shown(reply)}, not OK")


def _oks_reply(replies: object, names: Sized) -> None:
    """Check the replies to a batch of SETs: one OK per key, else ``_BadReply``."""
    if not isinstance(replies, list) or len(replies) != len(names):
        raise _BadReply(f"{len(names)} writes answered {_shown(replies)}")
    for reply in replies:
        _ok_reply(reply)


def _protocol_error(
    exc: Exception,
    *,
    backend: str,
    operation: str,
    key: str | None = None,
    secrets: list[str] | tuple[str, ...] = (),
) -> BackendUnavailableError:
    """A failure ``translate_redis_error`` does not know, as a protocol error.

    A reply of the wrong shape (``_BadReply``), or any exception raised inside the client
    while it parsed one (``AttributeError``, ``ValueError``...): the server does not speak
    Redis, which is a transport failure, so it opens the breaker.
    """
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    message = scrub(f"{backend}: protocol error: {type(exc).__name__}: {text}", secrets)
    return BackendUnavailableError(message, backend=backend, operation=operation, key=key)


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
        # A call ends by its deadline (the timeout) but for host name lookups; a probe slower
        # than its lease only lets a second probe overlap.
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
            stale = client is None or self._generation != _fork.generation
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
        """Tell the breaker what a failed call says about the server.

        A transport failure opens it; an error reply closes it (the server answered); a
        limit of this process's own (every pooled connection in use) says nothing: a probe
        it ended lets the next call probe.
        """
        if isinstance(error, BackendUnavailableError):
            if breaker.record_failure(probe):
                log.debug("%s: circuit breaker opened", self._description)
        elif isinstance(error, BackendCommandError):
            breaker.record_success()
        else:
            breaker.release_probe(probe)

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


def _pipelined_set(client: Any, items: Mapping[bytes, bytes], expire: int | None) -> None:
    """``SET key value [EX expire]`` for every item, in one pipeline (one round trip each)."""
    pipeline = client.pipeline(transaction=False)
    for name, data in items.items():
        pipeline.set(name, data, ex=expire)
    _oks_reply(pipeline.execute(), items)


def _set_command(name: bytes, data: bytes, expire: int | None) -> tuple[Any, ...]:
    return ("SET", name, data) if expire is None else ("SET", name, data, "EX", expire)


class _Redirected(Exception):
    """A slot moved while a batch was under way (MOVED or ASK)."""


_stale_slot_maps: weakref.WeakSet[Any] = weakref.WeakSet()
"""Cluster clients whose slot map a failed batch found stale and could not read again yet."""


def _refresh_slot_map(client: Any) -> bool:
    """Read the cluster's slot map again, through redis-py's own ``NodesManager.initialize()``.

    True if it was read. Never raises for a failure (the batch's own error is what the
    caller reports): the client stays marked, and its next batch reads the map first.
    """
    with contextlib.suppress(TypeError):  # a client that takes no weak reference
        _stale_slot_maps.add(client)
    try:
        client.nodes_manager.initialize()
    except Exception as exc:  # noqa: BLE001 - no node answered in time: the next batch asks
        log.debug("cluster slot map not refreshed: %s: %s", type(exc).__name__, exc)
        return False
    _stale_slot_maps.discard(client)
    return True


def _is_node_failure(exc: Exception) -> bool:
    """Whether ``exc`` says a node is gone or the slot map is wrong, not the request.

    A connection that failed or timed out, a cluster reporting itself down (CLUSTERDOWN,
    during a failover), a slot no node serves in the client's map. This process's own
    pool limit (``MaxConnectionsError``) says nothing about the node.
    """
    from redis.exceptions import (
        ClusterDownError,
        ConnectionError,
        MaxConnectionsError,
        SlotNotCoveredError,
        TimeoutError,
    )

    if isinstance(exc, MaxConnectionsError):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError, ClusterDownError, SlotNotCoveredError))


def _plan(client: Any, names: Mapping[bytes, Any]) -> dict[str, tuple[Any, list[bytes]]]:
    """The keys grouped by the master the client's slot map gives them: name -> (node, keys)."""
    by_node: dict[str, tuple[Any, list[bytes]]] = {}
    for name in names:
        node = client.get_node_from_key(name)
        by_node.setdefault(node.name, (node, []))[1].append(name)
    return by_node


def _cluster_round_trip(client: Any, commands: Mapping[bytes, tuple[Any, ...]]) -> list[Any]:
    """Send each key's command to the master of its slot, every master at once; the replies.

    One round trip in all: the commands for all masters are written before any reply is
    read. redis-py's cluster pipeline does the same with several times the Python work per
    key. Raises ``_Redirected`` when a slot moved (the caller then goes through redis-py,
    which follows redirections and refreshes its slot map), the first other error reply as
    redis-py raises it, and transport errors as they come.

    A node failure (``_is_node_failure``: a master down, a failover under way) makes the
    client read the slot map again, as redis-py does after a single command's failure;
    when the new map sends the keys to other masters (a replica was promoted), the batch
    is sent once more, within the same deadline. A map that could not be read is read
    before the client's next batch.
    """
    if client in _stale_slot_maps:
        _refresh_slot_map(client)
    routes: dict[str, list[bytes]] | None = None
    try:
        plan = _plan(client, commands)
        routes = _routes(plan)
        return _send_and_read(client, commands, plan)
    except Exception as exc:
        if not _is_node_failure(exc) or not _refresh_slot_map(client):
            raise
        failed = exc
    try:
        plan = _plan(client, commands)
    except Exception:  # noqa: BLE001 - the new map lacks a slot: the first error tells more
        raise failed from None
    if _routes(plan) == routes:
        raise failed  # the same masters for the same keys: it would fail the same way
    return _send_and_read(client, commands, plan)


def _routes(plan: dict[str, tuple[Any, list[bytes]]]) -> dict[str, list[bytes]]:
    """Which keys go to which master (by name), to tell whether a new slot map changed it."""
    return {name: names for name, (_, names) in plan.items()}


def _send_and_read(
    client: Any,
    commands: Mapping[bytes, tuple[Any, ...]],
    plan: dict[str, tuple[Any, list[bytes]]],
) -> list[Any]:
    """Write every master's commands, then read every reply (see ``_cluster_round_trip``)."""
    from redis.exceptions import AskError, ResponseError

    sent: list[tuple[Any, Any, list[bytes]]] = []
    replies: dict[bytes, Any] = {}
    errors: list[ResponseError] = []
    try:
        for node, names in plan.values():
            pool = client.get_redis_connection(node).connection_pool
            connection = checkout(pool)
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
        _oks_reply(_cluster_round_trip(client, commands), commands)
    except _Redirected:
        _pipelined_set(client, items, expire)


def _cluster_get_many(client: Any, names: list[bytes]) -> list[bytes | None]:
    """GET every key on a cluster in one round trip (redis-py's MGETs if a slot moved)."""
    try:
        return _cluster_round_trip(client, {name: ("GET", name) for name in names})
    except _Redirected:
        return client.mget_nonatomic(names)  # type: ignore[no-any-return]
