"""``VirtualClock``: time that passes only when the test says so."""

from __future__ import annotations

import math
import threading
import time
from types import TracebackType

from remote_cache import _clock

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock the test moves with ``advance(seconds)``; nothing else moves it.

    Installed (``with VirtualClock() as clock:``, ``install()``, or the ``remote_cache_clock``
    fixture), it is what the process's caches read instead of the system's clock: circuit
    breakers' cool-downs, the in-memory fakes' expiry, the fault injector's latency (a
    ``sleep`` on it advances it at once) and LocalCache's sweep times and temporary-file ages.
    Network deadlines stay in real time: a socket cannot wait on a virtual clock.

    It starts at the system's readings when it is made, so that times taken before it was
    installed stay comparable. Thread-safe. One clock at a time is installed in a process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._monotonic = time.monotonic()
        self._wall = time.time()
        self.elapsed = 0.0
        """Seconds advanced since the clock was made (by ``advance`` and ``sleep``)."""
        self.slept = 0.0
        """Seconds of ``sleep`` on this clock: what the code under test waited."""

    def monotonic(self) -> float:
        """Seconds that only go forward, as ``time.monotonic()``."""
        return self._monotonic

    def time(self) -> float:
        """Seconds since the epoch, as ``time.time()``."""
        return self._wall

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (0 or more, finite)."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise TypeError(f"Expected seconds as a number but got {seconds!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"Expected 0 <= seconds < inf but got seconds={seconds!r}")
        with self._lock:
            self._monotonic += seconds
            self._wall += seconds
            self.elapsed += seconds

    def sleep(self, seconds: float) -> None:
        """What code sleeping on the clock gets: the clock moves ``seconds`` on, at once."""
        self.advance(seconds)
        with self._lock:
            self.slept += seconds

    def install(self) -> VirtualClock:
        """Make this the process's clock until ``uninstall()``; returns it."""
        _clock.install(self)
        return self

    def uninstall(self) -> None:
        """Give the process its system clock back (nothing if another clock is installed)."""
        _clock.uninstall(self)

    @property
    def installed(self) -> bool:
        """Whether this is the process's clock now."""
        return _clock.installed() is self

    def __enter__(self) -> VirtualClock:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def __repr__(self) -> str:
        state = "installed" if self.installed else "not installed"
        return f"<VirtualClock +{self.elapsed:g}s, {state}>"
