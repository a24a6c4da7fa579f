"""The deadline of a backend call, and the socket that keeps it.

The backend sets the deadline (``_call_deadline``); the connections of the clients it builds
(``connections.py``) wrap their sockets in ``_DeadlineSocket``, whose every wait ends by it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

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
