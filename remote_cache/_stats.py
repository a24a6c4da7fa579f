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


class CacheStats:
    """Counters per name, exact under threads; upstream's recording methods are kept.

    ``cache_stats[name]`` reads one name (all zeros when it was never recorded);
    ``snapshot()`` copies all of them; ``reset()`` clears.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, CacheStat] = {}

    def _stat(self, name: str) -> CacheStat:
        # Caller holds the lock.
        stat = self._stats.get(name)
        if stat is None:
            stat = self._stats[name] = CacheStat()
        return stat

    def get(self, name: str, value: object | None) -> None:
        """Count a hit when ``value`` is not None, else a miss."""
        with self._lock:
            stat = self._stats.get(name) or self._stat(name)
            if value is None:
                stat.miss += 1
            else:
                stat.hit += 1

    def hit(self, name: str, count: int = 1) -> None:
        """Count ``count`` hits."""
        with self._lock:
            self._stat(name).hit += count

    def miss(self, name: str, count: int = 1) -> None:
        """Count ``count`` misses."""
        with self._lock:
            self._stat(name).miss += count

    def put(self, name: str, count: int = 1) -> None:
        """Count ``count`` puts."""
        with self._lock:
            stat = self._stats.get(name) or self._stat(name)
            stat.put += count

    def exception(self, name: str, count: int = 1) -> None:
        """Count ``count`` exceptions."""
        with self._lock:
            self._stat(name).exception += count

    def skipped(self, name: str, count: int = 1) -> None:
        """Count ``count`` calls skipped by an open circuit breaker."""
        with self._lock:
            self._stat(name).skipped += count

    def corrupt(self, name: str, count: int = 1) -> None:
        """Count ``count`` corrupt entries read."""
        with self._lock:
            self._stat(name).corrupt += count

    def fail_open(self, name: str, count: int = 1) -> None:
        """Count ``count`` backend failures that a cache swallowed."""
        with self._lock:
            self._stat(name).fail_open += count

    def timed_get(self, name: str, hits: int, misses: int, seconds: float) -> None:
        """Count the hits and misses of one timed get (or batch get) lasting ``seconds``."""
        with self._lock:
            stat = self._stats.get(name) or self._stat(name)
            stat.hit += hits
            stat.miss += misses
            stat.get_calls += 1
            stat.get_seconds += seconds

    def timed_put(self, name: str, puts: int, seconds: float) -> None:
        """Count the entries written by one timed put (or batch put) lasting ``seconds``."""
        with self._lock:
            stat = self._stats.get(name) or self._stat(name)
            stat.put += puts
            stat.put_calls += 1
            stat.put_seconds += seconds

    def __getitem__(self, name: str) -> CacheStat:
        """Return a copy of the counters of ``name`` (zeros when never recorded)."""
        with self._lock:
            stat = self._stats.get(name)
            return dataclasses.replace(stat) if stat is not None else CacheStat()

    def __contains__(self, name: object) -> bool:
        """Whether anything was recorded under ``name``."""
        return name in self._stats

    def __iter__(self) -> Iterator[str]:
        """Iterate over the recorded names, sorted."""
        return iter(sorted(self.snapshot()))

    def __len__(self) -> int:
        """Return the number of recorded names."""
        return len(self._stats)

    def snapshot(self) -> dict[str, CacheStat]:
        """Return ``{name: CacheStat}`` copies, consistent with each other."""
        with self._lock:
            return {name: dataclasses.replace(stat) for name, stat in self._stats.items()}

    def reset(self) -> None:
        """Forget every counter."""
        with self._lock:
            self._stats = {}

    def _swap(self, stats: dict[str, CacheStat]) -> dict[str, CacheStat]:
        """Install ``stats`` as the live counters and return the previous ones."""
        with self._lock:
            previous, self._stats = self._stats, stats
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
