"""A lock that never makes a thread wait for itself: re-entry is refused, not waited for."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["Guard", "ReenteredError"]


class ReenteredError(RuntimeError):
    """The thread holding a ``Guard`` entered it again (``with guard:`` only)."""


class Guard:
    """Mutual exclusion for short critical sections that code of the holder's own thread may
    interrupt: a signal handler, a ``__del__``, a tracing hook, a weakref callback.

    Other threads wait for the holder, as with a lock. The holder's own thread, entering
    again from such a hook, is refused at once: ``enter()`` returns False instead of waiting
    forever for a frame it has interrupted, and never sees the state that frame is halfway
    through changing. Work that must not be lost is handed over with ``defer(work)``: the
    holder runs it, under the guard, before it leaves. ``refused`` counts the refusals.

    An ``RLock`` lets the same thread in, and the ``_busy`` flag, set right after the
    acquire and cleared right before the release, turns it away: a hook that lands between
    the acquire and the flag (or the flag and the release) finds the section not started
    (or over) and runs as if it came first (or last).
    """

    __slots__ = ("_busy", "_deferred", "_lock", "refused")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._busy = False
        self._deferred: collections.deque[Callable[[], object]] = collections.deque()
        self.refused = 0
        """How many times this thread's own re-entry was refused."""

    def enter(self, timeout: float = -1) -> bool:
        """Hold the guard; False when this thread already holds it, or after ``timeout`` s."""
        if not self._lock.acquire(timeout=timeout):
            return False
        if self._busy:
            self._lock.release()
            self.refused += 1  # the holder's thread is here: no other thread can be
            return False
        self._busy = True
        return True

    def leave(self) -> None:
        """Run the work deferred meanwhile, then let the next thread in."""
        while True:
            try:
                while self._deferred:
                    self._deferred.popleft()()
            finally:
                self._busy = False
                self._lock.release()
            # Work deferred after the last look, by a hook landing before the release: run it
            # unless another thread holds the guard (it will, when it leaves).
            if not self._deferred or not self._lock.acquire(blocking=False):
                return
            if self._busy:  # pragma: no cover - a hook between the acquire and here
                self._lock.release()
                return
            self._busy = True

    def defer(self, work: Callable[[], object]) -> None:
        """Have the holder run ``work`` under the guard before it leaves (call after a refusal)."""
        self._deferred.append(work)

    def run_or_defer(self, work: Callable[[], object]) -> None:
        """Run ``work`` under the guard now, or, when this thread holds it, when it leaves."""
        if not self.enter():
            self.defer(work)
            return
        try:
            work()
        finally:
            self.leave()

    @property
    def held(self) -> bool:
        """Whether some thread is inside the guard now."""
        return self._busy

    def __enter__(self) -> None:
        """Hold the guard (waits for other threads); ``ReenteredError`` if this one holds it."""
        if not self.enter():
            raise ReenteredError("re-entered by the thread that holds it")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.leave()
