"""The controller: what consumers call. Keys, serde, stats, samples and the fail policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from remote_cache._backend import RemoteCacheBackend
from remote_cache._guard import Guard
from remote_cache._process import at_fork, on_reset
from remote_cache._serde import RemoteCacheSerde
from remote_cache._stats import cache_stats
from remote_cache._text import printable
from remote_cache._validation import check_keys, check_mapping, reject_key
from remote_cache.exceptions import BackendError, CircuitOpenError

__all__ = [
    "GET",
    "PUT",
    "RemoteCache",
    "Sample",
    "forget_outages",
    "note_failure",
    "note_recovery",
]

log = logging.getLogger("remote_cache")

_T = TypeVar("_T")
_U = TypeVar("_U")

Sample = Any
"""A logging sample, created by ``_create_sample``; ours sets ``fail_reason`` on failure."""

GET, PUT = "get", "put"
"""The kinds of call an outage is tracked by: reads (get, get_many), writes (put, put_many)."""

# The caches whose backend is failing now, each with the kinds of call that failed: one log
# line per outage, not per call. A server that reads but cannot write (out of memory) is in
# an outage until a write works again; a working read does not end it. A Guard, not a lock:
# a signal handler whose call fails while this thread is in here hands its note over to the
# interrupted frame instead of waiting for it forever.
_failing: dict[str, set[str]] = {}
_failing_lock = Guard()


def note_failure(name: str, exc: BaseException, kind: str) -> None:
    """Record that a ``kind`` call (``GET`` or ``PUT``) of cache ``name`` failed; the
    first failure of an outage logs one warning, for each cache name.

    A call an open breaker skipped (``CircuitOpenError``) starts an outage of its cache
    too: a cache sharing a breaker with the one that found the server dead warns once.
    """
    _failing_lock.run_or_defer(lambda: _record_failure(name, exc, kind))


def _record_failure(name: str, exc: BaseException, kind: str) -> None:
    """``note_failure`` under ``_failing_lock``."""
    kinds = _failing.get(name)
    if kinds is not None:
        kinds.add(kind)
        return
    _failing[name] = {kind}
    if isinstance(exc, CircuitOpenError):
        log.warning(
            "%s: backend skipped on %s, it failed recently (%s: %s); "
            "failing open until it recovers",
            name,
            kind,
            type(exc).__name__,
            printable(str(exc)),
        )
        return
    log.warning(
        "%s: backend failed on %s (%s: %s); failing open until it recovers",
        name,
        kind,
        type(exc).__name__,
        printable(str(exc)),  # it may quote a server's reply: no terminal controls, one line
    )


def note_recovery(name: str, kind: str) -> None:
    """Record that a ``kind`` call of cache ``name`` worked; the outage ends (one info
    line) when every kind of call that failed in it has worked again."""
    if name not in _failing:
        return  # the common case, without the lock: no outage of this cache
    _failing_lock.run_or_defer(lambda: _record_recovery(name, kind))


def _record_recovery(name: str, kind: str) -> None:
    """``note_recovery`` under ``_failing_lock``."""
    kinds = _failing.get(name)
    if kinds is None or kind not in kinds:
        return
    kinds.discard(kind)
    if kinds:
        return
    del _failing[name]
    log.info("%s: backend works again", name)


def _after_fork_in_child() -> None:
    """A new lock for a forked child: a thread that held it in the parent does not exist here."""
    global _failing_lock  # noqa: PLW0603 - the parent's may be held by a thread not here
    _failing_lock = Guard()


at_fork(after_in_child=_after_fork_in_child)


@on_reset
def forget_outages() -> None:
    """Forget every outage in progress: the next failure of any cache warns again."""
    _failing.clear()


class RemoteCache(Generic[_T]):
    """A cache of ``_T`` values over a backend: ``get``, ``put``, ``get_many``, ``put_many``.

    Subclass it rather than use it directly: stats are counted under the concrete class's
    name. Setting ``backend_override_cls`` on a class (a callable taking no arguments that
    returns a backend) makes every instance built afterwards use that backend instead;
    test harnesses use it. ``fail_open`` decides what a ``BackendError`` does: False
    (upstream's behaviour) re-raises it; True turns a failed get into a miss and drops a
    failed put, counting ``fail_open`` and logging one line per outage.

    Every call goes through the hooks below (``get`` calls ``_get``, which calls
    ``_backend_get`` and ``_decode``; ``put`` likewise), looked up afresh on each call, so a
    hook overridden or patched on the class, a base, a mixin or an instance is always used.
    """

    backend_override_cls: ClassVar[Callable[[], RemoteCacheBackend[Any]] | None] = None
    fail_open: ClassVar[bool] = False
    backend: RemoteCacheBackend[Any]
    serde: RemoteCacheSerde[_T, Any]

    def __init__(
        self,
        backend: RemoteCacheBackend[_U] | None,
        serde: RemoteCacheSerde[_T, _U],
    ) -> None:
        override = type(self).backend_override_cls
        if override is not None:
            self.backend = override()
        elif backend is None:
            raise TypeError(f"{type(self).__name__} needs a backend (got None)")
        else:
            self.backend = backend
        self.serde = serde

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r})"

    # -- public API -------------------------------------------------------------------

    def get(self, key: str) -> _T | None:
        """Return the value stored under ``key``, or None on a miss.

        Raises TypeError or ValueError for a key that is not a non-empty str, before any
        I/O. A backend failure is a miss when the cache fails open, else it is re-raised.
        """
        if not isinstance(key, str) or not key:
            reject_key(key)
        name = type(self).__name__
        sample = self._create_sample()
        try:
            result = self._get(key, sample)
        except Exception as exc:
            if not self._swallowed(name, exc, sample):
                raise
            note_failure(name, exc, GET)
            result = None
            cache_stats.miss(name)
        else:
            cache_stats.get(name, result)
            if _failing:
                note_recovery(name, GET)
        finally:
            self._log_sample(sample)
        return result

    def put(self, key: str, value: _T) -> None:
        """Store ``value`` under ``key``.

        Raises TypeError or ValueError for a bad key, ValueError for None (it would read
        back as a miss) and TypeError for a value the serde cannot encode; nothing is
        written then. A backend failure drops the put when the cache fails open.
        """
        if not isinstance(key, str) or not key:
            reject_key(key)
        if value is None:
            raise ValueError(f"None cannot be stored (key={key!r}): it reads back as a miss")
        name = type(self).__name__
        sample = self._create_sample()
        try:
            self._put(key, value, sample)
        except Exception as exc:
            if not self._swallowed(name, exc, sample):
                raise
            note_failure(name, exc, PUT)
        else:
            cache_stats.put(name)
            if _failing:
                note_recovery(name, PUT)
        finally:
            self._log_sample(sample)

    def get_many(self, keys: Iterable[str]) -> dict[str, _T]:
        """Return ``{key: value}`` for the stored keys among ``keys`` (misses are absent).

        Hits and misses are counted per key; a backend failure fails the whole batch, open
        or not, as one get would.
        """
        wanted = check_keys(keys)
        if not wanted:
            return {}
        name = type(self).__name__
        sample = self._create_sample()
        found: dict[str, _T] = {}
        try:
            found = self._get_many(wanted, sample)
        except Exception as exc:
            if not self._swallowed(name, exc, sample, len(wanted)):
                raise
            note_failure(name, exc, GET)
            cache_stats.miss(name, len(wanted))
        else:
            if found:
                cache_stats.hit(name, len(found))
            if len(found) < len(wanted):
                cache_stats.miss(name, len(wanted) - len(found))
            if _failing:
                note_recovery(name, GET)
        finally:
            self._log_sample(sample)
        return found

    def put_many(self, mapping: Mapping[str, _T]) -> None:
        """Store every item of ``mapping``; puts are counted per key.

        Every key and value is checked before anything is written.
        """
        check_mapping(mapping)
        if not mapping:
            return
        name = type(self).__name__
        sample = self._create_sample()
        try:
            self._put_many(mapping, sample)
        except Exception as exc:
            if not self._swallowed(name, exc, sample, len(mapping)):
                raise
            note_failure(name, exc, PUT)
        else:
            cache_stats.put(name, len(mapping))
            if _failing:
                note_recovery(name, PUT)
        finally:
            self._log_sample(sample)

    def _swallowed(self, name: str, exc: Exception, sample: Sample, count: int = 1) -> bool:
        """Count a failed call; return True when this cache fails open on it (else re-raise).

        The caller then logs the outage (``note_failure``, once per outage).
        """
        if sample is not None:
            sample.fail_reason = str(exc)
        if self.fail_open and isinstance(exc, BackendError):
            cache_stats.fail_open(name, count)
            return True
        cache_stats.exception(name)
        return False

    # -- overridable hooks (upstream's names and signatures) --------------------------

    def _decode(self, data: Any, sample: Sample) -> _T:
        """Convert backend data into a value."""
        return self.serde.decode(data)

    def _encode(self, value: _T, sample: Sample) -> Any:
        """Convert a value into backend data."""
        return self.serde.encode(value)

    def _get(self, key: str, sample: Sample) -> _T | None:
        """Return the decoded value under ``key`` or None; only None is a miss."""
        data = self._backend_get(key)
        if data is None:
            return None
        return self._decode(data, sample)

    def _backend_get(self, key: str) -> Any:
        """Return the backend's data under ``key``."""
        return self.backend.get(key)

    def _put(self, key: str, value: _T, sample: Sample) -> None:
        """Encode ``value`` and store it under ``key``."""
        data = self._encode(value, sample)
        self._backend_put(key, data)

    def _backend_put(self, key: str, data: Any) -> None:
        """Store backend data under ``key``."""
        self.backend.put(key, data)

    def _get_many(self, keys: list[str], sample: Sample) -> dict[str, _T]:
        """Return decoded values for the stored keys among ``keys``."""
        found = self._backend_get_many(keys)
        return {key: self._decode(data, sample) for key, data in found.items()}

    def _backend_get_many(self, keys: list[str]) -> dict[str, Any]:
        """Return the backend's data for the stored keys among ``keys``."""
        return self.backend.get_many(keys)

    def _put_many(self, mapping: Mapping[str, _T], sample: Sample) -> None:
        """Encode every value (all before any write) and store them."""
        encoded = {key: self._encode(value, sample) for key, value in mapping.items()}
        self._backend_put_many(encoded)

    def _backend_put_many(self, mapping: Mapping[str, Any]) -> None:
        """Store backend data for every key of ``mapping``."""
        self.backend.put_many(mapping)

    def _create_sample(self) -> Sample:
        """Return a logging sample for one call, or None (the default).

        Called at the start of every call, as ``_log_sample`` is at its end; override both
        (on a class, a base, a mixin or an instance) to monitor the cache.
        """
        return None

    def _log_sample(self, sample: Sample) -> None:
        """Emit the sample of one call; runs after every call, failed or not."""
