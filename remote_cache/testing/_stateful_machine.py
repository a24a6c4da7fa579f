"""``CacheMachine``: the rules and the invariant of the cache state machine.

The rules drive the caches (``get``, ``put``, the batches, corrupt entries written
underneath) and the fault layer (plans, down, up); after each step the invariant compares
every counter with the model (``_stateful_model``). ``stateful`` builds and runs it.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from remote_cache import (
    BackendCommandError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    RemoteCache,
    RemoteCacheBackend,
)
from remote_cache._caches import JsonCache
from remote_cache.testing._call_deadline import bounded
from remote_cache.testing._fault_injection import FaultInjectingBackend
from remote_cache.testing._override import isolated_cache_stats
from remote_cache.testing._side_effects import SideEffect
from remote_cache.testing._stateful_model import (
    COUNTERS,
    _canonical,
    _canonical_map,
    _Driven,
    _Entry,
    _observe_samples,
    default_caches,
)
from remote_cache.testing.strategies import cache_keys, fault_plans, json_data

__all__ = ["BackendFactory", "CacheMachine", "CachesFactory"]

BackendFactory = Callable[[], RemoteCacheBackend[Any]]
CachesFactory = Callable[[RemoteCacheBackend[Any]], Sequence[RemoteCache[Any]]]


# Uniform over the caches for any count up to 6 (integers() would favour the first cache).
_INDEX = st.sampled_from(range(60))
# A few fixed keys (overwrites and read-backs are common), any keys, and pairs that broken
# stores merge (case, separators and their escapes...), drawn often enough to meet in a run.
_KEYS = st.one_of(
    st.sampled_from(["a", "b", "graph-1", "é", "../up"]),
    cache_keys(max_size=20),
    st.sampled_from(["Cache-Key", "cache-key", "a,b", "a%2Cb", "caf\u00e9", "cafe\u0301"]),
)
# Falsy values get their own branch: reading them back as misses is a classic defect.
_JSON_VALUES = st.one_of(
    st.sampled_from([0, 0.0, -0.0, "", [], {}, False]), json_data(max_leaves=8, max_text=12)
)
_RAW_VALUES = st.one_of(
    st.just(b""), st.sampled_from([b"\x00", b"0", b"a\x00"]), st.binary(max_size=64)
)
_GARBAGE = st.one_of(
    st.sampled_from([b"", b"\xff\xfe", b"{", b"null", b"[1, 2", b"\x00", b"NaN", b'"text"']),
    st.binary(max_size=16),
)
_ERRORS: st.SearchStrategy[SideEffect] = st.sampled_from(
    [BackendUnavailableError, BackendTimeoutError, BackendCommandError, RuntimeError]
)


class CacheMachine(RuleBasedStateMachine):
    """Drives caches over a ``FaultInjectingBackend`` and checks them against a model.

    Subclass it with ``make_backend`` (fresh, empty backends) and optionally
    ``make_caches`` set, or let ``cache_machine()`` do it; run it with
    ``run_cache_machine()``, or collect ``YourMachine.TestCase`` with pytest or unittest.
    """

    make_backend: ClassVar[BackendFactory]
    make_caches: ClassVar[CachesFactory] = staticmethod(default_caches)
    on_example: ClassVar[Callable[[], None] | None] = None

    def __init__(self) -> None:
        super().__init__()
        if type(self).on_example is not None:
            type(self).on_example()  # type: ignore[misc]
        self.inner = type(self).make_backend()
        self.faults = FaultInjectingBackend(self.inner)
        self.driven: list[_Driven] = []
        for cache in type(self).make_caches(self.faults):
            if cache.backend is not self.faults:
                raise TypeError(
                    f"make_caches must build caches over the backend it is given, "
                    f"but {cache!r} uses another"
                )
            self.driven.append(
                _Driven(
                    cache,
                    type(cache).__name__,
                    isinstance(cache, JsonCache),
                    _observe_samples(cache),
                )
            )
        if not self.driven:
            raise ValueError("make_caches returned no caches")
        self.model: dict[str, _Entry] = {}
        self.expected: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.fault_name = f"backend:{type(self.faults).__name__}"
        self.inner_name = f"backend:{type(self.inner).__name__}"
        # Entered last, so a failed __init__ leaves no swapped registry behind, and left by
        # teardown() (Hypothesis calls it after every example, even a failing one).
        self._stats_scope = contextlib.ExitStack()
        self.stats = self._stats_scope.enter_context(isolated_cache_stats())

    def teardown(self) -> None:
        """Put the process-wide counters back."""
        self._stats_scope.close()

    # -- helpers --------------------------------------------------------------------------

    def _pick(self, index: int, *, json_only: bool = False) -> _Driven:
        choices = [d for d in self.driven if d.is_json] if json_only else self.driven
        return (choices or self.driven)[index % len(choices or self.driven)]

    def _fail(self, driven: _Driven, message: str) -> None:
        raise AssertionError(f"{driven.name}: {message}")

    def _call(self, driven: _Driven, operation: str, call: Callable[[], Any], count: int) -> Any:
        """Run one call; account for an injected failure. Returns the result, or a marker."""
        injected_before = self.faults.injected
        samples_before = len(driven.samples)
        raised: BaseException | None = None
        result: Any = None
        try:
            with bounded(f"{driven.name}: {operation}"):
                result = call()
        except Exception as exc:  # noqa: BLE001 - compared with the injected error below
            raised = exc
        injected = self.faults.injected - injected_before
        if len(driven.samples) != samples_before + 1:
            self._fail(
                driven,
                f"{operation} logged {len(driven.samples) - samples_before} "
                "samples; expected exactly one",
            )
        sample = driven.samples[-1]
        if not injected:
            if raised is not None:
                raise AssertionError(
                    f"{driven.name}: {operation} raised {type(raised).__name__}: {raised} "
                    "with no fault injected"
                ) from raised
            if sample.fail_reason is not None:
                self._fail(
                    driven,
                    f"{operation} succeeded but its sample has fail_reason={sample.fail_reason!r}",
                )
            return result
        error = self.faults.last_error
        self.expected[self.fault_name]["exception"] += 1
        if sample.fail_reason != str(error):
            self._fail(
                driven,
                f"{operation} failed with {error!r} but its sample has "
                f"fail_reason={sample.fail_reason!r}",
            )
        swallowed = driven.cache.fail_open and isinstance(error, BackendError)
        if swallowed:
            if raised is not None:
                self._fail(
                    driven,
                    f"{operation} raised {raised!r}; a cache that fails open "
                    "must swallow backend errors",
                )
            self.expected[driven.name]["fail_open"] += count
            if operation.startswith("get"):
                self.expected[driven.name]["miss"] += count
        else:
            if raised is not error:
                self._fail(driven, f"{operation} should have raised {error!r}, got {raised!r}")
            self.expected[driven.name]["exception"] += 1
        return _FAILED

    def _read(self, driven: _Driven, key: str) -> tuple[Any, bool]:
        """The expected answer for ``key`` (None on a miss) and whether it is corrupt."""
        entry = self.model.get(driven.backend_key(key))
        if entry is None:
            return None, False
        if not driven.is_json:
            return entry.as_bytes(), False
        return entry.decoded()

    def _count_backend_reads(self, hits: int, misses: int) -> None:
        for name in (self.fault_name, self.inner_name):
            self.expected[name]["hit"] += hits
            self.expected[name]["miss"] += misses

    def _count_backend_puts(self, puts: int) -> None:
        for name in (self.fault_name, self.inner_name):
            self.expected[name]["put"] += puts

    def _value_strategy(self, driven: _Driven) -> st.SearchStrategy[Any]:
        return _JSON_VALUES if driven.is_json else _RAW_VALUES

    # -- rules ----------------------------------------------------------------------------

    @rule(index=_INDEX, key=_KEYS)
    def get(self, index: int, key: str) -> None:
        """One get."""
        driven = self._pick(index)
        got = self._call(driven, "get", lambda: driven.cache.get(key), 1)
        if got is _FAILED:
            return
        stored = driven.backend_key(key) in self.model
        self._count_backend_reads(int(stored), int(not stored))
        expected, corrupt = self._read(driven, key)
        self.expected[driven.name]["hit" if expected is not None else "miss"] += 1
        self.expected[driven.name]["corrupt"] += corrupt
        if _canonical(got) != _canonical(expected):
            self._fail(driven, f"get({key!r}) returned {got!r}, the model holds {expected!r}")

    written = Bundle("written")

    @rule(target=written, index=_INDEX, key=_KEYS, data=st.data())
    def put(self, index: int, key: str, data: st.DataObject) -> tuple[int, str]:
        """One put of a value the cache's kind can hold."""
        return self._put_one(index, key, data)

    def _put_one(self, index: int, key: str, data: st.DataObject) -> tuple[int, str]:
        driven = self._pick(index)
        value = data.draw(self._value_strategy(driven).filter(lambda v: v is not None))
        if self._call(driven, "put", lambda: driven.cache.put(key, value), 1) is not _FAILED:
            self._store(driven, key, value)
            self._count_backend_puts(1)
            self.expected[driven.name]["put"] += 1
        return index, key

    @rule(written=written)
    def get_written(self, written: tuple[int, str]) -> None:
        """Read back a key some put wrote, through the cache that wrote it."""
        self.get(*written)

    @rule(entries=st.lists(written, min_size=1, max_size=4))
    def get_many_written(self, entries: list[tuple[int, str]]) -> None:
        """Read back several written keys in one batch, through the first one's cache."""
        self.get_many(entries[0][0], [key for _, key in entries])

    @rule(target=written, written=written, data=st.data())
    def overwrite(self, written: tuple[int, str], data: st.DataObject) -> tuple[int, str]:
        """Write a new value over a written key, through the cache that wrote it."""
        return self._put_one(*written, data)

    @rule(index=_INDEX, keys=st.lists(_KEYS, max_size=4))
    def get_many(self, index: int, keys: list[str]) -> None:
        """One batch get (duplicates and empty batches included)."""
        driven = self._pick(index)
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            if driven.cache.get_many(keys) != {}:
                self._fail(driven, "get_many([]) did not return {}")
            return
        got = self._call(driven, "get_many", lambda: driven.cache.get_many(keys), len(wanted))
        if got is _FAILED:
            return
        stored = sum(driven.backend_key(key) in self.model for key in wanted)
        self._count_backend_reads(stored, len(wanted) - stored)
        expected: dict[str, Any] = {}
        for key in wanted:
            value, corrupt = self._read(driven, key)
            self.expected[driven.name]["corrupt"] += corrupt
            if value is not None:
                expected[key] = value
        self.expected[driven.name]["hit"] += len(expected)
        self.expected[driven.name]["miss"] += len(wanted) - len(expected)
        if _canonical_map(got) != _canonical_map(expected):
            self._fail(driven, f"get_many({keys!r}) returned {got!r}, the model holds {expected!r}")

    @rule(index=_INDEX, keys=st.lists(_KEYS, max_size=4, unique=True), data=st.data())
    def put_many(self, index: int, keys: list[str], data: st.DataObject) -> None:
        """One batch put."""
        driven = self._pick(index)
        values = self._value_strategy(driven).filter(lambda v: v is not None)
        mapping = {key: data.draw(values) for key in keys}
        if not mapping:
            driven.cache.put_many(mapping)
            return
        outcome = self._call(
            driven, "put_many", lambda: driven.cache.put_many(mapping), len(mapping)
        )
        if outcome is _FAILED:
            return
        for key, value in mapping.items():
            self._store(driven, key, value)
        self._count_backend_puts(len(mapping))
        self.expected[driven.name]["put"] += len(mapping)

    @precondition(lambda self: len(self.faults.plans) < 3)
    @rule(plan=fault_plans(errors=_ERRORS))
    def add_fault(self, plan: Any) -> None:
        """Add a fault plan to the backend."""
        self.faults.add(plan)

    @rule()
    def clear_faults(self) -> None:
        """Remove every plan and bring the backend up."""
        self.faults.clear()

    @rule()
    def go_down(self) -> None:
        """Take the backend down: every call fails until it comes up."""
        self.faults.down()

    @rule()
    def come_up(self) -> None:
        """Bring the backend up; plans stay."""
        self.faults.up()

    @rule(target=written, index=_INDEX, key=_KEYS, garbage=_GARBAGE)
    def write_corrupt_entry(self, index: int, key: str, garbage: bytes) -> tuple[int, str]:
        """Write bytes that may not be JSON under a cache's key, behind the fault layer."""
        driven = self._pick(index, json_only=True)
        backend_key = driven.backend_key(key)
        self.inner.put(backend_key, garbage)
        self.model[backend_key] = _Entry(raw=garbage)
        self.expected[self.inner_name]["put"] += 1
        return self.driven.index(driven), key

    def _store(self, driven: _Driven, key: str, value: Any) -> None:
        backend_key = driven.backend_key(key)
        self.model[backend_key] = _Entry(value=value) if driven.is_json else _Entry(raw=value)

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def stats_are_exact(self) -> None:
        """Every counter of each cache and of both backend layers equals the model's.

        Names the model does not know (backends nested inside the inner one) are not checked.
        """
        snapshot = self.stats.snapshot()
        names = {d.name for d in self.driven} | {self.fault_name, self.inner_name}
        for name in sorted(names):
            stat = snapshot.get(name)
            actual = {c: getattr(stat, c) for c in COUNTERS} if stat else dict.fromkeys(COUNTERS, 0)
            wanted = {c: self.expected[name][c] for c in COUNTERS}
            if actual != wanted:
                differ = ", ".join(
                    f"{c} {actual[c]} (expected {wanted[c]})"
                    for c in COUNTERS
                    if actual[c] != wanted[c]
                )
                raise AssertionError(f"cache_stats[{name!r}] is wrong: {differ}")


_FAILED = object()
