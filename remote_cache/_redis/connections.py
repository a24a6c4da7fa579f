"""redis-py connection and pool classes that keep the call's deadline.

``_DeadlineConnectionMixin`` (connect and every read and write end by the deadline, replies
owed after an interrupt drop the connection) and ``_WaitingPoolMixin`` (a call waits for a
free connection until its deadline) are mixed into redis-py's classes by
``_deadline_pool_class``, the pool class every client of ours is built with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from remote_cache._redis.deadline import (
    _call_deadline,
    _deadline_passed,
    _DeadlineSocket,
    _time_left,
)
from remote_cache._redis.internals import (
    is_connected,
    only_tls_records_waiting,
    python_command_packer,
)


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

    def can_read(self, *args: Any, **kwargs: Any) -> bool:
        # A pool asks before it hands a connection out, and drops one that has data. On TLS,
        # redis-py 8.2's hiredis parser also says so for records that carry none (session
        # tickets arriving after a handshake that read nothing), which must not count.
        if not super().can_read(*args, **kwargs):  # type: ignore[misc]
            return False
        if only_tls_records_waiting(self):
            return False
        if not self._owed and not self._handshaking:
            self._raise_refusal()
        return True

    def _raise_refusal(self) -> None:
        """Raise what a server said unasked: a server refusing a connection (its client
        limit reached) sends the reason before it closes it. redis-py would only say
        "Connection not ready"; anything else waiting is left for the pool to drop."""
        import redis.exceptions as rexc

        try:
            super().read_response()  # type: ignore[misc]
        except rexc.ConnectionError:  # the reason (MaxClientsReachedError), or the close
            raise
        except self._error_reply as exc:  # another refusal: a lost connection all the same
            raise rexc.ConnectionError(str(exc)) from exc
        except Exception:  # noqa: BLE001 - unreadable, or too slow: "not ready"
            return

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
