"""The clock the process's caches read: the system's, unless a test installs its own.

What measures time that a test may want to control reads it through here: the circuit
breakers' cool-downs, LocalCache's sweep times and temporary-file ages, the in-memory fakes'
expiry and the fault injector's latency (``remote_cache.testing.VirtualClock`` installs a
clock the test advances). Network deadlines never do: a socket waits in real time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from remote_cache._process import on_reset

__all__ = ["Clock", "install", "installed", "monotonic", "sleep", "uninstall", "wall"]


class Clock(Protocol):
    """A clock: seconds that only go forward, seconds since the epoch, and a way to wait."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes back."""
        ...

    def time(self) -> float:
        """Seconds since the epoch, as ``time.time()``."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


_installed: Clock | None = None
_lock = threading.Lock()


def monotonic() -> float:
    """The installed clock's ``monotonic()``, else ``time.monotonic()``."""
    clock = _installed
    return time.monotonic() if clock is None else clock.monotonic()


def wall() -> float:
    """The installed clock's ``time()``, else ``time.time()``."""
    clock = _installed
    return time.time() if clock is None else clock.time()


def sleep(seconds: float) -> None:
    """The installed clock's ``sleep(seconds)``, else ``time.sleep(seconds)``."""
    clock = _installed
    if clock is None:
        time.sleep(seconds)
    else:
        clock.sleep(seconds)


def installed() -> Clock | None:
    """The clock installed now, or None for the system's."""
    return _installed


def install(clock: Clock) -> None:
    """Make ``clock`` the process's clock until ``uninstall``; one at a time."""
    global _installed  # noqa: PLW0603 - the process's one clock, read on every timed call
    with _lock:
        if _installed is not None and _installed is not clock:
            raise RuntimeError(f"a clock is installed already ({_installed!r}): uninstall it first")
        _installed = clock


def uninstall(clock: Clock | None = None) -> None:
    """Go back to the system's clock (only if ``clock``, when given, is the one installed)."""
    global _installed  # noqa: PLW0603
    with _lock:
        if clock is None or _installed is clock:
            _installed = None


# A full reset (between tests) drops a clock a test left installed; a reset inside a test
# (counters=False: a fixture pointing the caches elsewhere) keeps the test's clock, as it
# keeps its counters.
on_reset(uninstall, counters=True)
