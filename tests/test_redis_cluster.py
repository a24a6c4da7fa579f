"""Redis Cluster, for real: 3 masters on loopback, batches, the suite, a killed master."""

from __future__ import annotations

import time

import pytest

from remote_cache import (
    RedisRemoteCacheBackend,
    RemoteAutotuneCache,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache.testing import RedisClusterFixture, RedisClusterServer
from remote_cache.testing.conformance import check_backend

pytestmark = pytest.mark.redis

KEYS = [f"graph-{i}" for i in range(60)]


def backend_key(key: str, cache_id: str = "graphs") -> str:
    return f"pt2:{cache_id}::{key}:c1"


class TestClusterFixture:
    def test_caches_use_the_cluster(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        cache = RemoteFxGraphCache("graphs")  # configured by the environment, as users' code is
        assert "(cluster)" in repr(cache.backend)
        cache.put("k", {"v": 1})
        assert remote_cache_redis_cluster.client.get(backend_key("k")) == b'{"v": 1}'
        assert RemoteFxGraphCache("graphs").get("k") == {"v": 1}

    def test_keys_spread_over_every_master(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        masters = {remote_cache_redis_cluster.node_for_key(backend_key(k)) for k in KEYS}
        assert masters == {0, 1, 2}

    def test_emptied_per_test(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        assert RemoteFxGraphCache("graphs").get("k") is None


class TestBatchesOnTheCluster:
    """get_many / put_many across slots: one call per slot, stats per key."""

    def test_round_trip_across_slots(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        cache = RemoteFxGraphCache("graphs")
        mapping = {key: {"i": i} for i, key in enumerate(KEYS)}
        cache.put_many(mapping)
        assert cache.get_many([*KEYS, "absent"]) == mapping
        stat = cache_stats["RemoteFxGraphCache"]
        assert (stat.put, stat.hit, stat.miss) == (len(KEYS), len(KEYS), 1)
        ttl_free = remote_cache_redis_cluster.client.ttl(backend_key(KEYS[0]))
        assert ttl_free == -1  # no REMOTE_CACHE_REDIS_EXPIRE: no TTL

    def test_expire_applies_to_batches(
        self, remote_cache_redis_cluster: RedisClusterFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_EXPIRE", "100")
        RemoteAutotuneCache("tune").put_many({key: [1] for key in KEYS[:10]})
        for key in KEYS[:10]:
            assert 0 < remote_cache_redis_cluster.client.ttl(backend_key(key, "tune")) <= 100


class TestConformanceOnTheCluster:
    def test_check_backend(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        cluster = remote_cache_redis_cluster.cluster

        def make() -> RedisRemoteCacheBackend:
            cluster.flush()
            return RedisRemoteCacheBackend(url=cluster.url, cluster=True)

        check_backend(make)


class TestKilledMaster:
    """One master down: its keys fail open (misses, dropped puts), the others keep working."""

    def test_only_its_slots_fail_then_recover(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        cache = RemoteFxGraphCache("graphs")
        cache.put_many({key: {"key": key} for key in KEYS})
        master_of = remote_cache_redis_cluster.node_for_key
        victim = master_of(backend_key(KEYS[0]))
        lost = [k for k in KEYS if master_of(backend_key(k)) == victim]
        kept = [k for k in KEYS if k not in lost]
        assert lost
        assert kept

        remote_cache_redis_cluster.kill(victim)
        for _ in range(3):  # the first call opens that master's breaker; later ones skip it
            started = time.monotonic()
            assert all(cache.get(key) is None for key in lost)
            assert all(cache.get(key) == {"key": key} for key in kept[1:])
            cache.put(lost[0], {"dropped": True})
            cache.put(kept[0], {"key": kept[0], "updated": True})
            assert cache.get(kept[0]) == {"key": kept[0], "updated": True}
            assert time.monotonic() - started < 0.5 + 0.5  # the timeout, plus slack
        stat = cache_stats["RemoteFxGraphCache"]
        assert stat.fail_open >= 3 * len(lost)
        assert cache.get(kept[0]) == {"key": kept[0], "updated": True}

        remote_cache_redis_cluster.restart(victim)
        deadline = time.monotonic() + 10
        while cache.get(lost[0]) is None and time.monotonic() < deadline:
            cache.put(lost[0], {"back": True})  # its data died with it: write again
            time.sleep(0.05)
        assert cache.get(lost[0]) == {"back": True}
        assert all(cache.get(key) == {"key": key} for key in kept[1:])

    def test_batch_touching_a_dead_master_fails_open(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        cache = RemoteFxGraphCache("graphs")
        cache.put_many(dict.fromkeys(KEYS, 1))
        victim = remote_cache_redis_cluster.node_for_key(backend_key(KEYS[0]))
        remote_cache_redis_cluster.kill(victim)
        assert cache.get_many(KEYS) == {}  # one failed node fails the batch: all misses
        cache.put_many({"x": 1})  # dropped or stored, never raised
        assert cache_stats["RemoteFxGraphCache"].fail_open >= len(KEYS)


def test_cluster_needs_three_masters() -> None:
    with pytest.raises(ValueError, match="masters >= 3"):
        RedisClusterServer(masters=2)
