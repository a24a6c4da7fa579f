"""Circuit breakers: after a transport failure, skip the network for a while."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable

from remote_cache import _clock
from remote_cache._guard import Guard
from remote_cache._process import at_fork, on_reset
from remote_cache.exceptions import BackendCommandError, BackendUnavailableError

__all__ = ["DEFAULT_LEASE", "CircuitBreaker", "breaker_for", "reset_breakers"]


DEFAULT_LEASE = 60.0
"""Seconds a probe may go without reporting before it counts as lost (``CircuitBreaker``)."""


class CircuitBreaker:
    """Closed (calls go through), open (calls are skipped) or half-open (one probe goes).

    ``record_failure`` opens it. While open, ``allow(retry_after)`` is False until
    ``retry_after`` seconds have passed since the failure; then it lets exactly one probe
    through. The probe's ``record_success`` closes it, its ``record_failure`` opens it
    again, and ``release_probe`` (a probe interrupted by ``KeyboardInterrupt`` or another
    ``BaseException``) lets the next call probe. ``retry_after=None`` never lets a probe
    through (upstream's "never again"); ``retry_after=0`` lets one through on every call.

    A probe has a lease (``lease`` seconds, given to ``allow`` or else to the constructor):
    a probe that has not reported within it is lost (an interrupt landed before its caller's
    ``try``, its thread died, its greenlet was killed), and the next call probes instead.
    ``admit`` numbers the probes; a report that names a probe (``record_failure(probe)``,
    ``release_probe(probe)``) frees the slot only if that probe still holds it, so a stale
    probe's late failure reopens the breaker without freeing a newer probe's slot, and its
    late interrupt frees nothing. Any success closes the breaker: the server answered.

    ``clock`` defaults to the process's clock (``time.monotonic``, or the clock a test
    installed: ``remote_cache.testing.VirtualClock``), read whenever the breaker is open.

    Thread-safe, and fork-safe: in a forked child every breaker keeps its state, gets a new
    lock, and forgets a probe that a thread of the parent had under way. A closed breaker
    answers without taking its lock. Re-entrant: a call made by code that interrupts this
    thread inside the breaker's lock (a signal handler, a ``__del__``) never waits for it:
    ``admit`` skips that call (None), and a report it makes is applied when the interrupted
    frame leaves the lock. ``reentered`` counts the calls skipped so.
    """

    def __init__(
        self, clock: Callable[[], float] = _clock.monotonic, *, lease: float = DEFAULT_LEASE
    ) -> None:
        self._clock = clock
        self.lease = lease
        """Seconds a probe may go without reporting before it counts as lost."""
        self._lock = Guard()
        self._opened_at: float | None = None
        self._probe = 0  # the number of the probe under way; 0: none
        self._probe_at = 0.0  # when it was handed out
        self._probes = 0  # probes handed out so far (numbers them)
        self.failures = 0
        """Transport failures recorded while the breaker was closed or probing."""
        _every_breaker.add(self)

    @property
    def reentered(self) -> int:
        """Calls skipped because this thread was already inside the breaker (a signal handler)."""
        return self._lock.refused

    @property
    def is_open(self) -> bool:
        """Whether calls are being skipped (or one probe is under way)."""
        return self._opened_at is not None

    def allow(self, retry_after: float | None, lease: float | None = None) -> bool:
        """Whether a call may touch the network now (``admit`` says whether as a probe)."""
        if self._opened_at is None:
            return True
        return self.admit(retry_after, lease) is not None

    def admit(self, retry_after: float | None, lease: float | None = None) -> int | None:
        """Let a call through: None to skip it, 0 through a closed breaker, else its probe number.

        A probe handed out more than ``lease`` seconds ago (default: the breaker's ``lease``)
        without a report is lost: its slot goes to this call.
        """
        if self._opened_at is None:
            return 0
        if retry_after is None:
            return None
        if not self._lock.enter():
            return None  # re-entered from a hook of this thread: skipped, never waited for
        try:
            return self._admit(retry_after, lease)
        finally:
            self._lock.leave()

    def _admit(self, retry_after: float, lease: float | None) -> int | None:
        """``admit``'s decision; hold the lock."""
        if self._opened_at is None:
            return 0
        now = self._clock()
        if self._probe and now - self._probe_at < (self.lease if lease is None else lease):
            return None
        if now - self._opened_at < retry_after:
            return None
        self._probes += 1
        self._probe = self._probes
        self._probe_at = now
        return self._probe

    def record_success(self) -> bool:
        """Close the breaker; return True when it was open (the server came back).

        Made from inside the breaker's lock (a signal handler), it is applied when the
        interrupted frame leaves the lock, and returns False.
        """
        if self._opened_at is None:
            return False
        return self._report(self._close)

    def _close(self) -> bool:
        was_open = self._opened_at is not None
        self._opened_at = None
        self._probe = 0
        return was_open

    def record_failure(self, probe: int | None = None) -> bool:
        """Open the breaker; return True when it was closed (a new outage began).

        Frees the probe slot when ``probe`` (a number from ``admit``) holds it, or when
        ``probe`` is None; a failure of another call leaves a probe under way to report.
        Made from inside the breaker's lock (a signal handler), it is applied when the
        interrupted frame leaves the lock, and returns False.
        """
        return self._report(lambda: self._open(probe))

    def _open(self, probe: int | None) -> bool:
        was_closed = self._opened_at is None
        self._opened_at = self._clock()
        if probe is None or probe == self._probe:
            self._probe = 0
        self.failures += 1
        return was_closed

    def record_error(self, error: BaseException, probe: int | None = None) -> bool:
        """Tell the breaker what a failed call says about the server; True when it opened.

        A lost server (``BackendUnavailableError``) opens it; an error reply
        (``BackendCommandError``) closes it, the server answered; anything else (a limit
        of this process's own, an interrupt) says nothing: the probe it ended lets the next
        call probe.
        """
        if isinstance(error, BackendUnavailableError):
            return self.record_failure(probe)
        if isinstance(error, BackendCommandError):
            self.record_success()
        else:
            self.release_probe(probe)
        return False

    def release_probe(self, probe: int | None = None) -> None:
        """Free the probe slot without a verdict: the next call after the cool-down probes.

        With ``probe`` (a number from ``admit``), only if that probe still holds the slot: a
        stale probe, or a call that was not a probe (0), frees nothing.
        """
        if self._opened_at is None:
            return
        self._report(lambda: self._free_probe(probe))

    def _free_probe(self, probe: int | None) -> bool:
        if probe is None or probe == self._probe:
            self._probe = 0
        return False

    def _report(self, change: Callable[[], bool]) -> bool:
        """Apply ``change`` under the lock, or defer it when this thread holds the lock."""
        if not self._lock.enter():
            self._lock.defer(change)
            return False
        try:
            return change()
        finally:
            self._lock.leave()

    def reset(self) -> None:
        """Close the breaker and forget its failures."""
        self._report(self._forget)

    def _forget(self) -> bool:
        self._opened_at = None
        self._probe = 0
        self.failures = 0
        return False

    def __repr__(self) -> str:
        state = "closed" if self._opened_at is None else "open"
        return f"<CircuitBreaker {state} failures={self.failures}>"


_every_breaker: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
_registry_lock = Guard()
"""Serializes ``reset_breakers``; ``breaker_for`` needs no lock (see there)."""
_registry: dict[Hashable, CircuitBreaker] = {}


def breaker_for(server: Hashable) -> CircuitBreaker:
    """Return the process-wide breaker of ``server``, creating it on first use."""
    breaker = _registry.get(server)
    if breaker is None:
        # One atomic dict operation (the key is a tuple of built-in values): threads, and a
        # signal handler landing anywhere here, all get the same breaker, without a lock
        # that a handler could find held by the frame it interrupted.
        breaker = _registry.setdefault(server, CircuitBreaker())
    return breaker


@on_reset
def reset_breakers() -> None:
    """Close every process-wide breaker (for tests, and after reconfiguring servers)."""
    with _registry_lock:
        for breaker in list(_registry.values()):
            breaker.reset()


def _after_fork_in_child() -> None:
    """New locks for a forked child: a thread that held one in the parent does not exist here."""
    global _registry_lock  # noqa: PLW0603 - the parent's may be held by a thread not here
    _registry_lock = Guard()
    for breaker in list(_every_breaker):
        breaker._lock = Guard()
        breaker._probe = 0  # the parent's probe will never report here


at_fork(after_in_child=_after_fork_in_child)
