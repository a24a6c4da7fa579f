"""Circuit breakers: after a transport failure, skip the network for a while."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable

from remote_cache._fork import after_fork_in_child

__all__ = ["CircuitBreaker", "breaker_for", "reset_breakers"]


class CircuitBreaker:
    """Closed (calls go through), open (calls are skipped) or half-open (one probe goes).

    ``record_failure`` opens it. While open, ``allow(retry_after)`` is False until
    ``retry_after`` seconds have passed since the failure; then it lets exactly one probe
    through. The probe's ``record_success`` closes it, its ``record_failure`` opens it
    again, and ``release_probe`` (a probe interrupted by ``KeyboardInterrupt`` or another
    ``BaseException``) lets the next call probe. ``retry_after=None`` never lets a probe
    through (upstream's "never again"); ``retry_after=0`` lets one through on every call.
    Thread-safe, and fork-safe: in a forked child every breaker keeps its state, gets a new
    lock, and forgets a probe that a thread of the parent had under way.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._probing = False
        self.failures = 0
        """Transport failures recorded while the breaker was closed or probing."""
        _every_breaker.add(self)

    @property
    def is_open(self) -> bool:
        """Whether calls are being skipped (or one probe is under way)."""
        return self._opened_at is not None

    def allow(self, retry_after: float | None) -> bool:
        """Whether a call may touch the network now."""
        if self._opened_at is None:
            return True
        if retry_after is None:
            return False
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < retry_after:
                return False
            self._probing = True
            return True

    def record_success(self) -> bool:
        """Close the breaker; return True when it was open (the server came back)."""
        if self._opened_at is None:
            return False
        with self._lock:
            was_open = self._opened_at is not None
            self._opened_at = None
            self._probing = False
            return was_open

    def record_failure(self) -> bool:
        """Open the breaker; return True when it was closed (a new outage began)."""
        with self._lock:
            was_closed = self._opened_at is None
            self._opened_at = self._clock()
            self._probing = False
            self.failures += 1
            return was_closed

    def release_probe(self) -> None:
        """Free the probe slot without a verdict: the next call after the cool-down probes."""
        if self._opened_at is None:
            return
        with self._lock:
            self._probing = False

    def reset(self) -> None:
        """Close the breaker and forget its failures."""
        with self._lock:
            self._opened_at = None
            self._probing = False
            self.failures = 0

    def __repr__(self) -> str:
        state = "closed" if self._opened_at is None else "open"
        return f"<CircuitBreaker {state} failures={self.failures}>"


_every_breaker: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
_registry_lock = threading.Lock()
_registry: dict[Hashable, CircuitBreaker] = {}


def breaker_for(server: Hashable) -> CircuitBreaker:
    """Return the process-wide breaker of ``server``, creating it on first use."""
    breaker = _registry.get(server)
    if breaker is None:
        with _registry_lock:
            breaker = _registry.setdefault(server, CircuitBreaker())
    return breaker


def reset_breakers() -> None:
    """Close every process-wide breaker (for tests, and after reconfiguring servers)."""
    with _registry_lock:
        for breaker in _registry.values():
            breaker.reset()


def _after_fork_in_child() -> None:
    """New locks for a forked child: a thread that held one in the parent does not exist here."""
    global _registry_lock  # noqa: PLW0603 - the parent's may be held by a thread not here
    _registry_lock = threading.Lock()
    for breaker in list(_every_breaker):
        breaker._lock = threading.Lock()
        breaker._probing = False  # the parent's probe will never report here


after_fork_in_child(_after_fork_in_child)
