"""Redis Cluster, for real: 3 masters on loopback, batches, the suite, a killed master."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator

import pytest
from redis.crc import key_slot

from remote_cache import (
    RedisRemoteCacheBackend,
    RemoteAutotuneCache,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache.exceptions import BackendError
from remote_cache.testing import RedisClusterFixture, RedisClusterServer, RedisServerError
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
            # The suite checks answers, not speed: a generous timeout, so that a loaded machine
            # (processes forked while other tests run) never turns a slow connect into a failure.
            return RedisRemoteCacheBackend(url=cluster.url, cluster=True, timeout=5.0)

        check_backend(make)


class TestKilledMaster:
    """One master down: its keys fail open (misses, dropped puts), the others keep working."""

    def test_only_its_slots_fail_then_recover(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        cache = RemoteFxGraphCache("graphs")
        # Set-up, not what is timed: a loaded run's first batch (a new client connecting to
        # every master) once ran past the 0.5 s timeout, so it is written until it is there.
        stored = {key: {"key": key} for key in KEYS}
        deadline = time.monotonic() + 10
        while cache.get_many(KEYS) != stored and time.monotonic() < deadline:
            cache.put_many(stored)
        assert cache.get_many(KEYS) == stored
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


@pytest.fixture(scope="class")
def own_cluster() -> Iterator[RedisClusterServer]:
    """A cluster of the class's own: its tests move slots, which must not leak to others."""
    with RedisClusterServer() as cluster:
        yield cluster


def _node_id(cluster: RedisClusterServer, index: int) -> str:
    client = cluster.nodes[index].client()
    try:
        raw = client.execute_command("CLUSTER", "MYID")
    finally:
        client.close()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _start_migration(cluster: RedisClusterServer, slot: int, source: int, target: int) -> None:
    """Mark ``slot`` as moving from master ``source`` to master ``target`` (ASK phase)."""
    src, dst = cluster.nodes[source].client(), cluster.nodes[target].client()
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(cluster, source))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(cluster, target))
    finally:
        src.close()
        dst.close()


def _migrate_keys(cluster: RedisClusterServer, source: int, target: int, keys: list[bytes]) -> None:
    """Move ``keys`` (of a slot being migrated) from ``source`` to ``target`` with MIGRATE."""
    src, node = cluster.nodes[source].client(), cluster.nodes[target]
    try:
        for key in keys:
            src.execute_command("MIGRATE", node.host, node.port, key, 0, 5000)
    finally:
        src.close()


def _finish_migration(cluster: RedisClusterServer, slot: int, target: int) -> None:
    """Give ``slot`` to master ``target`` on every master (the MOVED phase begins)."""
    target_id = _node_id(cluster, target)
    for node in cluster.nodes:
        client = node.client()
        try:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        finally:
            client.close()


def _keys_in_slot(cluster: RedisClusterServer, index: int, slot: int) -> list[bytes]:
    client = cluster.nodes[index].client()
    try:
        return list(client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000))
    finally:
        client.close()


def _names_in_slot(slot: int, count: int) -> list[str]:
    """``count`` new key names that hash to ``slot``."""
    found: list[str] = []
    i = 0
    while len(found) < count:
        name = f"new-{i}"
        if key_slot(name.encode()) == slot:
            found.append(name)
        i += 1
    return found


def _master_port(backend: RedisRemoteCacheBackend, key: str) -> int:
    """The port of the master the backend's slot map says serves ``key``."""
    return int(backend.client().get_node_from_key(key.encode()).port)


class TestSlotMigration:
    """Batches keep working while a slot moves (ASK) and after it moved (MOVED), for good."""

    def _setup(self, cluster: RedisClusterServer) -> tuple[RedisRemoteCacheBackend, int, int, int]:
        cluster.flush()
        backend = RedisRemoteCacheBackend(url=cluster.url, cluster=True, retry_after=0)
        backend.put_many({key: key.encode() for key in KEYS})
        slot = key_slot(KEYS[0].encode())
        source = cluster.node_for_key(KEYS[0])
        return backend, slot, source, (source + 1) % len(cluster.nodes)

    def _assert_batches_work(self, backend: RedisRemoteCacheBackend, tag: bytes) -> None:
        for attempt in range(3):
            mapping = {key: key.encode() + tag + bytes([attempt]) for key in KEYS}
            backend.put_many(mapping)
            assert backend.get_many([*KEYS, "absent"]) == mapping

    def test_moved_slot(self, own_cluster: RedisClusterServer) -> None:
        backend, slot, source, target = self._setup(own_cluster)
        writer = RedisRemoteCacheBackend(url=own_cluster.url, cluster=True, timeout=0.9)
        assert _master_port(writer, KEYS[0]) == own_cluster.nodes[source].port  # its own map
        _start_migration(own_cluster, slot, source, target)
        _migrate_keys(own_cluster, source, target, _keys_in_slot(own_cluster, source, slot))
        _finish_migration(own_cluster, slot, target)
        assert _master_port(backend, KEYS[0]) == own_cluster.nodes[source].port  # stale map
        assert backend.get_many(KEYS) == {key: key.encode() for key in KEYS}
        assert _master_port(backend, KEYS[0]) == own_cluster.nodes[target].port  # refreshed
        self._assert_batches_work(backend, b"-moved")
        assert own_cluster.node_for_key(KEYS[0]) == target
        assert backend.breaker.failures == 0
        writer.put_many({KEYS[0]: b"written"})  # a put_many meets the MOVED first
        assert _master_port(writer, KEYS[0]) == own_cluster.nodes[target].port
        self._assert_batches_work(writer, b"-writer")

    def test_asked_during_migration_then_moved(self, own_cluster: RedisClusterServer) -> None:
        backend, slot, source, target = self._setup(own_cluster)
        _start_migration(own_cluster, slot, source, target)
        _migrate_keys(own_cluster, source, target, [KEYS[0].encode()])
        assert backend.get_many(KEYS) == {key: key.encode() for key in KEYS}
        fresh = {name: name.encode() for name in _names_in_slot(slot, 3)}
        backend.put_many(fresh)  # new keys of a migrating slot go to the target (ASK)
        assert backend.get_many(list(fresh)) == fresh
        self._assert_batches_work(backend, b"-asked")

        _finish_migration(own_cluster, slot, target)
        assert backend.get_many(list(fresh)) == fresh
        self._assert_batches_work(backend, b"-moved")
        assert _master_port(backend, KEYS[0]) == own_cluster.nodes[target].port
        assert backend.breaker.failures == 0


@pytest.fixture(scope="module")
def replicated_cluster() -> Iterator[RedisClusterServer]:
    """3 masters with a replica each; a short node timeout, so a failover takes 1 to 2 s."""
    with RedisClusterServer(replicas=1, node_timeout_ms=500) as cluster:
        yield cluster


def _restart_dead(cluster: RedisClusterServer) -> None:
    """Bring back every node a test killed (a failed-over master returns as a replica)."""
    for index, node in enumerate(cluster.nodes):
        if not node.running:
            cluster.restart(index)


class TestFailover:
    """A master dies and its replica takes over: batches reach the new master within about
    one cool-down of the promotion, with no single-key call needed to refresh the slot map."""

    RETRY_AFTER = 0.2
    RECOVERY = 3.0

    def _backend(self, cluster: RedisClusterServer) -> tuple[RedisRemoteCacheBackend, dict]:
        _restart_dead(cluster)
        cluster.flush()
        backend = RedisRemoteCacheBackend(
            url=cluster.url, cluster=True, timeout=0.5, retry_after=self.RETRY_AFTER
        )
        stored = {key: key.encode() for key in KEYS}
        backend.put_many(stored)
        return backend, stored

    def _fail_over_while(self, cluster: RedisClusterServer, call: Callable[[], object]) -> int:
        """Fail over the master of ``KEYS[0]`` while ``call`` runs again and again (each
        call may fail: a master is down); the index of the killed master."""
        victim = cluster.node_for_key(KEYS[0])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            promotion = pool.submit(cluster.failover, victim)
            failures = 0
            while not promotion.done():
                try:
                    call()
                except BackendError:
                    failures += 1
                time.sleep(0.02)
            promoted = promotion.result()
        assert failures  # the calls met the dead master: the breaker opened
        assert cluster.node_for_key(KEYS[0]) == promoted
        return victim

    def _until_it_works(self, call: Callable[[], object]) -> tuple[object, float]:
        """Call ``call`` until it raises no ``BackendError``: its result and the seconds it took."""
        started = time.monotonic()
        while True:
            try:
                return call(), time.monotonic() - started
            except BackendError:
                if time.monotonic() - started > self.RECOVERY:
                    raise
                time.sleep(0.02)

    def test_get_many_reads_every_key_after_the_promotion(
        self, replicated_cluster: RedisClusterServer
    ) -> None:
        backend, stored = self._backend(replicated_cluster)
        victim = self._fail_over_while(replicated_cluster, lambda: backend.get_many(KEYS))
        try:
            found, seconds = self._until_it_works(lambda: backend.get_many(KEYS))
            assert found == stored  # the replica had every key: all 60 read back
            assert seconds < self.RETRY_AFTER + 0.3  # the first probe after the cool-down
            assert backend.get_many(KEYS) == stored  # and it stays so
        finally:
            replicated_cluster.restart(victim)

    def test_put_many_stores_after_the_promotion(
        self, replicated_cluster: RedisClusterServer
    ) -> None:
        backend, _ = self._backend(replicated_cluster)
        fresh = {key: b"after " + key.encode() for key in KEYS}
        victim = self._fail_over_while(replicated_cluster, lambda: backend.put_many(fresh))
        try:
            _, seconds = self._until_it_works(lambda: backend.put_many(fresh))
            assert seconds < self.RETRY_AFTER + 0.3
            assert backend.get_many(KEYS) == fresh
            client = replicated_cluster.client()
            try:
                assert [client.get(key) for key in KEYS] == [fresh[key] for key in KEYS]
            finally:
                client.close()
        finally:
            replicated_cluster.restart(victim)

    def test_single_gets_reach_the_promoted_node(
        self, replicated_cluster: RedisClusterServer
    ) -> None:
        """The dead master's breaker does not skip keys the promoted node now serves."""
        backend, stored = self._backend(replicated_cluster)
        victim = self._fail_over_while(replicated_cluster, lambda: backend.get(KEYS[0]))
        try:
            # redis-py refreshes its map after a single command's failure, at its own pace.
            value, _ = self._until_it_works(lambda: backend.get(KEYS[0]))
            assert value == stored[KEYS[0]]
            assert [backend.get(key) for key in KEYS] == [stored[key] for key in KEYS]
        finally:
            replicated_cluster.restart(victim)

    def test_failover_refuses_what_it_cannot_do(
        self, replicated_cluster: RedisClusterServer
    ) -> None:
        _restart_dead(replicated_cluster)
        master = replicated_cluster.master_indexes()[0]
        (replica,) = replicated_cluster.replicas_of(master)
        with pytest.raises(RedisServerError, match="not a running master"):
            replicated_cluster.failover(replica)
        replicated_cluster.kill(replica)
        try:
            with pytest.raises(RedisServerError, match="no running replica"):
                replicated_cluster.failover(master)
            assert replicated_cluster.nodes[master].running  # refused before killing anything
        finally:
            replicated_cluster.restart(replica)


def test_cluster_needs_three_masters() -> None:
    with pytest.raises(ValueError, match="masters >= 3"):
        RedisClusterServer(masters=2)
