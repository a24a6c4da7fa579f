"""A deadline on each call the conformance suite makes to a backend under test.

A call that never returns (a lock never released, a socket read without a timeout) would hang
the suite. ``bounded(operation)`` arms an alarm (``SIGALRM``) for the call; past the deadline
the call is interrupted with ``CallOverdue``, a ``BaseException`` so that neither the
backend's nor the cache's own ``except Exception`` handlers, nor Hypothesis (which would
shrink it, waiting the deadline again each time), swallow it. The checks turn it into an
``AssertionError`` naming the call. Only the main thread can take a signal: elsewhere, and
where there is no ``setitimer`` (Windows), calls are unbounded. An alarm set by someone else
(pytest-timeout's) is kept: when it is due first, this one is not armed; otherwise it is put
back afterwards, less the time the call took.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "DEFAULT_CALL_DEADLINE",
    "CallOverdue",
    "bounded",
    "call_deadline",
    "call_deadline_seconds",
    "overdue_message",
]

DEFAULT_CALL_DEADLINE = 10.0
"""Seconds a backend call under the suite may take before it fails its check."""

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "remote_cache_call_deadline", default=DEFAULT_CALL_DEADLINE
)


class CallOverdue(BaseException):
    """A backend call under the suite did not return within its deadline."""

    def __init__(self, operation: str, seconds: float) -> None:
        super().__init__(operation, seconds)
        self.operation = operation
        self.seconds = seconds


def overdue_message(overdue: CallOverdue) -> str:
    """What a check says of a call past its deadline."""
    return (
        f"{overdue.operation} did not return within {overdue.seconds:g} s (the suite's "
        "call_deadline): a lock never released, or a socket read without a timeout? A "
        "backend's calls must end, by an answer or a BackendError"
    )


@contextlib.contextmanager
def call_deadline(seconds: float | None) -> Iterator[None]:
    """Give the calls made in the block ``seconds`` each (None: unbounded)."""
    if seconds is not None and not (isinstance(seconds, int | float) and seconds > 0):
        raise ValueError(f"Expected call_deadline > 0 seconds, or None, but got {seconds!r}")
    if seconds is not None and not math.isfinite(seconds):
        seconds = None
    token = _deadline.set(seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def call_deadline_seconds() -> float | None:
    """The deadline in force for each call (None: unbounded)."""
    return _deadline.get()


def _armable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def bounded(operation: str) -> Iterator[None]:
    """Run the block (one call, ``operation`` in messages) within the deadline in force."""
    seconds = _deadline.get()
    if seconds is None or not _armable():
        yield
        return
    other_delay, other_interval = signal.getitimer(signal.ITIMER_REAL)
    if 0 < other_delay <= seconds:  # someone else's alarm comes first: leave it alone
        yield
        return

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise CallOverdue(operation, seconds)

    previous = signal.signal(signal.SIGALRM, alarm) or signal.SIG_DFL
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if other_delay > 0:  # put the other alarm back, as if it had run on meanwhile
            left = max(other_delay - (time.monotonic() - started), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, other_interval)
