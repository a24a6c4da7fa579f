"""The probe the deterministic checks drive a backend through, and the limits they hold it to.

``_Probe`` calls the backend, names the check when a call crashes, and remembers each value
written, to name the two keys that collide. ``LARGEST_VALUE``, ``LONGEST_KEY`` and
``MIN_VALUE_LIMIT`` are the default sizes and the smallest limit a backend may declare.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from remote_cache import RemoteCacheBackend
from remote_cache.exceptions import ValueTooLargeError
from remote_cache.testing._call_deadline import CallOverdue, bounded, overdue_message
from remote_cache.testing.conformance._diagnostics import (
    _describe,
    _is,
    _name,
    _raised,
    _short,
    _violation,
)

BackendFactory = Callable[[], RemoteCacheBackend[Any]]
_R = TypeVar("_R")

LARGEST_VALUE = 4 * 1024 * 1024
"""The largest value ``check_values`` writes by default, in bytes (4 MiB)."""


MIN_VALUE_LIMIT = 64 * 1024
"""The smallest ``max_value_bytes`` a backend may declare: the caches write values this big."""


class _Probe:
    """One backend under a deterministic check: calls that name the check when they crash."""

    def __init__(self, backend: RemoteCacheBackend[Any], check: str, replay: str) -> None:
        self.backend = backend
        self.check = check
        self.replay = replay
        self.written: dict[bytes, str] = {}
        """Each value written, to the key it was written under: names collisions."""

    def call(self, operation: str, method: Callable[..., _R], *args: Any) -> _R:
        try:
            with bounded(f"{_name(self.backend)}: {self.check}: {operation}"):
                return method(*args)
        except CallOverdue as exc:
            raise AssertionError(f"{overdue_message(exc)}\n  replay:   {self.replay}") from None
        except SystemExit as exc:  # a backend's, not the user's: it would end the run unsaid
            raise AssertionError(
                f"{_name(self.backend)}: {self.check}: {operation} raised SystemExit({exc}): "
                f"a backend's failures are BackendErrors, never an exit\n  replay:   {self.replay}"
            ) from exc
        except ValueTooLargeError as exc:
            limit = getattr(self.backend, "max_value_bytes", None)
            raise _violation(
                self.backend,
                self.check,
                f"{operation} raised ValueTooLargeError: {exc}",
                expected="the value stored: the backend declares max_value_bytes="
                + ("None (no limit)" if limit is None else f"{limit:,}"),
                actual="refused",
                note="declare the real limit in max_value_bytes (see docs/backends.md)",
                replay=self.replay,
            ) from exc
        except Exception as exc:
            raise AssertionError(
                f"{_name(self.backend)}: {self.check}: {operation} raised {_raised(exc)}"
                f"\n  replay:   {self.replay}"
            ) from exc

    def put(self, key: str, value: bytes) -> None:
        self.call(f"put({_short(key)}, {len(value):,} bytes)", self.backend.put, key, value)
        self.written[value] = key

    def put_many(self, mapping: Mapping[str, bytes]) -> None:
        self.call(f"put_many({len(mapping)} keys)", self.backend.put_many, mapping)
        for key, value in mapping.items():
            self.written[value] = key

    def _note(self, key: str, got: object, note: str | None) -> str | None:
        if isinstance(got, (bytes, bytearray)) and bytes(got) in self.written:
            other = self.written[bytes(got)]
            if other != key:
                cause = _pattern_match(key, other) or note
                return (
                    f"that is the value written under {_short(other)}: the backend does not "
                    f"keep these keys apart{f' ({cause})' if cause else ''}"
                )
        return note

    def expect(
        self,
        operation: str,
        key: str,
        got: object,
        expected: bytes | None,
        *,
        note: str | None = None,
    ) -> None:
        if not _is(got, expected):
            raise _violation(
                self.backend,
                self.check,
                operation,
                key=key,
                expected=_describe(expected),
                actual=_describe(got),
                note=self._note(key, got, note),
                replay=self.replay,
            )

    def get(self, key: str, expected: bytes | None, *, after: str = "", note: str = "") -> None:
        operation = f"{after}get({_short(key)})"
        got = self.call(operation, self.backend.get, key)
        self.expect(operation, key, got, expected, note=note or None)

    def get_many(
        self, keys: Sequence[str], expected: Mapping[str, bytes], *, after: str = "", note: str = ""
    ) -> None:
        shown = ", ".join(_short(k) for k in keys[:3]) + (", …" if len(keys) > 3 else "")
        operation = f"{after}get_many([{shown}]) ({len(keys)} keys)"
        found = self.call(operation, self.backend.get_many, keys)
        if not isinstance(found, dict):
            raise _violation(
                self.backend,
                self.check,
                operation,
                expected=f"a dict of the {len(expected)} stored keys",
                actual=_describe(found),
                replay=self.replay,
            )
        for key in keys:
            if key not in expected and key in found:
                raise _violation(
                    self.backend,
                    self.check,
                    operation,
                    key=key,
                    expected="the key left out (it is not stored)",
                    actual=f"the key present with {_describe(found[key])}",
                    note=self._note(key, found[key], note or None),
                    replay=self.replay,
                )
            if key in expected:
                got = found.get(key)
                self.expect(operation, key, got, expected[key], note=note or None)
        extra = [key for key in found if key not in keys]
        if extra:
            raise _violation(
                self.backend,
                self.check,
                operation,
                key=extra[0],
                expected="only keys that were asked for",
                actual=f"a key never asked for, with {_describe(found[extra[0]])}",
                replay=self.replay,
            )


def _pattern_match(key: str, other: str) -> str | None:
    """Why ``key`` found ``other``'s value when ``key`` read as a pattern matches ``other``:
    SQL ``LIKE`` (``%``, ``_``, no case in ASCII) or a glob (``*``, ``?``, ``[``)."""
    if set(key) & set("%_"):
        like = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in key)
        if re.fullmatch(like, other, re.IGNORECASE | re.DOTALL):
            return (
                "the key used as a pattern: SQL LIKE, where % and _ are wildcards and ASCII "
                "case is ignored? compare keys with =, or as BLOBs"
            )
    if set(key) & set("*?[") and fnmatch.fnmatchcase(other, key):
        return "the key used as a pattern: a glob, where * ? [ are wildcards?"
    return None


def _declared(backend: RemoteCacheBackend[Any], check: str) -> int | None:
    """The backend's ``max_value_bytes``, validated."""
    limit = getattr(backend, "max_value_bytes", None)
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < MIN_VALUE_LIMIT:
        raise AssertionError(
            f"{_name(backend)}: {check}: declares max_value_bytes={limit!r}; it must be None "
            f"or an int of at least {MIN_VALUE_LIMIT:,} (the caches write values that big)"
        )
    return limit


def _pattern(size: int, salt: int = 0) -> bytes:
    """``size`` pseudo-random bytes, different for each size and salt (truncations show)."""
    return random.Random(size * 7919 + salt).randbytes(size)
