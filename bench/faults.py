"""What the fault layer costs a cache's get when no fault matches it.

Three ``RemoteFxGraphCache`` gets side by side, on one in-memory store: straight on it; behind
a ``FaultInjectingBackend`` with nothing applied (what ``remote_cache_outage`` costs in
itself); and behind one with a schedule applied whose faults match other calls (the faults of
other operations and keys: what having a schedule costs). Target: the schedule adds at most
10 % to the layer.
"""

from __future__ import annotations

from typing import Any

from bench._timing import ops_per_second
from remote_cache import RemoteFxGraphCache
from remote_cache.testing import FaultInjectingBackend, InMemoryBackend
from remote_cache.testing.faults import Chance, Fault, Hang, Latency, Reply, Schedule

ROUNDS = 9
NUMBER = 40_000
TARGET = 1.10
"""The most a schedule whose faults do not match may cost, against no schedule."""

UNMATCHED = Schedule(
    [
        Fault(Reply("OOM"), on="put"),  # another operation
        Fault(Hang(), on="get", key="pt2:*::cold-*"),  # another key
        Fault(Latency(0.5), cache="autotune*", when=Chance(0.5)),  # another cache
    ],
    seed=0,
)


def _get_loop(backend: Any, schedule: Schedule | None = None) -> Any:
    cache = RemoteFxGraphCache("bench-faults", backend=backend)
    cache.put("hot", {"data": "x" * 220, "time_taken_ms": 1234})
    if schedule is not None:
        backend.apply(schedule)  # after the put: its faults are for the other calls
    assert cache.get("hot") is not None

    def loop(n: int) -> None:
        read = cache.get
        for _ in range(n):
            read("hot")

    return loop


def measure() -> dict[str, float]:
    """Gets per second of each subject (medians of interleaved rounds)."""
    subjects = {
        "in-memory": _get_loop(InMemoryBackend()),
        "fault layer, nothing applied": _get_loop(
            FaultInjectingBackend(InMemoryBackend(), deadline=1)
        ),
        "fault layer, faults not matching": _get_loop(
            FaultInjectingBackend(InMemoryBackend(), deadline=1), UNMATCHED
        ),
    }
    rates = ops_per_second(subjects, rounds=ROUNDS, number=NUMBER)
    assert not UNMATCHED.fired, f"a fault matched the benchmark's gets: {UNMATCHED.fired[:1]}"
    return rates


def main() -> dict[str, Any]:
    """Print the figures; return them with the ratios."""
    rates = measure()
    bare = rates["in-memory"]
    layer = rates["fault layer, nothing applied"]
    scheduled = rates["fault layer, faults not matching"]
    cost = layer / scheduled
    print(f"a cache's get behind the fault layer (median of {ROUNDS} rounds)")
    for name, rate in rates.items():
        print(f"  {name:<34} {rate:12,.0f} gets/s   {bare / rate:5.2f}x the time of in-memory")
    verdict = "ok" if cost <= TARGET else f"OVER {TARGET}x"
    print(f"  a schedule whose faults do not match: {cost:.3f}x the layer's time   {verdict}")
    return {"rates": rates, "schedule_cost": cost, "layer_cost": bare / layer, "target": TARGET}


def markdown(results: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks.md."""
    rates = results["rates"]
    bare = rates["in-memory"]
    lines = [
        "## The fault layer: a cache's get when no fault matches",
        "",
        "`RemoteFxGraphCache.get` of a 250-byte value on an in-memory store, straight, behind a",
        "`FaultInjectingBackend` with nothing applied (`remote_cache_outage` in itself), and",
        "with a schedule of three faults for other operations, keys and caches applied.",
        "",
        "| subject | gets per second | time against in-memory |",
        "|---|---:|---:|",
    ]
    for name, rate in rates.items():
        lines.append(f"| {name} | {rate:,.0f} | {bare / rate:.2f}x |")
    cost = results["schedule_cost"]
    lines += [
        "",
        f"A schedule whose faults do not match costs {cost:.3f}x the layer's time "
        f"(target: at most {results['target']:.2f}x).",
        "",
    ]
    return lines
