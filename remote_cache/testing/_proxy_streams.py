"""The bytes of one proxied connection: what each direction holds, and when it is due.

``OutageProxy``'s faults act on these: latency sets when a chunk is due, ``reset_mid_reply``
withholds part of a reply and resets once the rest is flushed, ``restore()`` releases what
is held. The serving thread (``_proxy_relay``) moves the bytes; this module only keeps them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections import deque

_BUFFER_LIMIT = 256 * 1024
"""Bytes one direction of a connection holds before the proxy stops reading its source."""
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() then sends RST instead of FIN


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class _Chunk:
    __slots__ = ("data", "due")

    def __init__(self, due: float, data: memoryview) -> None:
        self.due = due
        self.data = data


class _Direction:
    """Bytes read from one side of a connection, waiting, in order, to reach the other side."""

    def __init__(self) -> None:
        self.chunks: deque[_Chunk] = deque()  # oldest first; only the first one is ever sent
        self.buffered = 0
        self.last_due = 0.0
        self.eof = False  # the source ended: once flushed, end the destination's writing side
        self.done = False  # the end was passed on
        self.reset_after = False  # once flushed, reset the connection (reset_mid_reply)
        self.withheld = b""  # the part of the reply cut off by reset_mid_reply, kept for restore()
        self.queued = 0  # bytes queued so far (limit_data counts them)
        self.close_after = False  # once flushed, close the connection (limit_data reached)

    def add(self, data: bytes, due: float) -> None:
        # A chunk is never due before the one ahead of it, so a lowered latency cannot reorder.
        self.last_due = max(due, self.last_due)
        self.chunks.append(_Chunk(self.last_due, memoryview(data)))
        self.buffered += len(data)

    def release(self) -> None:
        """Make every held chunk due now (their order is unchanged); cancel a pending reset.

        The bytes a pending reset cut off follow the held ones, so the stream has no gap.
        """
        for chunk in self.chunks:
            chunk.due = 0.0
        self.last_due = 0.0
        if self.reset_after:
            self.reset_after = False
            if self.withheld:
                self.add(self.withheld, 0.0)
            self.withheld = b""

    def next_due(self) -> float | None:
        return self.chunks[0].due if self.chunks else None


class _Slot:
    """What the proxy owes the client for one request, in order: the server's reply, or an
    answer of its own (a fault's error reply), and how to deliver it."""

    __slots__ = ("answer", "delay", "drip", "half", "lost", "send_delay", "send_drip", "send_half")

    def __init__(self) -> None:
        self.answer: bytes | None = None  # sent instead of the server's reply
        self.delay = 0.0  # added to the reply's latency
        self.drip = 0  # bytes per second the reply trickles at (0: at once)
        self.half = False  # half of the reply, then a reset
        self.lost = False  # the reply never comes (held until restore())
        self.send_delay = 0.0  # the request's latency on its way to the server
        self.send_drip = 0  # bytes per second the request trickles at (0: at once)
        self.send_half = False  # half of the request, then a reset

    def shapes_request(self) -> bool:
        """Whether the request goes to the server other than at once, whole."""
        return bool(self.send_delay or self.send_drip or self.send_half)


class _Connection:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.connecting = False
        self.deferred = False  # accepted during a black hole: connect upstream on restore()
        self.silent = False  # slow close: the server is gone, the client is read and ignored
        self.request = _Direction()  # client -> upstream
        self.reply = _Direction()  # upstream -> client
        self.slow_close = 0.0  # the slow_close() value when the server hung up
        self.close_at: float | None = None  # slow close: when the client's side ends
        self.closed = False
        self.registered: dict[socket.socket, int] = {}
        # Requests and replies read as RESP, so that a schedule's faults can act per command;
        # a stream that is not RESP (TLS) is relayed as bytes, untouched by them.
        self.parsing = True
        self.request_tail = b""  # a request still arriving
        self.reply_tail = b""  # a reply still arriving
        self.slots: deque[_Slot] = deque()  # one per request not yet answered, oldest first
        self.hung = False  # a Hang fired: requests wait in ``held`` until restore()
        self.held: list[bytes] = []  # requests a hung server has not read yet, in order
        self.born_under: object = None  # the schedule applied when it was accepted
        self.asking = False  # ASKING came: the next data command is served, as on a real node
        self.answers_lost = False  # a Hang "downstream" fired: replies wait until restore()
        self.lost_replies: list[bytes] = []  # those replies, in order
        self.passed = 0  # bytes relayed so far, both ways (AfterBytes)
        self.draws: dict[int, bool] = {}  # toxic (its id) -> whether it applies here
        self.frozen: str | None = None  # a timeout toxic: "both", or the way nothing moves
        self.timeout_at: float | None = None  # a timeout toxic: when the connection closes
        self.reset_at: float | None = None  # a reset_peer toxic: when it is reset

    def flows(self, *, request: bool) -> bool:
        """Whether the requests (or the replies) move: no timeout toxic stops them."""
        return self.frozen not in ("both", "upstream" if request else "downstream")
