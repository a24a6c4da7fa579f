"""One concurrent worker's calls (``_Worker``): each failure becomes a ``_Problem`` naming the
call, the key and the likely cause (a reply meant for another call, a stale read, a miss)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from remote_cache import RemoteCacheBackend
from remote_cache.exceptions import BackendError
from remote_cache.testing.conformance._diagnostics import _describe, _exception, _is, _short

_R = TypeVar("_R")

_STALE = (b"stale: the value before the overwrite", b"stale: the value after it")
_LATE = b"late: written after every worker had missed it"
"""The value of the key ``late``: read (a miss) by every worker, then written by one."""


@dataclasses.dataclass(frozen=True)
class _Problem:
    """What one worker saw go wrong, in the fields of a failure message."""

    worker: str
    operation: str
    key: str | None
    expected: str
    actual: str
    note: str | None = None
    stalled: bool = False
    """True when the worker only stopped because another one failed or never arrived."""


class _Stop(Exception):
    def __init__(self, problem: _Problem) -> None:
        super().__init__(problem.operation)
        self.problem = problem


class _Worker:
    """One worker's calls: each failure becomes a ``_Problem`` naming the call and the key."""

    def __init__(
        self,
        backend: RemoteCacheBackend[Any],
        label: str,
        other_process: bool,
        known: dict[bytes, str],
    ) -> None:
        self.backend = backend
        self.label = label
        self.other_process = other_process
        self.known = known

    def _other_key(self, key: str, got: object) -> str | None:
        """A note when ``got`` is the value of another key: a reply meant for another call."""
        other = self.known.get(got) if isinstance(got, bytes) else None
        if other is None or other == key:
            return None
        return (
            f"that is the value of {_short(other)}: a reply meant for another call (one "
            "connection shared by threads, its replies read outside the lock?) or a read "
            "cache updated without a lock"
        )

    def _stop(
        self, operation: str, key: str | None, expected: str, actual: str, note: str | None
    ) -> None:
        raise _Stop(_Problem(self.label, operation, key, expected, actual, note))

    def _call(self, operation: str, key: str, method: Callable[..., _R], *args: Any) -> _R:
        try:
            return method(*args)
        except Exception as exc:
            raise self._crashed(operation, key, exc) from exc

    def _crashed(self, operation: str, key: str, exc: Exception) -> _Stop:
        note = None
        if self.other_process and isinstance(exc, (OSError, EOFError)):
            note = (
                "a connection or file opened before the fork is shared with the parent: "
                "reopen it when os.getpid() changes (as redis-py does), or make the "
                "backend picklable so the suite starts fresh interpreters"
            )
        expected = "the call to succeed"
        if operation.startswith("put("):
            expected += " (or raise a BackendError, which the caches fail open on)"
        return _Stop(
            _Problem(self.label, operation, key, expected, f"raised {_exception(exc)}", note)
        )

    def put(self, key: str, value: bytes, *, tolerate_backend_errors: bool = False) -> None:
        operation = f"put({_short(key)}, {len(value):,} bytes)"
        try:
            self.backend.put(key, value)
        except BackendError as exc:
            if not tolerate_backend_errors:
                raise self._crashed(operation, key, exc) from exc
        except Exception as exc:
            raise self._crashed(operation, key, exc) from exc

    def put_many(self, mapping: dict[str, bytes]) -> None:
        first = next(iter(mapping))
        self._call(f"put_many({len(mapping)} keys)", first, self.backend.put_many, mapping)

    def get(
        self,
        key: str,
        expected: bytes | None,
        *,
        after: str = "",
        stale: bool = False,
        own: bool = False,
        missed: bool = False,
    ) -> None:
        operation = f"{after}get({_short(key)})"
        got = self._call(operation, key, self.backend.get, key)
        if not _is(got, expected):
            note = _miss_note(self.other_process) if got is None else self._other_key(key, got)
            if own and got is None:
                note = (
                    "a miss for a key this worker wrote itself: a concurrent write of another "
                    "key lost it (an unlocked read-modify-write of a shared file or record?)"
                )
            if missed and got is None:
                note = (
                    "a miss remembered: this backend read the key before it was written and "
                    "still answers a miss (a cache of misses that other "
                    + ("processes'" if self.other_process else "threads'")
                    + " writes do not invalidate?)"
                )
            if stale and got is not None and _is(got, _STALE[0]):
                note = (
                    "a stale read: this backend still returns the value it read before "
                    "(a read cache that other "
                    + ("processes'" if self.other_process else "threads'")
                    + " writes do not invalidate?)"
                )
            self._stop(operation, key, _describe(expected), _describe(got), note)

    def get_many(self, expected: dict[str, bytes]) -> None:
        keys = [*expected, "absent-key"]
        operation = f"get_many([{', '.join(_short(key) for key in keys)}])"
        found = self._call(operation, keys[0], self.backend.get_many, keys)
        if not isinstance(found, dict):
            self._stop(operation, None, _describe(expected), _describe(found), None)
        for key in keys:
            got = found.get(key)
            want = expected.get(key)
            if key in expected and not _is(got, want):
                note = _miss_note(self.other_process) if got is None else self._other_key(key, got)
                self._stop(operation, key, _describe(want), _describe(got), note)
            if key not in expected and key in found:
                note = self._other_key(key, got)
                self._stop(operation, key, "the key left out (never stored)", _describe(got), note)

    def read_torn(self, torn: tuple[bytes, bytes]) -> None:
        got = self._call("get('torn')", "torn", self.backend.get, "torn")
        if not (_is(got, torn[0]) or _is(got, torn[1])):
            note: str | None = self._other_key("torn", got)
            if got is None:
                note = _miss_note(self.other_process)
            elif note is None:
                note = (
                    "a reader saw neither value whole: a partly written value (write a "
                    "temporary file, then rename) or a reply meant for another call"
                )
            self._stop(
                "get('torn') while another worker overwrote it",
                "torn",
                f"one of the two values written, whole ({len(torn[0]):,} or "
                f"{len(torn[1]):,} bytes)",
                _describe(got),
                note,
            )

    def read_same(self, values: list[bytes]) -> None:
        got = self._call("get('same')", "same", self.backend.get, "same")
        if not any(_is(got, value) for value in values):
            self._stop(
                "get('same') after every worker wrote it at once",
                "same",
                f"one of the {len(values)} values written, whole",
                _describe(got),
                "concurrent writers of one key mixed or lost their values (a temporary "
                "file with a fixed name, shared by the writers?)",
            )


def _miss_note(other_process: bool) -> str:
    if other_process:
        return (
            "a miss for a key stored before the worker started: this process's backend does "
            "not see the other's entries (not shared at all? keys named by hash(), which "
            "differs between interpreters?)"
        )
    return (
        "a miss for a key that was stored before this read, from another thread: a store "
        "per thread (a thread-local connection to an in-memory database? a threading.local "
        "dict?) or a write another thread cannot see yet"
    )
