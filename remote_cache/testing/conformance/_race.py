"""The race engine behind ``check_concurrency``: what the concurrent workers share and do.

``_Race`` holds the values the workers write and read and the signals they wait on, and
runs one worker's part; ``_Outcome`` checks what the workers reported and left behind.
The workers run as threads (``_concurrency``) or as processes (``_processes``): the race
is the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

from remote_cache import RemoteCacheBackend
from remote_cache.testing.conformance._diagnostics import _describe, _is, _short, _violation
from remote_cache.testing.conformance._probe import _Probe
from remote_cache.testing.conformance._worker import _LATE, _STALE, _Problem, _Stop, _Worker

# While the concurrent checks run, the interpreter switches threads every 10 µs instead of
# every 5 ms, so that unlocked check-then-act sequences interleave on every run, not by luck.
_SWITCH_INTERVAL = 1e-5
_BARRIER_TIMEOUT = 120.0


@contextlib.contextmanager
def _fast_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _writer_keys(seed_value: int, name: str, worker: int, count: int) -> dict[str, bytes]:
    rng = random.Random(seed_value * 1000 + worker)
    return {
        f"{name}-{worker}-{i}": f"{worker}:{i}:".encode() + rng.randbytes(rng.randrange(1, 64))
        for i in range(count)
    }


def _torn_values(seed_value: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed_value)
    return rng.randbytes(256 * 1024), rng.randbytes(256 * 1024 + 1)


def _pool_values(seed_value: int, name: str) -> dict[str, bytes]:
    """Keys stored before the workers start, read by all of them in different orders."""
    rng = random.Random(seed_value * 7 + 3)
    return {f"{name}-pool-{i}": f"pool {i}:".encode() + rng.randbytes(40) for i in range(5)}


def _same_values(seed_value: int, workers: int) -> list[bytes]:
    """One value per worker, all written under one key at once (several ranks, one graph)."""
    rng = random.Random(seed_value * 11 + 5)
    return [f"writer {w}:".encode() + rng.randbytes(256 * 1024 + w) for w in range(workers)]


@dataclasses.dataclass
class _Race:
    """What the concurrent workers share: the values to write and read, and the signals."""

    torn: tuple[bytes, bytes]
    pool: dict[str, bytes]
    same: list[bytes]
    rounds: int
    reads: int
    barrier: Any
    done: Any
    other_processes: bool
    late: str = "late"
    """The key every worker misses before one writes it (one per run: threads, processes)."""
    known: dict[bytes, str] = dataclasses.field(default_factory=dict)
    """Every value written in the run, to its key: names a reply meant for another key."""

    @classmethod
    def begin(
        cls,
        seed: int,
        tag: str,
        workers: int,
        rounds: int,
        signals: Any,
        *,
        other_processes: bool,
    ) -> _Race:
        """A race of ``workers``, its values drawn from ``seed`` and ``tag``; ``signals`` makes
        the barrier and the event (the ``threading`` module, or a multiprocessing context)."""
        return cls(
            _torn_values(seed),
            _pool_values(seed, tag),
            _same_values(seed, workers),
            rounds,
            rounds * 4,
            signals.Barrier(workers),
            signals.Event(),
            other_processes=other_processes,
            late=f"late-{tag}",
        )

    def learn(self, plans: list[dict[str, bytes]]) -> None:
        """Record the values written in the run, to name the key a wrong reply belongs to."""
        for key, value in (
            *zip(["torn", "torn"], self.torn, strict=True),
            *self.pool.items(),
            *(("same", value) for value in self.same),
            *(("stale", value) for value in _STALE),
            (self.late, _LATE),
            *(item for plan in plans for item in plan.items()),
        ):
            self.known[value] = key

    def work(self, backend: RemoteCacheBackend[Any], worker: int, keys: dict[str, bytes]) -> Any:
        """Run one worker's part; return its ``_Problem``, or None when all went well."""
        label = f"{'process' if self.other_processes else 'thread'} {worker}"
        try:
            self._work(_Worker(backend, label, self.other_processes, self.known), worker, keys)
        except _Stop as stop:
            self.done.set()
            if not stop.problem.stalled:
                self.barrier.abort()
            return stop.problem
        return None

    def _wait(self, step: _Worker, phase: str) -> None:
        try:
            self.barrier.wait(_BARRIER_TIMEOUT)
        except threading.BrokenBarrierError:
            raise _Stop(
                _Problem(step.label, f"waiting for the others {phase}", None, "", "", stalled=True)
            ) from None

    def _work(self, step: _Worker, worker: int, keys: dict[str, bytes]) -> None:
        items = list(keys.items())
        half = len(items) // 2
        # 1. Distinct keys at once, by put and put_many.
        self._wait(step, "before writing")
        for key, value in items[:half]:
            step.put(key, value)
        step.put_many(dict(items[half:]))
        # 2. One worker overwrites a large value; the others read it, their own keys and the
        #    shared pool, each in its own order: a reply meant for another key shows.
        if worker == 0:
            try:
                for round_number in range(self.rounds):
                    step.put("torn", self.torn[(round_number + 1) % 2])
            finally:
                self.done.set()
        else:
            pool = list(self.pool.items())
            count = 0
            while count < self.reads or not self.done.is_set():
                step.read_torn(self.torn)
                own_key, own_value = items[count % len(items)]
                step.get(own_key, own_value, own=True)
                pool_key, pool_value = pool[(count * worker + worker) % len(pool)]
                step.get(pool_key, pool_value)
                if count % 8 == 0:
                    step.get_many({own_key: own_value, pool_key: pool_value})
                count += 1
        # 3. Every worker writes one key at once, several times (several ranks compiling
        #    one graph): no crash, and the value left is one of those written, whole.
        for _ in range(max(self.rounds // 8, 4)):
            self._wait(step, "before writing one key together")
            step.put("same", self.same[worker], tolerate_backend_errors=True)
        self._wait(step, "after writing one key together")
        step.read_same(self.same)
        # 4. A read primes any read cache; another worker (in another process) overwrites;
        #    the next read must see the new value.
        step.get("stale", _STALE[0], after="before another worker overwrote it, ")
        self._wait(step, "before the overwrite")
        if worker == 0:
            step.put("stale", _STALE[1])
        self._wait(step, "after the overwrite")
        step.get("stale", _STALE[1], after="after another worker overwrote it, ", stale=True)
        # 5. Every worker misses a key (priming any cache of misses); one writes it; every
        #    worker must now read it.
        step.get(self.late, None, after="before any worker wrote it, ")
        self._wait(step, "before the late write")
        if worker == 0:
            step.put(self.late, _LATE)
        self._wait(step, "after the late write")
        step.get(self.late, _LATE, after="after another worker wrote it, ", missed=True)


@dataclasses.dataclass
class _Outcome:
    """What a concurrent run is checked for afterwards."""

    check: str
    workers: str
    replay: str
    expected: dict[str, bytes]
    processes: bool = False

    def verify(self, backend: RemoteCacheBackend[Any], problems: list[_Problem]) -> None:
        """Raise on a worker's problem first, then on any write lost."""
        real = [problem for problem in problems if not problem.stalled]
        if real or problems:
            problem = (real or problems)[0]
            if problem.stalled:
                raise _violation(
                    backend,
                    self.check,
                    f"{self.workers}: {problem.worker}: {problem.operation}",
                    expected=f"every worker to finish within {_BARRIER_TIMEOUT:.0f} s",
                    actual="one never did (a deadlock, or a call that hangs?)",
                    note="a connection opened before the fork, shared by both processes, can "
                    "leave one waiting for a reply the other took: reopen it when os.getpid() "
                    "changes"
                    if "fork" in self.workers
                    else None,
                    replay=self.replay,
                )
            raise _violation(
                backend,
                self.check,
                f"{self.workers} at once; {problem.worker}: {problem.operation}",
                key=problem.key,
                expected=problem.expected,
                actual=problem.actual,
                note=problem.note,
                replay=self.replay,
            )
        probe = _Probe(backend, self.check, self.replay)
        lost = []
        for key, value in self.expected.items():
            got = probe.call(f"get({_short(key)})", backend.get, key)
            if not _is(got, value):
                lost.append((key, got, value))
        if lost:
            key, got, value = lost[0]
            if len(lost) == len(self.expected) and self.processes:
                note = (
                    f"all {len(lost)} writes made in the other processes lost: their "
                    "backends share no entries with this one (not shared at all? a folder or "
                    "prefix chosen per process, or keys named by hash()?)"
                )
            elif len(lost) == len(self.expected):
                note = f"all {len(lost)} concurrent writes lost"
            else:
                note = (
                    f"{len(lost)} of {len(self.expected)} concurrent writes lost (an unlocked "
                    "read-modify-write of a shared file or record?)"
                )
            raise _violation(
                backend,
                self.check,
                f"after {self.workers} put distinct keys at once, get({_short(key)})",
                key=key,
                expected=_describe(value),
                actual=_describe(got),
                note=note,
                replay=self.replay,
            )


def _plans(seed_value: int, name: str, workers: int, count: int) -> list[dict[str, bytes]]:
    return [_writer_keys(seed_value, name, worker, count) for worker in range(workers)]


def _prepare(
    backend: RemoteCacheBackend[Any], probe: _Probe, race: _Race, same_start: bytes
) -> None:
    """Store what the workers read before they start, and read it once (priming caches)."""
    probe.put("torn", race.torn[0])
    for key, value in race.pool.items():
        probe.put(key, value)
    probe.put("same", same_start)
    probe.put("stale", _STALE[0])
    probe.get("stale", _STALE[0], after="put('stale', …), then ")
    probe.get(race.late, None, after="before the workers start, ")  # primes a miss cache
