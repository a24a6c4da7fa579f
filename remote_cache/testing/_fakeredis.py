"""fakeredis servers whose lock refuses the thread already inside it, instead of hanging it."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from remote_cache._guard import Guard, ReenteredError

__all__ = ["ReentryRefusingLock", "new_fake_server"]


class ReentryRefusingLock:
    """A lock for fakeredis's server: other threads wait, the holder's own thread is refused.

    fakeredis serves every command under one plain lock. A signal handler (or a ``__del__``)
    that calls a cache while its thread is inside fakeredis would wait for the frame it
    interrupted, forever; a real server never makes a client wait for itself. Here that
    call raises ``ReenteredError`` at once, which the Redis backend fails open on (a plain
    ``BackendError``: no outage, no breaker). A non-blocking acquire returns False instead.
    The lock's ``acquire``/``release`` face over a ``Guard``, which does the refusing.
    """

    __slots__ = ("_guard",)

    def __init__(self) -> None:
        self._guard = Guard()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; ``ReenteredError`` when a blocking caller's thread holds it."""
        refused = self._guard.refused
        if self._guard.enter(timeout if blocking else 0):
            return True
        if blocking and self._guard.refused != refused:  # only the holder's thread is refused
            raise ReenteredError("fakeredis was entered again by the thread inside it")
        return False

    def release(self) -> None:
        """Let the next thread in."""
        self._guard.leave()

    def locked(self) -> bool:
        """Whether some thread holds the lock."""
        return self._guard.held

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def new_fake_server() -> Any:
    """A fresh ``fakeredis.FakeServer`` whose lock is a ``ReentryRefusingLock``."""
    import fakeredis

    server = fakeredis.FakeServer()
    server.lock = ReentryRefusingLock()  # type: ignore[assignment] # read by each new database
    return server
