"""``OutageProxy``: a loopback TCP proxy that can cut, black-hole or slow a connection."""

from __future__ import annotations

import contextlib
import errno
import math
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["OutageProxy"]

_CHUNK = 65536
_BUFFER_LIMIT = 256 * 1024
"""Bytes one direction of a connection holds before the proxy stops reading its source."""
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() then sends RST instead of FIN
_CONNECTING = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN}
_COMMAND_TIMEOUT = 5.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE = 0.1
"""Seconds the proxy stops accepting after running out of descriptors (else it would spin)."""


def _check_seconds(seconds: float) -> None:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"Expected finite seconds >= 0 but got seconds={seconds!r}")


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class _Command:
    """A change of settings, run by the serving thread; the caller waits for ``done``."""

    __slots__ = ("action", "done")

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.done = threading.Event()


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


class OutageProxy:
    """Forward a loopback port to ``(target_host, target_port)``, with faults on demand.

    Faults (Toxiproxy's vocabulary): ``cut()`` resets open connections and refuses new ones
    (the server looks crashed); ``blackhole()`` accepts connections and forwards nothing
    either way, reading nothing, so what is sent waits in the socket buffers (a hung server
    or a dropped route);
    ``latency(seconds)`` delays every reply; ``reset_mid_reply()`` forwards half of the next
    reply, then resets the connection; ``slow_close(seconds)`` keeps a connection the server
    closed open, and silent, for that long; ``restore()`` ends them all.

    Guarantees, under any sequence of fault changes: each direction of each connection
    delivers the bytes it was sent in order, without gaps or duplicates, and at most ends
    early (a reset or a close): a client sees a prefix of what the server sent, never a
    reordered or corrupted stream. Each direction holds about 256 KiB at most; then the
    proxy stops reading its source, so a client that stops reading slows only itself. Every
    fault method has taken effect when it returns, and may be called from any thread.
    ``url`` is ``target_url`` with the proxy's address in it. One thread serves every
    connection with non-blocking sockets; ``close()`` (or leaving the ``with`` block) stops
    it and closes all sockets. After ``close()``, ``mode`` is ``"closed"``, every fault
    method raises ``RuntimeError``, and ``restore()`` and ``close()`` do nothing. Listens
    on 127.0.0.1 only.

    The target's address is resolved once, when the proxy is built: a host that does not
    resolve raises ``OSError`` (``socket.gaierror``) there.

    Raises (fault methods): RuntimeError when the proxy is closed; ValueError for seconds
    that are negative or not finite.
    """

    def __init__(
        self, target_host: str, target_port: int, *, target_url: str | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self._target_url = target_url
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
        self._latency = 0.0
        self._reset_mid_reply = False
        self._slow_close = 0.0
        self.connections = 0
        """Connections accepted so far."""
        self._closed = False
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, "wakeup")
        self._thread = threading.Thread(target=self._serve, name="OutageProxy", daemon=True)
        self._thread.start()

    @classmethod
    def for_url(cls, url: str) -> OutageProxy:
        """A proxy in front of the server of a ``redis://`` or ``rediss://`` URL."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"the URL needs a host and a port: {parts.scheme}://{parts.hostname}")
        return cls(parts.hostname, parts.port, target_url=url)

    # -- addresses ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The target URL pointed at the proxy (``redis://127.0.0.1:<port>`` without one)."""
        if self._target_url is None:
            return f"redis://{self.host}:{self.port}/0"
        parts = urlsplit(self._target_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{self.host}:{self.port}" if userinfo else f"{self.host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def mode(self) -> str:
        """``"up"``, ``"cut"``, ``"blackhole"``, or ``"closed"`` once the proxy stopped serving."""
        if self._closed or not self._thread.is_alive():
            return "closed"
        return self._mode

    def __repr__(self) -> str:
        return (
            f"<OutageProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]} {self.mode}>"
        )

    # -- faults -------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection and refuse new ones (accept, then reset) until ``restore()``.

        Bytes the proxy held for a connection are dropped with it.
        """
        self._command(self._do_cut)

    def blackhole(self) -> None:
        """Forward nothing either way, on open and new connections, until ``restore()``.

        The proxy stops reading from every connection, so what either side sends from now
        on waits in the operating system's socket buffers, not in the proxy (which keeps
        only the bytes it had already read and not yet forwarded). What a client sees:
        connecting succeeds (the kernel completes the handshake; the proxy accepts but does
        not connect to the server); its writes succeed until the buffers on the way are full
        (a few MiB on loopback, depending on the kernel's settings), then block or time out;
        nothing is answered, and nothing is ended: a client or server that closes is noticed
        only after ``restore()``. After ``restore()`` every byte sent meanwhile is delivered,
        in order, both ways, as a route that comes back would; connections accepted meanwhile
        connect to the server then.
        """
        self._command(self._do_blackhole)

    def latency(self, seconds: float) -> None:
        """Delay each reply chunk read from now on by ``seconds`` (0 ends it).

        Chunks already held keep their time, and a later chunk never overtakes an earlier one.
        """
        _check_seconds(seconds)
        self._command(lambda: setattr(self, "_latency", float(seconds)))

    def reset_mid_reply(self) -> None:
        """From now on, forward half of each connection's next reply, then reset it (TCP RST).

        The bytes held before that half are delivered first. Lasts until ``restore()``.
        """
        self._command(lambda: setattr(self, "_reset_mid_reply", True))

    def slow_close(self, seconds: float) -> None:
        """When the server closes a connection, keep the client's side open that long.

        The client first gets every byte the server sent, then silence, then the close; what
        it sends meanwhile is read and dropped (the server is gone).
        """
        _check_seconds(seconds)
        self._command(lambda: setattr(self, "_slow_close", float(seconds)))

    def restore(self) -> None:
        """End every fault: forward normally, without added latency, from now on.

        Held bytes are released at once, in order; connections in a slow close are closed;
        connections accepted during a black hole connect to the server. A reset that
        ``reset_mid_reply()`` had scheduled but not yet sent is cancelled: the rest of that
        reply follows, and the connection carries on. After ``close()`` it does nothing
        (there is no fault left to end), so it is safe in clean-up code.
        """
        self._command(self._do_restore, if_closed="ignore")

    def _command(self, action: Callable[[], None], *, if_closed: str = "raise") -> None:
        """Run ``action`` in the serving thread and wait until it has run.

        Raises:
            RuntimeError: the proxy is closed (unless ``if_closed="ignore"``: then nothing
                happens), or its serving thread ended before running ``action``.
        """
        command = _Command(action)
        with self._commands_lock:
            if self._closed or not self._thread.is_alive():
                if if_closed == "ignore":
                    return
                raise RuntimeError(f"{self!r} is closed")
            self._commands.append(command)
        self._wake()
        # Commands queued before close() are run before the thread stops, so only a crash
        # of the serving thread leaves one undone.
        while not command.done.wait(0.05):
            if not self._thread.is_alive() and not command.done.is_set():
                raise RuntimeError(f"{self!r}: stopped serving before the change took effect")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closing, or already woken (buffer full)
            self._wakeup_w.send(b"x")

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and close every socket; return once the serving thread has ended.

        Open connections are closed (the client reads an end of stream), connections not
        yet accepted are reset, and the port is released. Safe to call again, from any
        thread: later calls do nothing. Afterwards every fault method raises RuntimeError.

        Raises:
            RuntimeError: the serving thread did not end within 5 s (a bug in the proxy).
        """
        with self._commands_lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        self._thread.join(timeout=_COMMAND_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"{self!r}: the serving thread did not stop")
        self._wakeup_w.close()

    @property
    def running(self) -> bool:
        """Whether the serving thread is alive."""
        return self._thread.is_alive()

    def __enter__(self) -> OutageProxy:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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

    def _do_restore(self) -> None:
        self._mode = "up"
        self._latency = 0.0
        self._reset_mid_reply = False
        self._slow_close = 0.0
        for connection in list(self._connections):
            connection.request.release()
            connection.reply.release()
            connection.slow_close = 0.0
            if connection.close_at is not None:
                connection.close_at = 0.0
            if connection.deferred:
                connection.deferred = False
                self._connect(connection)

    # -- the serving thread ---------------------------------------------------------------

    def _drop(self, connection: _Connection, *, reset: bool = False) -> None:
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
            if reset:
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
        self._connections.add(connection)
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
        direction = connection.request if from_client else connection.reply
        if not data:
            direction.eof = True
            if not from_client:
                connection.slow_close = self._slow_close
            return
        if not from_client and self._reset_mid_reply:
            half = max(1, len(data) // 2)
            data, direction.withheld = data[:half], data[half:]
            direction.reset_after = True
        delay = 0.0 if from_client else self._latency
        direction.add(data, time.monotonic() + delay if delay > 0 else 0.0)

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
        if direction.reset_after:
            self._drop(connection, reset=True)
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
        if self._mode == "up":
            upstream = connection.upstream
            if (
                upstream is not None
                and not connection.connecting
                and not self._flush(connection, connection.request, upstream, now)
            ):
                return
            if not self._flush(connection, connection.reply, connection.client, now):
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
        request, reply = connection.request, connection.reply
        client_events = 0
        if up and not request.eof and request.buffered < _BUFFER_LIMIT:
            client_events |= selectors.EVENT_READ
        if up and reply.chunks and reply.chunks[0].due <= now:
            client_events |= selectors.EVENT_WRITE
        wanted = {connection.client: client_events}
        upstream = connection.upstream
        if upstream is not None:
            upstream_events = 0
            if connection.connecting:
                upstream_events = selectors.EVENT_WRITE
            elif up:
                if not reply.eof and not reply.reset_after and reply.buffered < _BUFFER_LIMIT:
                    upstream_events |= selectors.EVENT_READ
                if request.chunks:
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
            if connection.close_at is not None:
                wake = min(wake, connection.close_at)
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
