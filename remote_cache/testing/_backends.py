"""Backends for tests: no-op, failing, in-memory, recording and fault-injecting ones.

The no-op, failing, in-memory and recording backends are here; the fault injector is in
``_fault_injection`` and the ``SideEffect`` vocabulary in ``_side_effects``, both
re-exported here (``strategies`` and the fixtures import them from this module).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from remote_cache import RemoteCacheBackend, _clock
from remote_cache.testing._fault_injection import FaultInjectingBackend, FaultPlan
from remote_cache.testing._side_effects import (
    OPERATIONS,
    SideEffect,
    _raise,
    _simulated_outage,
)

__all__ = [
    "OPERATIONS",
    "BackendCall",
    "FailingBackend",
    "FaultInjectingBackend",
    "FaultPlan",
    "InMemoryBackend",
    "NoopBackend",
    "RecordingBackend",
    "SideEffect",
]


class NoopBackend(RemoteCacheBackend[Any]):
    """Stores nothing: every get is a miss, every put is accepted and forgotten."""

    def _get(self, key: str) -> Any:
        return None

    def _put(self, key: str, data: Any) -> None:
        return None


class FailingBackend(RemoteCacheBackend[Any]):
    """Every call raises: ``error`` for both operations, or ``get_error`` / ``put_error``.

    Each is a ``SideEffect``; the default is a ``BackendUnavailableError`` (a simulated
    outage, which ``ConnectionError`` handlers catch). ``FailingBackend(AssertionError("x"))``
    reproduces upstream's test backend.
    """

    def __init__(
        self,
        error: SideEffect = _simulated_outage,
        *,
        get_error: SideEffect | None = None,
        put_error: SideEffect | None = None,
    ) -> None:
        super().__init__()
        self.get_error = get_error if get_error is not None else error
        self.put_error = put_error if put_error is not None else error

    def _get(self, key: str) -> Any:
        _raise(self.get_error, "get", key)

    def _put(self, key: str, data: Any) -> None:
        _raise(self.put_error, "put", key)


class InMemoryBackend(RemoteCacheBackend[Any]):
    """A thread-safe dict. Pass one ``store`` to several backends to share what they hold.

    ``expire`` (seconds, as the Redis backend's): an entry written through this backend is
    gone that long after its put, by the process's clock (a ``VirtualClock`` when one is
    installed), as a Redis server's ``SET ... EX`` entry would be; a put renews it. None
    (the default): entries stay.

    It takes no lock: each call is one atomic operation on the dict (its keys are ``str``),
    so a signal handler that calls it while this thread is inside it never waits.
    """

    def __init__(self, store: dict[str, Any] | None = None, *, expire: float | None = None) -> None:
        super().__init__()
        if expire is not None and (isinstance(expire, bool) or not expire > 0):
            raise ValueError(f"Expected expire > 0 seconds (or None) but got expire={expire!r}")
        self.store: dict[str, Any] = {} if store is None else store
        self.expire = expire
        """Seconds an entry lives after its put; None: for ever."""
        self._expires_at: dict[str, float] = {}  # key -> clock reading it is gone at

    @property
    def entries(self) -> dict[str, Any]:
        """A copy of what is stored (expired entries left out): backend keys to stored data."""
        store = self.store.copy()
        return {key: value for key, value in store.items() if self._live(key)}

    def clear(self) -> None:
        """Forget everything stored."""
        self.store.clear()
        self._expires_at.clear()

    def _live(self, key: str) -> bool:
        """Whether ``key``'s entry has not expired (an expired one stays in ``store``, unread:
        reads never write, so a put racing a read is never undone by it)."""
        at = self._expires_at.get(key)
        return at is None or _clock.monotonic() < at

    def _stamp(self, keys: Iterable[str]) -> None:
        # Before the value is stored: a read in between sees the old value, not an expired one.
        if self.expire is not None:
            at = _clock.monotonic() + self.expire
            for key in keys:
                self._expires_at[key] = at

    def _get(self, key: str) -> Any:
        value = self.store.get(key)
        return value if value is None or self._live(key) else None

    def _put(self, key: str, data: Any) -> None:
        self._stamp([key])
        self.store[key] = data

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        # One copy, then reads of the copy: every value of one batch comes from one moment.
        store = self.store.copy()
        return {key: store[key] for key in keys if store.get(key) is not None and self._live(key)}

    def _put_many(self, mapping: Mapping[str, Any]) -> None:
        batch = dict(mapping)
        self._stamp(batch)
        self.store.update(batch)  # one atomic update: all of the batch or none of it

    def __repr__(self) -> str:
        expire = "" if self.expire is None else f", expire={self.expire:g}s"
        return f"{type(self).__name__}({len(self.store)} entries{expire})"


class BackendCall(NamedTuple):
    """One call seen by a ``RecordingBackend``.

    ``key`` is the key, or the tuple of keys of a batch; ``data`` what a put wrote (a dict
    for ``put_many``); ``result`` what a get returned; ``error`` the exception raised, if any;
    ``duration`` seconds.
    """

    op: str
    key: str | tuple[str, ...]
    data: Any
    result: Any
    error: BaseException | None
    duration: float


class RecordingBackend(RemoteCacheBackend[Any]):
    """Wraps ``inner`` and records every call in ``calls``, in order (thread-safe; an
    append takes no lock, so a signal handler's call is recorded too)."""

    def __init__(
        self, inner: RemoteCacheBackend[Any], calls: list[BackendCall] | None = None
    ) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[BackendCall] = [] if calls is None else calls

    def _record(self, op: str, key: Any, data: Any, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            result = call()
        except BaseException as exc:
            self._append(BackendCall(op, key, data, None, exc, time.perf_counter() - started))
            raise
        self._append(BackendCall(op, key, data, result, None, time.perf_counter() - started))
        return result

    def _append(self, call: BackendCall) -> None:
        self.calls.append(call)  # atomic

    def ops(self) -> list[str]:
        """The operation of each call, in order."""
        return [call.op for call in self.calls]

    def _get(self, key: str) -> Any:
        return self._record("get", key, None, lambda: self.inner.get(key))

    def _put(self, key: str, data: Any) -> None:
        self._record("put", key, data, lambda: self.inner.put(key, data))

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self._record(
            "get_many", tuple(keys), None, lambda: self.inner.get_many(keys)
        )
        return result

    def _put_many(self, mapping: Mapping[str, Any]) -> None:
        self._record(
            "put_many", tuple(mapping), dict(mapping), lambda: self.inner.put_many(mapping)
        )
