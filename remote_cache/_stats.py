"""The process-wide, thread-safe registry of cache counters."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from collections.abc import Iterator

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


_FIELDS = tuple(field.name for field in dataclasses.fields(CacheStat))


def _add_into(total: dict[str, CacheStat], counts: dict[str, CacheStat]) -> None:
    for name, stat in list(counts.items()):
        into = total.get(name)
        if into is None:
            total[name] = dataclasses.replace(stat)
            continue
        for field in _FIELDS:
            setattr(into, field, getattr(into, field) + getattr(stat, field))


class CacheStats:
    """Counters per name, exact under threads; upstream's recording methods are kept.

    ``cache_stats[name]`` reads one name (all zeros when it was never recorded);
    ``snapshot()`` copies all of them; ``reset()`` clears.

    Recording takes no lock: each thread counts into a shard of its own, and reads add the
    shards up (under a lock), so counts are exact whatever the threads do. A reading taken
    while other threads record may include some fields of a call in flight and not others;
    calls in flight during ``reset()`` may be counted on either side of it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._base: dict[str, CacheStat] = {}
        """Counts no thread writes to any more: swapped in, or left by threads that ended."""
        self._shards: list[tuple[threading.Thread, dict[str, CacheStat]]] = []

    def _new_stat(self, name: str) -> CacheStat:
        """Create ``name``'s counters in this thread's shard (and the shard, the first time)."""
        try:
            shard: dict[str, CacheStat] = self._local.stats
        except AttributeError:
            shard = self._local.stats = {}
            with self._lock:
                self._shards.append((threading.current_thread(), shard))
        stat = shard.get(name)
        if stat is None:
            stat = shard[name] = CacheStat()
        return stat

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
        """Add up every shard into a new dict; fold the shards of ended threads. Hold the lock."""
        main = threading.main_thread()
        alive = []
        for thread, shard in self._shards:
            if thread.is_alive() or thread is main:
                alive.append((thread, shard))
            else:
                _add_into(self._base, shard)
        self._shards = alive
        total: dict[str, CacheStat] = {}
        _add_into(total, self._base)
        for _, shard in alive:
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
        with self._lock:
            return self._collect()

    def _clear_shards(self) -> None:
        for _, shard in self._shards:
            shard.clear()

    def reset(self) -> None:
        """Forget every counter."""
        with self._lock:
            self._base = {}
            self._clear_shards()

    def _swap(self, stats: dict[str, CacheStat]) -> dict[str, CacheStat]:
        """Install ``stats`` as the counters and return (a sum of) the previous ones."""
        with self._lock:
            previous = self._collect()
            self._base = stats
            self._clear_shards()
            return previous

    def __repr__(self) -> str:
        return f"CacheStats({self.snapshot()!r})"


cache_stats = CacheStats()


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
