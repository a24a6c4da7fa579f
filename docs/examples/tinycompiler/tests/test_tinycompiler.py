"""The tiny compiler's tests, written with remote_cache's fixtures as a downstream project would."""

from __future__ import annotations

import time

import pytest
from tinycompiler import CACHE_ID, Compiler, graph_hash

from remote_cache import CacheStats
from remote_cache.testing import (
    FakeRedisFixture,
    MemoryFixture,
    OutageFixture,
    OutageProxy,
    RecorderFixture,
    RedisFixture,
    VirtualClock,
)
from remote_cache.testing.faults import Fault, Reply, Schedule
from remote_cache.testing.outages import OUTAGES


def test_hit_after_miss(remote_cache_memory: MemoryFixture, remote_cache_stats: CacheStats) -> None:
    first, second = Compiler(), Compiler()
    assert first.compile("x = 1") == second.compile("x = 1")
    assert (first.compilations, second.compilations) == (1, 0)
    stat = remote_cache_stats["RemoteFxGraphCache"]
    assert (stat.hit, stat.miss, stat.put) == (1, 1, 1)
    assert list(remote_cache_memory.entries) == [f"pt2:{CACHE_ID}::{graph_hash('x = 1')}:c1"]


def test_calls_recorded(remote_cache_recorder: RecorderFixture) -> None:
    Compiler().compile("y = 2")
    Compiler().compile("y = 2")
    assert remote_cache_recorder.ops() == ["get", "put", "get"]
    assert remote_cache_recorder.calls[2].result is not None


def test_outage_loses_nothing(
    remote_cache_outage: OutageFixture, remote_cache_stats: CacheStats
) -> None:
    compiler = Compiler()
    compiler.compile("before")
    remote_cache_outage.down()
    assert compiler.compile("before") == "EROFEB"  # compiled again: the cache is down
    assert compiler.compile("during") == "GNIRUD"
    remote_cache_outage.up()
    assert compiler.compile("before") == "EROFEB"
    assert compiler.compilations == 3, "the entry stored before the outage is still there"
    assert remote_cache_stats["RemoteFxGraphCache"].fail_open == 4  # two gets, two puts


def test_redis_outage_fails_open(remote_cache_fakeredis: FakeRedisFixture) -> None:
    compiler = Compiler()
    compiler.compile("z")
    remote_cache_fakeredis.disconnect()
    assert compiler.compile("z") == "Z"
    remote_cache_fakeredis.reconnect()
    compiler.compile("z")
    assert compiler.compilations == 2


def test_real_redis_round_trip(remote_cache_redis: RedisFixture) -> None:
    Compiler().compile("real")
    compiler = Compiler()
    compiler.compile("real")
    assert compiler.compilations == 0
    assert remote_cache_redis.client.exists(f"pt2:{CACHE_ID}::{graph_hash('real')}:c1")


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_proxy_faults_bounded_and_recovered(remote_cache_proxy: OutageProxy, fault: str) -> None:
    compiler = Compiler()
    compiler.compile("kept")
    getattr(remote_cache_proxy, fault)()
    started = time.monotonic()
    assert compiler.compile("kept") == "TPEK"
    assert time.monotonic() - started < 0.3 * 2 + 0.5, "bounded by the fixture's timeouts"
    remote_cache_proxy.restore()
    compiler.compile("kept")
    assert compiler.compilations == 2, "after recovery the stored entry is read again"


def test_memory_full_on_writes_only(remote_cache_outage: OutageFixture) -> None:
    compiler = Compiler()
    compiler.compile("x = 1")
    remote_cache_outage.apply(Schedule([Fault(Reply("OOM"), on="put")]))
    compiler.compile("x = 1")  # still read from the cache: only writes are refused
    compiler.compile("y = 2")  # compiled, and its put dropped, counted and logged once
    assert compiler.compilations == 2


@pytest.mark.parametrize("name", ["restart-loading", "port-closed", "busy-script"])
def test_builds_through_an_outage_that_ends(
    name: str, remote_cache_fakeredis: FakeRedisFixture, remote_cache_clock: VirtualClock
) -> None:
    compiler = Compiler()
    compiler.compile("x = 1")
    outage = OUTAGES[name]
    remote_cache_fakeredis.apply(outage.schedule())
    assert compiler.compile("x = 1") == "1 = X"  # compiled again: the cache is out
    remote_cache_clock.advance(outage.recovers_after or 0)
    compiler.compile("x = 1")  # the outage is over: read from the cache again
    assert compiler.compilations == 2
