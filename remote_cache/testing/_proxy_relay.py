"""The serving thread of ``OutageProxy``: one selector loop that relays every connection.

``ProxyRelay`` accepts clients, connects each to the target, moves bytes both ways when
they are due, passes on ends and resets, and runs the fault changes (``_Command``) the
public methods queue for it. It owns every socket: no other thread touches one. The
public API (``OutageProxy`` in ``_proxy``) subclasses it.

Over 400 lines on purpose: it is one state machine, the serving thread's, whose methods
share every connection's state (bytes due, RESP slots, held requests and answers); the
pieces that keep no such state are apart (``_proxy_streams``, ``_proxy_toxics``, ``_resp``).
"""

from __future__ import annotations

import contextlib
import errno
import random
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from remote_cache.testing._proxy_streams import (
    _BUFFER_LIMIT,
    _Connection,
    _Direction,
    _reset,
    _Slot,
)
from remote_cache.testing._proxy_toxics import Toxic, at_rate, shape
from remote_cache.testing._resp import DATA_COMMANDS, is_push, keys_of, reply_end, split_requests
from remote_cache.testing.faults import (
    Drip,
    Fault,
    HalfReply,
    Hang,
    Latency,
    Refuse,
    Reply,
    Schedule,
)

__all__ = ["ProxyRelay"]

_CHUNK = 65536
_CONNECTING = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN}
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE = 0.1
"""Seconds the proxy stops accepting after running out of descriptors (else it would spin)."""


class _Command:
    """A change of settings, run by the serving thread; the caller waits for ``done``."""

    __slots__ = ("action", "done")

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.done = threading.Event()


class ProxyRelay:
    """Relay a loopback port to ``(target_host, target_port)`` from one serving thread.

    Builds the listener and the selector and starts the thread; the fault settings
    (``_mode``, ``_toxics``, ``_reset_mid_reply``, ``_slow_close``) are changed only by
    commands the thread runs. A host that does not resolve raises ``OSError`` here.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        # Resolved once, here: a bad host fails now, and the serving thread never waits on DNS.
        self._target_address = socket.getaddrinfo(
            target_host, target_port, type=socket.SOCK_STREAM
        )[0]
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._accept_paused_until: float | None = None
        self._connections: set[_Connection] = set()
        self._commands: deque[_Command] = deque()
        self._commands_lock = threading.Lock()
        """Guards ``_commands`` and ``_closed``; the serving thread runs commands under it."""
        self._mode = "up"
        self._toxics: list[Toxic] = []
        self._reset_mid_reply = False
        self._slow_close = 0.0
        self._schedule: Schedule | None = None
        self.node: int | None = None
        """The cluster node this proxy stands for (``Fault(node=...)`` matches it)."""
        self.connections = 0
        """Connections accepted so far."""
        self._closed = False
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, "wakeup")
        self._thread = threading.Thread(target=self._serve, name="OutageProxy", daemon=True)
        self._thread.start()

    # -- commands, run by the serving thread ----------------------------------------------

    def _run_commands(self) -> None:
        while self._commands:
            command = self._commands.popleft()
            # An action that raises ends the thread (its callers then raise RuntimeError):
            # ``done`` must never claim a change that did not happen.
            command.action()
            command.done.set()

    def _do_cut(self) -> None:
        self._mode = "cut"
        for connection in list(self._connections):
            self._drop(connection, reset=True)

    def _do_blackhole(self) -> None:
        self._mode = "blackhole"

    def _do_toxic(self, toxic: Toxic | None, kind: str, direction: str | None) -> None:
        """Put ``toxic`` in place of the one of its kind and direction (None: remove it)."""
        self._toxics = [t for t in self._toxics if (t.kind, t.direction) != (kind, direction)]
        if toxic is not None:
            self._toxics.append(toxic)
        if direction is None or kind == "timeout":  # it starts on the open connections now
            for connection in list(self._connections):
                self._start_connection_toxics(connection, time.monotonic())

    def _applies(self, connection: _Connection, toxic: Toxic) -> bool:
        """Whether ``toxic`` applies to ``connection`` (drawn once, by its toxicity)."""
        drawn = connection.draws.get(id(toxic))
        if drawn is None:
            drawn = connection.draws[id(toxic)] = toxic.draw()
        return drawn

    def _start_connection_toxics(self, connection: _Connection, now: float) -> None:
        """Start the timeout and reset_peer toxics that apply to ``connection``."""
        for toxic in self._toxics:
            if toxic.kind not in ("timeout", "reset_peer") or not self._applies(connection, toxic):
                continue
            seconds = toxic.settings["seconds"]
            if toxic.kind == "timeout" and connection.frozen is None:
                connection.frozen = toxic.direction or "both"
                connection.timeout_at = now + seconds if seconds > 0 else None
            elif toxic.kind == "reset_peer" and connection.reset_at is None:
                connection.reset_at = now + seconds

    def _do_restore(self) -> None:
        self._mode = "up"
        self._toxics = []
        self._reset_mid_reply = False
        self._slow_close = 0.0
        self._schedule = None
        for connection in list(self._connections):
            if connection.frozen is not None:  # Toxiproxy closes what a timeout stopped
                self._drop(connection)
                continue
            if connection.hung and _client_left(connection.client):
                connection.held.clear()  # a paused server never runs what a client that left sent
            connection.hung = False
            connection.timeout_at = connection.reset_at = None
            if connection.held:  # the stalled server reads what waited, in order
                connection.request.add(b"".join(connection.held), 0.0)
                connection.held.clear()
            connection.request.release()
            connection.reply.release()
            if connection.answers_lost:  # the answers that never came come now, in order
                connection.answers_lost = False
                lost, connection.lost_replies = connection.lost_replies, []
                for reply in lost:
                    self._queue(connection, False, reply)
            connection.slow_close = 0.0
            if connection.close_at is not None:
                connection.close_at = 0.0
            if connection.deferred:
                connection.deferred = False
                self._connect(connection)

    # -- the serving thread ---------------------------------------------------------------

    def _drop(
        self, connection: _Connection, *, reset: bool = False, upstream_ends: bool = False
    ) -> None:
        """Close both sides (``reset``: with a reset); ``upstream_ends``: the server's side
        with an end of stream all the same, so that it reads what was sent before."""
        if connection.closed:
            return
        connection.closed = True
        self._connections.discard(connection)
        for registered in connection.registered:
            with contextlib.suppress(KeyError, ValueError, RuntimeError):
                self._selector.unregister(registered)
        connection.registered.clear()
        for sock in (connection.client, connection.upstream):
            if sock is None:
                continue
            if reset and not (upstream_ends and sock is connection.upstream):
                _reset(sock)
            else:
                sock.close()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                # The connection stays in the backlog and the listener stays readable: wait
                # for descriptors to free up instead of retrying in a busy loop.
                self._selector.unregister(self._listener)
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
            return
        self.connections += 1
        if self._mode == "cut":
            _reset(client)
            return
        client.setblocking(False)
        connection = _Connection(client)
        connection.born_under = self._schedule
        self._connections.add(connection)
        self._start_connection_toxics(connection, time.monotonic())
        if self._mode == "blackhole":
            connection.deferred = True
        else:
            self._connect(connection)

    def _connect(self, connection: _Connection) -> None:
        """Start a non-blocking connect to the target (a dead target resets the client)."""
        family, kind, proto, _, address = self._target_address
        try:
            upstream = socket.socket(family, kind, proto)
        except OSError:
            self._drop(connection, reset=True)
            return
        upstream.setblocking(False)
        result = upstream.connect_ex(address)
        if result not in _CONNECTING:
            upstream.close()
            self._drop(connection, reset=True)
            return
        connection.upstream = upstream
        connection.connecting = result != 0

    def _read(self, connection: _Connection, from_client: bool) -> None:
        source = connection.client if from_client else connection.upstream
        if source is None:
            return
        try:
            data = source.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by that side: the other side hears of it the same way
            self._drop(connection, reset=True)
            return
        if from_client and connection.silent:
            if not data:
                self._drop(connection)
            return  # the server is gone: the client's bytes go nowhere
        if not data:
            self._ended(connection, from_client)
            return
        connection.passed += len(data)
        if connection.parsing:
            if from_client:
                self._requests_in(connection, data)
            else:
                self._replies_in(connection, data)
            return
        self._add_raw(connection, data, from_client)

    def _ended(self, connection: _Connection, from_client: bool) -> None:
        """One side ended: what came of a request or reply cut short goes on as it is."""
        if from_client and connection.hung:
            connection.held.clear()  # a paused server never runs what a client that left sent
        if from_client:
            held, connection.request_tail = connection.request_tail, b""
        else:
            held, connection.reply_tail = connection.reply_tail, b""
        if held:
            self._add_raw(connection, held, from_client)
        direction = connection.request if from_client else connection.reply
        direction.eof = True
        if not from_client:
            connection.slow_close = self._slow_close

    def _add_raw(self, connection: _Connection, data: bytes, from_client: bool) -> None:
        """Relay bytes as they came (a stream that is not RESP, such as TLS)."""
        direction = connection.request if from_client else connection.reply
        if not from_client and self._reset_mid_reply:
            half = max(1, len(data) // 2)
            data, direction.withheld = data[:half], data[half:]
            direction.reset_after = True
        self._queue(connection, from_client, data)

    def _queue(
        self, connection: _Connection, from_client: bool, data: bytes, delay: float = 0.0
    ) -> None:
        """Queue bytes for one direction, ``delay`` seconds late, shaped by its toxics."""
        direction = connection.request if from_client else connection.reply
        name = "upstream" if from_client else "downstream"
        toxics = [t for t in self._toxics if t.direction == name and self._applies(connection, t)]
        limit = next((t for t in toxics if t.kind == "limit_data"), None)
        if limit is not None:
            room = int(limit.settings["bytes"]) - direction.queued
            if len(data) >= room:  # the limit is reached: the connection closes once sent
                data, direction.close_after = data[: max(room, 0)], True
        direction.queued += len(data)
        if not data:
            return
        now = time.monotonic()
        backlog = max(0.0, direction.last_due - now)
        for piece, due in shape(toxics, data, delay, backlog):
            direction.add(piece, now + due if due > 0 else 0.0)

    # -- requests and replies, read as RESP ------------------------------------------------

    def _opaque(self, connection: _Connection) -> None:
        """Stop reading the connection as RESP: relay what is held, and all after, as bytes."""
        connection.parsing = False
        connection.slots.clear()
        request, reply = connection.request_tail, connection.reply_tail
        connection.request_tail = connection.reply_tail = b""
        if request:
            self._add_raw(connection, request, True)
        if reply:
            self._add_raw(connection, reply, False)

    def _requests_in(self, connection: _Connection, data: bytes) -> None:
        """Forward the complete requests, each met first by the schedule's faults."""
        held = connection.request_tail + data
        try:
            if not held.startswith(b"*"):  # redis-py sends arrays: this is TLS, or no Redis
                raise ValueError("not RESP")
            requests, connection.request_tail = split_requests(held)
        except ValueError:
            connection.request_tail = held
            self._opaque(connection)
            return
        forward: list[bytes] = []
        for fields, raw in requests:
            if connection.request.reset_after:  # half a request went: the rest never will
                connection.request.withheld += raw
                continue
            slot = _Slot() if connection.hung else self._meet_faults(connection, fields)
            if slot is None:  # Refuse: the connection is reset as this request arrives
                if not forward:
                    self._drop(connection, reset=True)
                    return
                self._queue(connection, True, b"".join(forward))  # those before it went
                connection.request.reset_after = True
                return
            connection.slots.append(slot)
            if connection.hung:  # a stalled server: read nothing more until restore()
                connection.held.append(raw)
            elif slot.answer is None and slot.shapes_request():
                if forward:  # those before it go first
                    self._queue(connection, True, b"".join(forward))
                    forward = []
                self._send_shaped(connection, raw, slot)
            elif slot.answer is None:
                forward.append(raw)
        if forward:
            self._queue(connection, True, b"".join(forward))
        self._answer_front(connection, time.monotonic())

    def _send_shaped(self, connection: _Connection, raw: bytes, slot: _Slot) -> None:
        """Queue one request for the server: late, trickling, or half of it then a reset."""
        if slot.send_half:
            half = max(1, len(raw) // 2)
            self._queue(connection, True, raw[:half], slot.send_delay)
            connection.request.withheld, connection.request.reset_after = raw[half:], True
        elif slot.send_drip:
            for piece, due in at_rate([(raw, slot.send_delay)], slot.send_drip, backlog=0.0):
                self._queue(connection, True, piece, due)
        else:
            self._queue(connection, True, raw, slot.send_delay)

    def _meet_faults(self, connection: _Connection, fields: list[bytes]) -> _Slot | None:
        """The slot of a request after the faults that fire on it; None to refuse it."""
        slot = _Slot()
        schedule = self._schedule
        if schedule is None or not fields:
            return slot
        command = fields[0].decode("ascii", "replace").upper()
        if command == "ASKING":  # a cluster client followed an ASK here: the next is served
            connection.asking = True
        if command not in DATA_COMMANDS:
            return slot
        if connection.asking:
            connection.asking = False
            return slot
        keys = keys_of(command, fields)
        ending = None  # of several faults that end the call, the first in the schedule wins
        new = connection.born_under is schedule
        for fault, rng in schedule.decide(
            command, keys, sent=connection.passed, node=self.node, new_connection=new
        ):
            if not _shape(slot, fault, rng) and ending is None:
                ending = fault.does
        if isinstance(ending, Refuse):
            return None
        if isinstance(ending, Hang):
            connection.hung = True
        elif isinstance(ending, Reply):
            slot.answer = b"-" + self._redirect(ending.text, keys).encode("utf-8") + b"\r\n"
        return slot

    def _redirect(self, text: str, keys: list[str]) -> str:
        """A MOVED or ASK reply at a cluster node's proxy names the key's slot and this
        proxy, so a cluster client follows it back here, as to a real node; any other
        reply, and any reply of a proxy of no cluster node, is ``text`` itself."""
        code = text.split(" ", 1)[0]
        if self.node is None or code not in ("MOVED", "ASK") or not keys:
            return text
        from redis.crc import key_slot

        return f"{code} {key_slot(keys[0].encode())} {self.host}:{self.port}"

    def _replies_in(self, connection: _Connection, data: bytes) -> None:
        """Deliver each complete reply as its request's slot says, answers of ours in turn."""
        held = connection.reply_tail + data
        position, now = 0, time.monotonic()
        try:
            while True:
                self._answer_front(connection, now)
                if position >= len(held):
                    break
                end = reply_end(held, position)
                if end is None:
                    break
                push = is_push(held, position)
                reply, position = held[position:end], end
                slot = None if push or not connection.slots else connection.slots.popleft()
                self._deliver(connection, reply, slot, now)
        except ValueError:  # not RESP after all: the rest goes as bytes
            connection.reply_tail = held[position:]
            self._opaque(connection)
            return
        connection.reply_tail = held[position:]

    def _answer_front(self, connection: _Connection, now: float) -> None:
        """Deliver the proxy's own answers now first in line."""
        while connection.slots and connection.slots[0].answer is not None:
            slot = connection.slots.popleft()
            assert slot.answer is not None
            self._deliver(connection, slot.answer, slot, now)

    def _deliver(
        self, connection: _Connection, reply: bytes, slot: _Slot | None, now: float
    ) -> None:
        """Queue one reply for the client: late, trickling, or half of it then a reset."""
        if connection.answers_lost or (slot is not None and slot.lost):
            connection.answers_lost = True  # the answers after it wait behind it
            connection.lost_replies.append(reply)
            return
        direction = connection.reply
        if direction.reset_after:  # a reset is due after what is held: this waits behind it
            direction.withheld += reply
            return
        delay = slot.delay if slot is not None else 0.0
        if self._reset_mid_reply or (slot is not None and slot.half):
            half = max(1, len(reply) // 2)
            self._queue(connection, False, reply[:half], delay)
            direction.withheld, direction.reset_after = reply[half:], True
            return
        if slot is not None and slot.drip:  # the bandwidth toxic's shaping, for this reply
            for piece, due in at_rate([(reply, delay)], slot.drip, backlog=0.0):
                self._queue(connection, False, piece, due)
            return
        self._queue(connection, False, reply, delay)

    def _connected(self, connection: _Connection) -> None:
        assert connection.upstream is not None
        error = connection.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._drop(connection, reset=True)
        else:
            connection.connecting = False

    def _flush(
        self, connection: _Connection, direction: _Direction, target: socket.socket, now: float
    ) -> bool:
        """Send what is due, oldest first; pass on an end or a reset. False: dropped."""
        while direction.chunks and direction.chunks[0].due <= now:
            chunk = direction.chunks[0]
            try:
                sent = target.send(chunk.data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(connection, reset=True)
                return False
            direction.buffered -= sent
            if sent < len(chunk.data):
                chunk.data = chunk.data[sent:]
                break
            direction.chunks.popleft()
        if direction.chunks:
            return True
        if direction.reset_after:  # the server reads what went before the reset
            self._drop(connection, reset=True, upstream_ends=direction is connection.request)
            return False
        if direction.close_after:  # limit_data: what it let through is sent, then the close
            self._drop(connection)
            return False
        if direction.eof and not direction.done:
            direction.done = True
            if direction is connection.reply and connection.slow_close > 0:
                self._start_slow_close(connection, now)
            else:
                with contextlib.suppress(OSError):  # that side is already gone
                    target.shutdown(socket.SHUT_WR)
        return True

    def _start_slow_close(self, connection: _Connection, now: float) -> None:
        connection.close_at = now + connection.slow_close
        connection.silent = True
        connection.request = _Direction()
        connection.request.done = True
        upstream, connection.upstream = connection.upstream, None
        if upstream is not None:
            if upstream in connection.registered:
                del connection.registered[upstream]
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(upstream)
            upstream.close()

    def _pump(self, connection: _Connection, now: float) -> None:
        """Move what is due on ``connection``, end it when both sides are done, set interest."""
        if connection.reset_at is not None and now >= connection.reset_at:
            self._drop(connection, reset=True)  # reset_peer
            return
        if connection.timeout_at is not None and now >= connection.timeout_at:
            self._drop(connection)  # timeout: the connection closes, nothing having moved
            return
        if self._mode == "up":
            upstream = connection.upstream
            if (
                connection.flows(request=True)
                and upstream is not None
                and not connection.connecting
                and not self._flush(connection, connection.request, upstream, now)
            ):
                return
            if connection.flows(request=False) and not self._flush(
                connection, connection.reply, connection.client, now
            ):
                return
        if connection.close_at is not None:
            if now >= connection.close_at:
                self._drop(connection)
            else:
                self._interest(connection, now)
            return
        if connection.request.done and connection.reply.done:
            self._drop(connection)
            return
        self._interest(connection, now)

    def _interest(self, connection: _Connection, now: float) -> None:
        up = self._mode == "up"
        requests_flow = up and connection.flows(request=True)
        replies_flow = up and connection.flows(request=False)
        request, reply = connection.request, connection.reply
        client_events = 0
        if requests_flow and not request.eof and request.buffered < _BUFFER_LIMIT:
            client_events |= selectors.EVENT_READ
        if replies_flow and reply.chunks and reply.chunks[0].due <= now:
            client_events |= selectors.EVENT_WRITE
        wanted = {connection.client: client_events}
        upstream = connection.upstream
        if upstream is not None:
            upstream_events = 0
            if connection.connecting:
                upstream_events = selectors.EVENT_WRITE
            else:
                if (
                    replies_flow
                    and not reply.eof
                    and not reply.reset_after
                    and reply.buffered < _BUFFER_LIMIT
                ):
                    upstream_events |= selectors.EVENT_READ
                if requests_flow and request.chunks:
                    upstream_events |= selectors.EVENT_WRITE
            wanted[upstream] = upstream_events
        for sock, events in wanted.items():
            current = connection.registered.get(sock, 0)
            if events == current:
                continue
            role = "client" if sock is connection.client else "upstream"
            if not events:
                self._selector.unregister(sock)
                del connection.registered[sock]
            elif current:
                self._selector.modify(sock, events, (connection, role))
                connection.registered[sock] = events
            else:
                self._selector.register(sock, events, (connection, role))
                connection.registered[sock] = events

    def _next_wake(self, now: float) -> float:
        wake = now + 1.0
        if self._accept_paused_until is not None:
            wake = min(wake, self._accept_paused_until)
        for connection in self._connections:
            if self._mode == "up":
                for direction in (connection.request, connection.reply):
                    due = direction.next_due()
                    if due is not None and due > now:
                        wake = min(wake, due)
            for at in (connection.close_at, connection.timeout_at, connection.reset_at):
                if at is not None:
                    wake = min(wake, at)
        return max(0.0, wake - now)

    def _serve(self) -> None:
        try:
            self._serve_until_closed()
        finally:
            # Here, not in close(): no other thread ever touches a socket the loop uses.
            for connection in list(self._connections):
                self._drop(connection)
            self._listener.close()
            self._selector.close()
            self._wakeup_r.close()

    def _serve_until_closed(self) -> None:
        while True:
            with self._commands_lock:
                self._run_commands()
                if self._closed:
                    return
            now = time.monotonic()
            if self._accept_paused_until is not None and now >= self._accept_paused_until:
                self._accept_paused_until = None
                self._selector.register(self._listener, selectors.EVENT_READ, None)
            for connection in list(self._connections):
                self._pump(connection, now)
            for key, events in self._selector.select(timeout=self._next_wake(now)):
                if key.data == "wakeup":
                    with contextlib.suppress(OSError):
                        self._wakeup_r.recv(4096)
                elif key.data is None:
                    self._accept()
                else:
                    connection, role = key.data
                    if connection.closed:
                        continue
                    if role == "upstream" and connection.connecting:
                        if events & selectors.EVENT_WRITE:
                            self._connected(connection)
                    elif events & selectors.EVENT_READ:
                        self._read(connection, from_client=role == "client")


def _shape(slot: _Slot, fault: Fault, rng: random.Random) -> bool:
    """Set on ``slot`` what ``fault`` (that fired) does to the bytes of its request or reply;
    False for a fault that ends the call instead (an answer, a refusal, a hang)."""
    action, upstream = fault.does, fault.direction == "upstream"
    if isinstance(action, Latency):
        if upstream:
            slot.send_delay += action.delay(rng)
        else:
            slot.delay += action.delay(rng)
    elif isinstance(action, Drip):
        if upstream:
            slot.send_drip = action.bytes_per_second
        else:
            slot.drip = action.bytes_per_second
    elif isinstance(action, HalfReply):
        if upstream:
            slot.send_half = True
        else:
            slot.half = True
    elif fault.loses_answer:
        slot.lost = True
    else:
        return False
    return True


def _client_left(client: socket.socket) -> bool:
    """Whether the client closed or reset its side, with nothing unread before that end."""
    try:
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing waiting: still there
    except OSError:
        return True  # reset
