"""The process-wide, thread-safe registry of cache counters."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import threading
import weakref
from collections.abc import Iterator

from remote_cache._guard import Guard, ReenteredError
from remote_cache._process import at_fork, on_reset

__all__ = ["CacheStat", "CacheStats", "cache_stats", "dump_cache_stats"]

log = logging.getLogger("remote_cache")


@dataclasses.dataclass(slots=True)
class CacheStat:
    """Counters of one cache or backend name.

    ``hit``, ``miss``, ``put`` and ``exception`` keep upstream's meaning. Ours adds
    ``skipped`` (calls an open circuit breaker skipped), ``corrupt`` (stored entries that
    could not be decoded; each is also a miss), ``fail_open`` (backend failures a cache
    swallowed: the get became a miss, the put was dropped), and the total seconds spent
    in gets and puts with their call counts, for latency.
    """

    miss: int = 0
    hit: int = 0
    put: int = 0
    exception: int = 0
    skipped: int = 0
    corrupt: int = 0
    fail_open: int = 0
    get_calls: int = 0
    get_seconds: float = 0.0
    put_calls: int = 0
    put_seconds: float = 0.0

    @property
    def get_latency(self) -> float | None:
        """Mean seconds per timed get, or None when no get was timed."""
        return self.get_seconds / self.get_calls if self.get_calls else None

    @property
    def put_latency(self) -> float | None:
        """Mean seconds per timed put, or None when no put was timed."""
        return self.put_seconds / self.put_calls if self.put_calls else None

    def __str__(self) -> str:
        # Upstream's exact format: log scrapers parse this line.
        return (
            f"{{hit: {self.hit}, miss: {self.miss}, put: {self.put}, exception: {self.exception}}}"
        )

    def __format__(self, spec: str) -> str:
        """``f"{stat}"`` is ``str(stat)`` (upstream's four fields); ``f"{stat:all}"`` shows all.

        The fields come in ``str``'s order, then the others as declared, in ``str``'s style:
        ``{hit: 1, miss: 0, put: 0, exception: 0, skipped: 0, ..., put_seconds: 0.0}``.
        """
        if spec == "":
            return str(self)
        if spec != "all":
            raise ValueError(
                f"Unknown format {spec!r} for CacheStat: use '' (upstream's four) or 'all'"
            )
        names: tuple[str, ...] = ("hit", "miss", "put", "exception")
        names += tuple(name for name in _FIELDS if name not in names)
        return "{" + ", ".join(f"{name}: {getattr(self, name)}" for name in names) + "}"


_FIELDS = tuple(field.name for field in dataclasses.fields(CacheStat))


def _add_into(total: dict[str, CacheStat], counts: dict[str, CacheStat]) -> None:
    for name, stat in list(counts.items()):
        into = total.get(name)
        if into is None:
            total[name] = dataclasses.replace(stat)
            continue
        for field in _FIELDS:
            setattr(into, field, getattr(into, field) + getattr(stat, field))


class _Owner:
    """Kept in one thread's local storage only: it dies when the thread ends, for any thread."""

    __slots__ = ("__weakref__",)


class CacheStats:
    """Counters per name, exact under threads; upstream's recording methods are kept.

    ``cache_stats[name]`` reads one name (all zeros when it was never recorded);
    ``snapshot()`` copies all of them; ``reset()`` clears.

    Recording takes no lock: each thread counts into a shard of its own, and reads add the
    shards up (under a lock), so counts are exact whatever the threads do. When a thread ends
    (any thread: ``threading``, ``_thread`` or one made in C), its shard is added into the
    common counts and dropped, so memory follows the live threads. A reading taken while
    other threads record may include some fields of a call in flight and not others; calls
    in flight during ``reset()`` may be counted on either side of it. A forked child starts
    with the parent's counts and a lock of its own (see ``_before_fork``).

    Recording is safe from a signal handler or a ``__del__`` that interrupts this thread
    anywhere, in the cache or in the registry: it takes no lock, and creating a
    thread's shard or a name's counters publishes them with one atomic dict operation. A read
    (``snapshot()``, ``reset()``) made from such a hook while the interrupted frame is itself
    reading raises ``ReenteredError`` (a ``RuntimeError``) instead of waiting for it forever.
    A counter is one ``+= 1``, which CPython 3.11 and later never splits for a signal; a
    tracing hook with opcode events (``f_trace_opcodes``) that itself calls a cache can land
    inside it, and that count is lost.
    """

    def __init__(self) -> None:
        self._lock = Guard()
        self._local = threading.local()
        self._base: dict[str, CacheStat] = {}
        """Counts no thread writes to any more: swapped in, or left by threads that ended."""
        self._shards: dict[weakref.ref[_Owner], dict[str, CacheStat]] = {}
        """Each live thread's shard, under a weak reference to the thread's ``_Owner``."""
        self._ended: list[weakref.ref[_Owner]] = []
        """Threads that ended while the lock was taken: the next holder folds their shards."""
        self._held_for_fork = False
        _registries.add(self)

    def _new_stat(self, name: str) -> CacheStat:
        """Create ``name``'s counters in this thread's shard (and the shard, the first time)."""
        try:
            shard: dict[str, CacheStat] = self._local.stats
        except AttributeError:
            shard = self._new_shard()
        stat = shard.get(name)
        if stat is None:
            # setdefault, not an assignment: a signal handler that counted under ``name``
            # while CacheStat() ran keeps its counters.
            stat = shard.setdefault(name, CacheStat())
        return stat

    def _new_shard(self) -> dict[str, CacheStat]:
        """This thread's shard, created and registered once, with no lock.

        Each step is one atomic dict operation, so a signal handler (or a ``__del__``) of
        this thread landing anywhere here, or another thread reading, never waits and never
        loses counts: the first shard published in this thread's storage is the one kept;
        another made meanwhile is empty, and folded when its owner dies on return.
        """
        owner, shard = _Owner(), dict[str, CacheStat]()
        self._shards[weakref.ref(owner, self._thread_ended)] = shard
        _, kept = self._local.__dict__.setdefault("owned", (owner, shard))
        self._local.stats = kept
        stats: dict[str, CacheStat] = kept
        return stats

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock; on the way out, fold the shards of threads that ended meanwhile.

        Raises ``ReenteredError`` when this thread holds it already (a read from a signal
        handler that interrupted a read), rather than waiting for itself forever.
        """
        if not self._lock.enter():
            raise ReenteredError(
                "cache_stats read from a signal handler (or __del__) that interrupted a read"
            )
        try:
            self._fold_ended()
            yield
        finally:
            self._release()

    def _release(self) -> None:
        # A thread that ended while we held the lock left its shard in ``_ended`` and a fold
        # for us to run (its callback cannot wait: it may run in a forked child that
        # inherited the lock held); the guard runs it as it leaves, or right after.
        self._lock.leave()

    def _fold_ended(self) -> None:
        """Add the shards of ended threads into the common counts. Hold the lock."""
        while self._ended:
            shard = self._shards.pop(self._ended.pop(), None)
            if shard is not None:
                _add_into(self._base, shard)

    def _thread_ended(self, owner: weakref.ref[_Owner]) -> None:
        """A thread's local storage was freed: fold its shard now, or leave it to the holder."""
        self._ended.append(owner)
        if not self._lock.enter(timeout=0):
            self._lock.defer(self._fold_ended)
            return
        try:
            self._fold_ended()
        finally:
            self._release()

    def _shard_count(self) -> int:
        """How many shards are kept: one per live thread that recorded something."""
        with self._locked():
            return len(self._shards)

    def _before_fork(self) -> None:
        """Take the lock, so that a child inherits consistent counts and an unheld lock."""
        # Critical sections are short; the wait is bounded in case the forking thread itself
        # holds the lock (a signal handler that forks), where waiting would never end.
        self._held_for_fork = self._lock.enter(timeout=_FORK_WAIT_SECONDS)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._release()

    def _after_fork_in_child(self) -> None:
        # The child's only thread is the one that forked: a new lock is free whoever held
        # the old one. The other threads' shards were queued as ended when the child freed
        # their thread states, before this handler ran; fold them now.
        self._held_for_fork = False
        self._lock = Guard()
        with self._locked():
            pass

    def _stat(self, name: str) -> CacheStat:
        """This thread's counters of ``name``."""
        try:
            return self._local.stats[name]  # type: ignore[no-any-return]
        except (AttributeError, KeyError):
            return self._new_stat(name)

    def get(self, name: str, value: object | None) -> None:
        """Count a hit when ``value`` is not None, else a miss."""
        try:
            stat = self._local.stats[name]
        except (AttributeError, KeyError):
            stat = self._new_stat(name)
        if value is None:
            stat.miss += 1
        else:
            stat.hit += 1

    def hit(self, name: str, count: int = 1) -> None:
        """Count ``count`` hits."""
        self._stat(name).hit += count

    def miss(self, name: str, count: int = 1) -> None:
        """Count ``count`` misses."""
        self._stat(name).miss += count

    def put(self, name: str, count: int = 1) -> None:
        """Count ``count`` puts."""
        try:
            stat = self._local.stats[name]
        except (AttributeError, KeyError):
            stat = self._new_stat(name)
        stat.put += count

    def exception(self, name: str, count: int = 1) -> None:
        """Count ``count`` exceptions."""
        self._stat(name).exception += count

    def skipped(self, name: str, count: int = 1) -> None:
        """Count ``count`` calls skipped by an open circuit breaker."""
        self._stat(name).skipped += count

    def corrupt(self, name: str, count: int = 1) -> None:
        """Count ``count`` corrupt entries read."""
        self._stat(name).corrupt += count

    def fail_open(self, name: str, count: int = 1) -> None:
        """Count ``count`` backend failures that a cache swallowed."""
        self._stat(name).fail_open += count

    def timed_get(self, name: str, hits: int, misses: int, seconds: float) -> None:
        """Count the hits and misses of one timed get (or batch get) lasting ``seconds``."""
        try:
            stat = self._local.stats[name]
        except (AttributeError, KeyError):
            stat = self._new_stat(name)
        stat.hit += hits
        stat.miss += misses
        stat.get_calls += 1
        stat.get_seconds += seconds

    def timed_put(self, name: str, puts: int, seconds: float) -> None:
        """Count the entries written by one timed put (or batch put) lasting ``seconds``."""
        try:
            stat = self._local.stats[name]
        except (AttributeError, KeyError):
            stat = self._new_stat(name)
        stat.put += puts
        stat.put_calls += 1
        stat.put_seconds += seconds

    def _collect(self) -> dict[str, CacheStat]:
        """Add up the common counts and every live thread's shard into a new dict. Hold the lock."""
        total: dict[str, CacheStat] = {}
        _add_into(total, self._base)
        for shard in list(self._shards.values()):
            _add_into(total, shard)
        return total

    def __getitem__(self, name: str) -> CacheStat:
        """Return a copy of the counters of ``name`` (zeros when never recorded)."""
        return self.snapshot().get(name) or CacheStat()

    def __contains__(self, name: object) -> bool:
        """Whether anything was recorded under ``name``."""
        return name in self.snapshot()

    def __iter__(self) -> Iterator[str]:
        """Iterate over the recorded names, sorted."""
        return iter(sorted(self.snapshot()))

    def __len__(self) -> int:
        """Return the number of recorded names."""
        return len(self.snapshot())

    def snapshot(self) -> dict[str, CacheStat]:
        """Return ``{name: CacheStat}`` copies: the sum of every thread's counts."""
        with self._locked():
            return self._collect()

    def _clear_shards(self) -> None:
        for shard in list(self._shards.values()):
            shard.clear()

    def reset(self) -> None:
        """Forget every counter."""
        with self._locked():
            self._base = {}
            self._clear_shards()

    def swap(self, stats: dict[str, CacheStat]) -> dict[str, CacheStat]:
        """Install ``stats`` as the counters and return (a sum of) the previous ones.

        For the harness (``isolated_cache_stats``), which counts a block apart and puts the
        process's counters back after it.
        """
        with self._locked():
            previous = self._collect()
            self._base = stats
            self._clear_shards()
            return previous

    def __repr__(self) -> str:
        return f"CacheStats({self.snapshot()!r})"


_FORK_WAIT_SECONDS = 5.0
_registries: weakref.WeakSet[CacheStats] = weakref.WeakSet()


def _before_fork() -> None:
    for registry in list(_registries):
        registry._before_fork()


def _after_fork_in_parent() -> None:
    for registry in list(_registries):
        registry._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for registry in list(_registries):
        registry._after_fork_in_child()


at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)

cache_stats = CacheStats()
on_reset(cache_stats.reset, counters=True)


def format_cache_stats(stats: dict[str, CacheStat]) -> str:
    """Format counters as upstream's ``Cache Metrics:`` message."""
    if not stats:
        return "Cache Metrics: None"
    lines = [f"  {name}: {stat}" for name, stat in sorted(stats.items())]
    return "Cache Metrics:\n" + "\n".join(lines)


@atexit.register
def dump_cache_stats() -> None:
    """Log every counter at INFO on the ``remote_cache`` logger, in upstream's format."""
    if not log.isEnabledFor(logging.INFO):
        return
    log.info("%s", format_cache_stats(cache_stats.snapshot()))
