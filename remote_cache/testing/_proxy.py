"""``OutageProxy``: a loopback TCP proxy that can cut, black-hole or slow a connection."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import socket
import struct
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["OutageProxy"]

_CHUNK = 65536
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() then sends RST instead of FIN


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class OutageProxy:
    """Forward a loopback port to ``(target_host, target_port)``, with faults on demand.

    Faults (Toxiproxy's vocabulary): ``cut()`` resets open connections and refuses new ones
    (the server looks crashed); ``blackhole()`` accepts connections and never answers (a
    hung server or a dropped route); ``latency(seconds)`` delays every reply;
    ``reset_mid_reply()`` forwards half of the next reply, then resets the connection;
    ``slow_close(seconds)`` keeps a connection the server closed open, and silent, for that
    long; ``restore()`` ends them. ``url`` is ``target_url`` with the proxy's address in it.
    One thread serves every connection; ``close()`` (or leaving the ``with`` block) stops it
    and closes all sockets. Listens on 127.0.0.1 only.
    """

    def __init__(
        self, target_host: str, target_port: int, *, target_url: str | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self._target_url = target_url
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket | None] = {}
        self._delayed: list[tuple[float, int, socket.socket, bytes]] = []
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._mode = "up"
        self._latency = 0.0
        self._reset_mid_reply = False
        self._slow_close = 0.0
        self._closing: list[tuple[float, socket.socket]] = []
        self.connections = 0
        """Connections accepted so far."""
        self._stopping = False
        self._wakeup_r, self._wakeup_w = socket.socketpair()
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
        """``"up"``, ``"cut"`` or ``"blackhole"``."""
        return self._mode

    def __repr__(self) -> str:
        return (
            f"<OutageProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]} {self._mode}>"
        )

    # -- faults -------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until ``restore()``."""
        self._command("cut")

    def blackhole(self) -> None:
        """Accept connections but never forward a byte either way, until ``restore()``."""
        self._command("blackhole")

    def latency(self, seconds: float) -> None:
        """Delay each reply by ``seconds`` (0 ends it)."""
        if seconds < 0:
            raise ValueError(f"Expected seconds >= 0 but got seconds={seconds!r}")
        with self._lock:
            self._latency = float(seconds)

    def reset_mid_reply(self) -> None:
        """Forward half of the next reply on each connection, then reset it (TCP RST)."""
        with self._lock:
            self._reset_mid_reply = True

    def slow_close(self, seconds: float) -> None:
        """When the server closes a connection, keep the client's side open that long."""
        if seconds < 0:
            raise ValueError(f"Expected seconds >= 0 but got seconds={seconds!r}")
        with self._lock:
            self._slow_close = float(seconds)

    def restore(self) -> None:
        """End every fault: forward normally, without added latency."""
        with self._lock:
            self._latency = 0.0
            self._reset_mid_reply = False
            self._slow_close = 0.0
        self._command("up")

    def _command(self, mode: str) -> None:
        with self._lock:
            self._mode = mode
        self._wake()
        if mode == "cut":
            # Wait until the serving thread has reset what was open.
            deadline = time.monotonic() + 2
            while self._peers and time.monotonic() < deadline and self._thread.is_alive():
                time.sleep(0.005)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closing
            self._wakeup_w.send(b"x")

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and close every socket."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        for sock in list(self._peers):
            sock.close()
        self._peers.clear()
        self._listener.close()
        self._selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()

    @property
    def running(self) -> bool:
        """Whether the serving thread is alive."""
        return self._thread.is_alive()

    def __enter__(self) -> OutageProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the serving thread ---------------------------------------------------------------

    def _drop(self, sock: socket.socket, *, reset: bool = False) -> None:
        peer = self._peers.pop(sock, None)
        for each in (sock, peer):
            if each is None:
                continue
            self._peers.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            if reset:
                _reset(each)
            else:
                each.close()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.connections += 1
        if self._mode == "cut":
            _reset(client)
            return
        upstream: socket.socket | None = None
        if self._mode == "up":
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(client)
                return
            upstream.setblocking(False)
            self._peers[upstream] = client
            self._selector.register(upstream, selectors.EVENT_READ, "upstream")
        client.setblocking(False)
        self._peers[client] = upstream
        self._selector.register(client, selectors.EVENT_READ, "client")

    def _forward(self, sock: socket.socket, role: str) -> None:
        try:
            data = sock.recv(_CHUNK)
        except OSError:
            data = b""
        if not data:
            client = self._peers.get(sock)
            if role == "upstream" and self._slow_close > 0 and client is not None:
                # The server hung up; the client hears of it only later.
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
                sock.close()
                self._peers.pop(sock, None)
                self._peers[client] = None
                self._closing.append((time.monotonic() + self._slow_close, client))
                return
            self._drop(sock)
            return
        peer = self._peers.get(sock)
        if self._mode == "blackhole" or peer is None:
            return  # swallowed: the other side never hears of it
        if role == "upstream" and self._reset_mid_reply:
            self._send(peer, data[: max(1, len(data) // 2)])
            self._drop(sock, reset=True)
            return
        delay = self._latency if role == "upstream" else 0.0
        if delay > 0:
            due = time.monotonic() + delay
            heapq.heappush(self._delayed, (due, next(self._sequence), peer, data))
            return
        self._send(peer, data)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.setblocking(True)
            sock.sendall(data)
            sock.setblocking(False)
        except OSError:
            self._drop(sock)

    def _close_due(self) -> float | None:
        now = time.monotonic()
        for due, sock in [entry for entry in self._closing if entry[0] <= now]:
            self._closing.remove((due, sock))
            if sock in self._peers:
                self._drop(sock)
        return min((due for due, _ in self._closing), default=None)

    def _flush_delayed(self) -> float | None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, sock, data = heapq.heappop(self._delayed)
            if sock in self._peers and self._mode == "up":
                self._send(sock, data)
        return self._delayed[0][0] - now if self._delayed else None

    def _serve(self) -> None:
        while not self._stopping:
            if self._mode == "cut" and self._peers:
                for sock in list(self._peers):
                    if sock in self._peers:
                        self._drop(sock, reset=True)
                self._delayed.clear()
            waits = [w for w in (self._flush_delayed(), self._close_due()) if w is not None]
            timeout = max(0.0, min(waits)) if waits else 0.5
            for key, _ in self._selector.select(timeout=timeout):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                if key.data == "wakeup":
                    with contextlib.suppress(OSError):  # closing
                        ready.recv(1024)
                elif ready is self._listener:
                    self._accept()
                elif ready in self._peers:
                    self._forward(ready, key.data)
