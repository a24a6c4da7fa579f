"""A schedule of faults on fakeredis: what redis-py reads is what a real server would send.

A client of ``faulting_client`` sends its commands through ``_FaultingSocket``, which reads
them (RESP) and, for a data command (``GET``, ``SET``, ``MGET``, ``MSET``) a fault fires on,
answers the error reply itself, waits the latency, or ends the call as a silent server ends
it: at the deadline, with the timeout redis-py raises for a socket. Everything else reaches
fakeredis unchanged. The Redis backend above it translates what redis-py raises, breaker
and all, as it does for a real server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from remote_cache import _clock
from remote_cache.testing._resp import DATA_COMMANDS, keys_of, split_requests
from remote_cache.testing.faults import Hang, Latency, Refuse, Reply, Schedule

__all__ = ["faulting_client"]


def _connection_class() -> Any:
    """fakeredis's connection class (``FakeRedisConnection``; ``FakeConnection`` before 2.30)."""
    import fakeredis

    found = getattr(fakeredis, "FakeRedisConnection", None)
    return found if isinstance(found, type) else fakeredis.FakeConnection


_classes: dict[Any, type] = {}


def _faulting_connection_class() -> type:
    """``_connection_class()`` whose sockets are ``_FaultingSocket``s (one class per base)."""
    base = _connection_class()
    cls = _classes.get(base)
    if cls is None:

        class FaultingFakeConnection(base):  # type: ignore[misc,valid-type]
            """A fakeredis connection whose socket meets a schedule's faults."""

            def __init__(
                self, *args: Any, schedule_of: Any = None, deadline: float = 1.0, **kwargs: Any
            ) -> None:
                self._schedule_of = schedule_of
                self._deadline = deadline
                super().__init__(*args, **kwargs)

            def _connect(self) -> Any:
                sock = super()._connect()
                return _FaultingSocket(sock, self._schedule_of, self._deadline)

        cls = _classes.setdefault(base, FaultingFakeConnection)
    return cls


def faulting_client(
    server: Any, schedule_of: Callable[[], Schedule | None], *, deadline: float
) -> Any:
    """A redis-py client of fakeredis ``server`` whose commands meet ``schedule_of()``'s
    faults (read at each command: None lets everything through), with calls that end by
    ``deadline`` seconds."""
    import redis

    pool = redis.ConnectionPool(
        connection_class=_faulting_connection_class(),
        server=server,
        schedule_of=schedule_of,
        deadline=deadline,
    )
    return redis.Redis(connection_pool=pool)


class _FaultingSocket:
    """A fakeredis socket whose data commands meet a schedule's faults first."""

    def __init__(
        self, sock: Any, schedule_of: Callable[[], Schedule | None], deadline: float
    ) -> None:
        self._sock = sock
        self._schedule_of = schedule_of
        self._deadline = deadline
        self._born_under = schedule_of()  # the schedule it is a new connection of
        self._pending = b""  # a request still arriving (redis-py sends a large value apart)

    def sendall(self, data: Any) -> None:
        schedule = self._schedule_of()
        if schedule is None and not self._pending:
            self._sock.sendall(data)
            return
        requests, self._pending = split_requests(self._pending + bytes(data))
        slowest = 0.0  # pipelined: the answers wait for the slowest
        for fields, raw in requests:
            command = fields[0].decode("ascii", "replace").upper() if fields else ""
            if schedule is None or command not in DATA_COMMANDS:
                self._sock.sendall(raw)
                continue
            slowest = max(slowest, self._send(schedule, command, fields, raw))
        if slowest > self._deadline:  # done, or refused, and answered too late
            _clock.sleep(self._deadline)
            raise TimeoutError("simulated: the server did not answer in time")  # as a socket's
        if slowest:
            _clock.sleep(slowest)

    def _send(self, schedule: Schedule, command: str, fields: list[bytes], raw: bytes) -> float:
        """Send one request as its faults say; return how late its answer is. A refused
        connection, or a stalled server (``Hang``), ends the call here: the requests after
        it in a pipeline never reach the server."""
        delay, ending = 0.0, None
        new = schedule is self._born_under
        for fault, rng in schedule.decide(command, keys_of(command, fields), new_connection=new):
            action = fault.does
            if isinstance(action, Latency):
                delay += action.delay(rng)
            elif fault.loses_answer:  # the server does the work; its answer never comes
                delay = math.inf
            elif ending is None:
                ending = action
        if isinstance(ending, Refuse):  # refused at once: no latency to wait
            raise ConnectionRefusedError(111, "simulated: connection refused")
        if isinstance(ending, Hang):  # nothing more is read: this and what follows are lost
            _clock.sleep(self._deadline)
            raise TimeoutError("simulated: the server did not answer in time")  # as a socket's
        if isinstance(ending, Reply):
            self._sock.put_response(_error_reply(ending.text))  # refused, in its turn
        else:
            self._sock.sendall(raw)
        return delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _error_reply(text: str) -> Any:
    """The exception redis-py's parser makes of the error reply ``-text`` (fakeredis queues
    replies parsed, and raises an exception it finds there)."""
    from redis.connection import DefaultParser

    return DefaultParser(socket_read_size=65536).parse_error(text)  # type: ignore[no-untyped-call]
