"""``OutageProxy``: a loopback TCP proxy that can cut, black-hole or slow a connection.

This module is the public API: the fault methods, addresses and life cycle. Each fault
method queues a command for the serving thread and waits until it ran; the thread itself
(the relay loop) is in ``_proxy_relay``, the bytes each connection holds in ``_proxy_streams``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from remote_cache.testing._proxy_relay import ProxyRelay, _Command
from remote_cache.testing._proxy_toxics import (
    Toxic,
    check_direction,
    check_number,
    check_toxicity,
)
from remote_cache.testing.faults import Schedule

__all__ = ["OutageProxy"]

_COMMAND_TIMEOUT = 5.0


def _check_seconds(seconds: float) -> None:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"Expected finite seconds >= 0 but got seconds={seconds!r}")


class OutageProxy(ProxyRelay):
    """Forward a loopback port to ``(target_host, target_port)``, with faults on demand.

    Faults (Toxiproxy's vocabulary): ``cut()`` (``down()``) resets open connections and
    refuses new ones (the server looks crashed); ``blackhole()`` accepts connections and
    forwards nothing either way, reading nothing, so what is sent waits in the socket buffers
    (a hung server or a dropped route); per direction and with a per-connection
    ``toxicity``: ``latency(seconds, jitter=...)``, ``bandwidth(bytes_per_second)``,
    ``slicer(average_size, ...)``, ``limit_data(size)``; per connection: ``timeout(seconds)``,
    ``reset_peer(seconds)``; ``reset_mid_reply()`` forwards half of the next
    reply, then resets the connection; ``slow_close(seconds)`` keeps a connection the server
    closed open, and silent, for that long; ``apply(schedule)`` acts per command (a fault
    schedule of ``remote_cache.testing.faults``); ``restore()`` ends them all.

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
        self.seed = 0
        """The seed of the toxics' draws (toxicity, jitter, slice sizes) made from now on."""
        super().__init__(target_host, target_port)

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

    def latency(
        self,
        seconds: float,
        *,
        jitter: float = 0.0,
        direction: str = "downstream",
        toxicity: float = 1.0,
    ) -> None:
        """Delay each chunk read from now on by ``seconds``, give or take ``jitter`` (0 ends it).

        ``direction``: "downstream" (the server's replies, the default) or "upstream" (the
        client's requests). ``toxicity``: the probability it applies to a connection (drawn
        once per connection, from ``seed``). Chunks already held keep their time, and a
        later chunk never overtakes an earlier one (jitter never reorders).
        """
        _check_seconds(seconds)
        _check_seconds(jitter)
        self._toxic("latency", direction, toxicity, seconds=seconds, jitter=jitter)

    def bandwidth(
        self, bytes_per_second: float, *, direction: str = "downstream", toxicity: float = 1.0
    ) -> None:
        """Let at most ``bytes_per_second`` through, queued one after another (0 ends it).

        Toxiproxy's ``bandwidth`` (which counts in KB/s): a slow link.
        """
        check_number("bytes_per_second", bytes_per_second)
        self._toxic("bandwidth", direction, toxicity, bytes_per_second=bytes_per_second)

    def slicer(
        self,
        average_size: int,
        *,
        size_variation: int = 0,
        delay: float = 0.0,
        direction: str = "downstream",
        toxicity: float = 1.0,
    ) -> None:
        """Cut each chunk into slices of ``average_size`` bytes, give or take
        ``size_variation``, each ``delay`` seconds after the one before (0 size ends it).

        What a client meets when a reply arrives in many small reads.
        """
        check_number("average_size", average_size)
        check_number("size_variation", size_variation)
        _check_seconds(delay)
        if size_variation > average_size:
            raise ValueError(
                f"Expected size_variation <= average_size but got {size_variation} > {average_size}"
            )
        self._toxic(
            "slicer", direction, toxicity,
            average_size=average_size, size_variation=size_variation, delay=delay,
        )  # fmt: skip

    def limit_data(
        self, size: int, *, direction: str = "downstream", toxicity: float = 1.0
    ) -> None:
        """Close a connection once ``size`` bytes went its way from now on (0 ends it)."""
        check_number("size", size)
        self._toxic("limit_data", direction, toxicity, bytes=size)

    def timeout(
        self, seconds: float = 0.0, *, direction: str | None = None, toxicity: float = 1.0
    ) -> None:
        """Stop the bytes of a connection, and close it after ``seconds`` (0: never).

        Toxiproxy's ``timeout``: open connections and new ones stop now, both ways, or only
        the requests (``direction="upstream"``) or the replies ("downstream": the server
        does the work, its answers never come). ``restore()`` closes the connections it
        stopped, as removing Toxiproxy's toxic does (what was held is dropped).
        """
        _check_seconds(seconds)
        self._toxic("timeout", direction, toxicity, seconds=seconds, keep=True)

    def reset_peer(self, seconds: float = 0.0, *, toxicity: float = 1.0) -> None:
        """Reset connections (TCP RST) ``seconds`` after they open, or from now for open ones."""
        _check_seconds(seconds)
        self._toxic("reset_peer", None, toxicity, seconds=seconds, keep=True)

    def down(self) -> None:
        """Toxiproxy's name for ``cut()``: the server looks crashed."""
        self.cut()

    def _toxic(
        self,
        kind: str,
        direction: str | None,
        toxicity: float,
        *,
        keep: bool = False,
        **settings: float,
    ) -> None:
        """Put a toxic in place of the one of its kind and direction; a zero first setting
        (unless ``keep``) removes it."""
        if direction is not None:
            check_direction(direction)
        check_toxicity(toxicity)
        first = next(iter(settings.values()))
        toxic = None
        if keep or first:
            toxic = Toxic(kind, direction, dict(settings), toxicity, seed=self.seed)
        self._command(lambda: self._do_toxic(toxic, kind, direction))

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

    def apply(self, schedule: Schedule) -> Schedule:
        """Apply ``schedule`` to the commands of every connection, open and new; returns it.

        The proxy reads requests and replies as RESP: a fault that fires on a data command
        (``GET``, ``SET``, ``MGET``, ``MSET``) answers its error reply in the request's turn
        (``Reply``), delays the reply (``Latency``) or trickles it (``Drip``), sends half of
        it then resets (``HalfReply``), resets the connection (``Refuse``), or stalls the
        connection (``Hang``: nothing more is read until ``restore()``); the client meets
        each over the network, with its own timeouts, in real time. A connection that is
        not RESP (TLS) is relayed untouched. ``ValueError`` for a fault the proxy cannot
        simulate; ``restore()`` ends the schedule.
        """
        if not isinstance(schedule, Schedule):
            raise TypeError(f"Expected a Schedule but got {schedule!r}")
        schedule.check_layer("proxy")
        schedule.start()
        self._command(lambda: setattr(self, "_schedule", schedule))
        return schedule

    @property
    def schedule(self) -> Schedule | None:
        """The ``Schedule`` applied; its ``fired`` logs every fault that fired."""
        return self._schedule

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
