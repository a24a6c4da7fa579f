"""The backend contract: bytes in, bytes out, every call counted."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Generic, TypeVar

from remote_cache._stats import cache_stats
from remote_cache.exceptions import CircuitOpenError, ValueTooLargeError

__all__ = ["RemoteCacheBackend"]

_T = TypeVar("_T")


class RemoteCacheBackend(ABC, Generic[_T]):
    """A store of values (usually ``bytes``) under string keys.

    Subclasses implement ``_get`` and ``_put``; ``_get_many`` and ``_put_many`` default to
    loops over them and may be overridden with one round trip. The public methods count
    every call in ``cache_stats`` under ``"backend:<ClassName>"``: a hit when the value is
    not None, else a miss; a put; an ``exception`` (re-raised) when the call fails, or
    ``skipped`` when a circuit breaker refused it. Only None means "not stored": ``b""``,
    ``0`` and other falsy values are values.

    A backend declares its honest limits in two attributes (class or instance), read by the
    conformance suite: ``max_value_bytes`` and ``shared_between_processes``.
    """

    max_value_bytes: int | None = None
    """The largest value stored, in bytes; None: no limit. ``put`` and ``put_many`` refuse a
    longer ``bytes`` value with ``ValueTooLargeError`` before calling ``_put``: nothing is
    written, nothing counted."""

    shared_between_processes: bool = False
    """True when backends made alike in other processes see the same entries (a server, a
    folder); the conformance suite then also writes and reads from several processes."""

    def __init__(self) -> None:
        self._name = f"backend:{type(self).__name__}"

    @abstractmethod
    def _get(self, key: str) -> _T | None:
        """Return the value stored under ``key``, or None."""

    @abstractmethod
    def _put(self, key: str, data: _T) -> None:
        """Store ``data`` under ``key``, replacing what was there."""

    def _get_many(self, keys: list[str]) -> dict[str, _T]:
        """Return ``{key: value}`` for the keys that are stored (default: one ``_get`` each)."""
        found: dict[str, _T] = {}
        for key in keys:
            value = self._get(key)
            if value is not None:
                found[key] = value
        return found

    def _put_many(self, mapping: Mapping[str, _T]) -> None:
        """Store every item of ``mapping`` (default: one ``_put`` each)."""
        for key, data in mapping.items():
            self._put(key, data)

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, CircuitOpenError):
            cache_stats.skipped(self._name)
        else:
            cache_stats.exception(self._name)

    def _refuse_large(self, key: str, data: object) -> None:
        limit = self.max_value_bytes
        if limit is not None and isinstance(data, (bytes, bytearray, memoryview)):
            size = memoryview(data).nbytes
            if size > limit:
                raise ValueTooLargeError(
                    f"{type(self).__name__}: the value of {key!r} is {size:,} bytes, over "
                    f"max_value_bytes={limit:,}; nothing was written",
                    key=key,
                    size=size,
                    limit=limit,
                )

    def get(self, key: str) -> _T | None:
        """Return the value under ``key`` or None, counting a hit or a miss."""
        start = perf_counter()
        try:
            value = self._get(key)
        except Exception as exc:
            self._failed(exc)
            raise
        if value is None:
            cache_stats.timed_get(self._name, 0, 1, perf_counter() - start)
        else:
            cache_stats.timed_get(self._name, 1, 0, perf_counter() - start)
        return value

    def put(self, key: str, data: _T) -> None:
        """Store ``data`` under ``key``, counting a put."""
        if self.max_value_bytes is not None:
            self._refuse_large(key, data)
        start = perf_counter()
        try:
            self._put(key, data)
        except Exception as exc:
            self._failed(exc)
            raise
        cache_stats.timed_put(self._name, 1, perf_counter() - start)

    def get_many(self, keys: Iterable[str]) -> dict[str, _T]:
        """Return ``{key: value}`` for the stored keys; a hit or a miss is counted per key."""
        wanted = list(dict.fromkeys(keys))
        start = perf_counter()
        try:
            found = self._get_many(wanted) if wanted else {}
        except Exception as exc:
            self._failed(exc)
            raise
        cache_stats.timed_get(
            self._name, len(found), len(wanted) - len(found), perf_counter() - start
        )
        return found

    def put_many(self, mapping: Mapping[str, _T]) -> None:
        """Store every item of ``mapping``; a put is counted per key."""
        if self.max_value_bytes is not None:
            for key, data in mapping.items():
                self._refuse_large(key, data)
        start = perf_counter()
        try:
            if mapping:
                self._put_many(mapping)
        except Exception as exc:
            self._failed(exc)
            raise
        cache_stats.timed_put(self._name, len(mapping), perf_counter() - start)
