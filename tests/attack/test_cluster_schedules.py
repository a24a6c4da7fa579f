"""Random schedules on Redis Cluster: slots migrating, masters failing over, a dead cluster.

Slot migrations are no fault: the cluster is healthy while a slot moves (``CLUSTER SETSLOT
IMPORTING/MIGRATING``, ``MIGRATE``, ``SETSLOT NODE``), so every call must succeed and every
get return exactly the last value put, batches included, during and after the move. A
master killed while calls run, its replica promoted: calls fail open while it is down, no
get reads a wrong value, and once the replica serves its slots batches work again within
about one cool-down. A cluster that never answers must cost at most one timeout per call,
nothing while its breaker is open, and never hold up calls to a healthy server.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from remote_cache import RedisRemoteCache, RedisRemoteCacheBackend
from remote_cache._redis import close_shared_clients
from remote_cache.testing import OutageProxy, RedisClusterServer, RedisServer
from tests.attack._harness import (
    BOUND,
    RETRY_AFTER,
    TIMEOUT,
    Attack,
    Baseline,
    Get,
    GetMany,
    Put,
    PutMany,
)
from tests.attack.conftest import ADMIN_NAME, fresh_process_state

pytestmark = [pytest.mark.attack, pytest.mark.redis]

KEYS = ("alpha", "beta", "gamma", "delta", "epsilon")
SIZES = (16, 3_000)


class ClusterAttackCache(RedisRemoteCache):
    """The cache under attack on the cluster."""


def wire_key(key: str) -> bytes:
    """The Redis key of ``key`` in ``ClusterAttackCache("attack")``."""
    return f"pt2:attack::{key}:c1".encode()


@dataclass(frozen=True)
class Migrate:
    """Move the slot of ``key`` to another master: ``stage`` "begin" (SETSLOT IMPORTING and
    MIGRATING), "keys" (MIGRATE what is there now) or "finish" (the rest, then SETSLOT NODE)."""

    key: str
    stage: str
    to: int


keys = st.sampled_from(KEYS)
key_lists = st.lists(keys, min_size=1, max_size=4, unique=True).map(tuple)
cluster_steps = st.one_of(
    st.builds(Put, keys, st.sampled_from(SIZES)),
    st.builds(Get, keys),
    st.builds(PutMany, key_lists, st.sampled_from(SIZES)),
    st.builds(GetMany, key_lists),
    st.builds(Migrate, keys, st.sampled_from(["begin", "keys", "finish"]), st.sampled_from([1, 2])),
)


class Slots:
    """Moves slots between the masters of a cluster, with plain clients to each node."""

    def __init__(self, cluster: RedisClusterServer) -> None:
        self.cluster = cluster
        self.admins = [
            node.client(socket_timeout=5.0, client_name=ADMIN_NAME) for node in cluster.nodes
        ]
        self.ids = [admin.execute_command("CLUSTER", "MYID") for admin in self.admins]
        self.ids = [i.decode() if isinstance(i, bytes) else str(i) for i in self.ids]
        for admin in self.admins:  # every admin connection is open before anyone counts
            admin.ping()
        self.moving: tuple[int, int, int] | None = None  # slot, source, target

    def owner(self, slot: int) -> int:
        """The index of the master that owns ``slot`` now."""
        raw = self.admins[0].execute_command("CLUSTER", "SLOTS")
        for start, end, master, *_ in raw:
            if int(start) <= slot <= int(end):
                return [node.port for node in self.cluster.nodes].index(int(master[1]))
        raise AssertionError(f"no master owns slot {slot}")

    def begin(self, key: str, offset: int) -> str:
        """Mark the slot of ``key`` migrating to another master."""
        if self.moving is not None:
            return "a migration is under way"
        slot = key_slot(wire_key(key))
        source = self.owner(slot)
        target = (source + offset) % len(self.admins)
        self.admins[target].execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[source]
        )
        self.admins[source].execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[target]
        )
        self.moving = (slot, source, target)
        return f"slot {slot}: master {source} -> {target}"

    def move_keys(self) -> str:
        """MIGRATE the keys the source holds in the moving slot now."""
        if self.moving is None:
            return "no migration"
        slot, source, target = self.moving
        names = self.admins[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if names:
            node = self.cluster.nodes[target]
            self.admins[source].execute_command(
                "MIGRATE", node.host, node.port, "", 0, 5000, "REPLACE", "KEYS", *names
            )
        return f"slot {slot}: {len(names)} key(s) moved"

    def finish(self) -> str:
        """Move the remaining keys, then give the slot to the target on every master."""
        if self.moving is None:
            return "no migration"
        moved = self.move_keys()
        slot, source, target = self.moving
        order = [target, source] + [i for i in range(len(self.admins)) if i not in (source, target)]
        for index in order:
            self.admins[index].execute_command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[target])
        self.moving = None
        return f"{moved}; slot {slot} now on master {target}"

    def close(self) -> None:
        """Finish a migration under way and close the admin clients."""
        self.finish()
        for admin in self.admins:
            admin.close()


@pytest.fixture(scope="module")
def slots(attack_cluster: RedisClusterServer) -> Any:
    """The module cluster's slot mover (a migration left under way is finished at the end)."""
    mover = Slots(attack_cluster)
    yield mover
    mover.close()


class TestSlotMigrations:
    """While and after slots move, every call (batches too) succeeds with the right value."""

    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(plan=st.lists(cluster_steps, min_size=1, max_size=20))
    def test_schedule(
        self, attack_cluster: RedisClusterServer, slots: Slots, plan: list[Any]
    ) -> None:
        slots.finish()
        attack_cluster.flush()
        fresh_process_state()
        backend = RedisRemoteCacheBackend(
            url=attack_cluster.url, cluster=True, timeout=TIMEOUT, retry_after=RETRY_AFTER
        )
        attack = Attack(ClusterAttackCache("attack", backend=backend), strict=True)
        try:
            for step in plan:
                if isinstance(step, Migrate):
                    if step.stage == "begin":
                        attack.note(f"MIGRATE {slots.begin(step.key, step.to)}")
                    elif step.stage == "keys":
                        attack.note(f"MIGRATE {slots.move_keys()}")
                    else:
                        attack.note(f"MIGRATE {slots.finish()}")
                elif isinstance(step, Put):
                    attack.put(step.key, step.size)
                elif isinstance(step, Get):
                    attack.get(step.key)
                elif isinstance(step, PutMany):
                    attack.put_many(list(step.keys), step.size)
                else:
                    attack.get_many(list(step.keys))
            # After the moves, every key put reads back, one by one and in one batch.
            attack.note(f"MIGRATE {slots.finish()}")
            attack.get_many(list(KEYS))
            for key in KEYS:
                attack.get(key)
            attack.check_totals()
        finally:
            slots.finish()
        close_shared_clients()


@dataclass(frozen=True)
class Failover:
    """Kill the master serving ``key`` once its replica caught up; the replica takes over
    while the next steps run (``start_failover``)."""

    key: str


@dataclass(frozen=True)
class AwaitPromotion:
    """Wait until every failover under way has ended (``wait_for_failover``)."""


@dataclass(frozen=True)
class RestartDead:
    """Start every killed node again (a failed-over master comes back as a replica)."""


failover_steps = st.one_of(
    st.builds(Put, keys, st.sampled_from(SIZES)),
    st.builds(Get, keys),
    st.builds(PutMany, key_lists, st.sampled_from(SIZES)),
    st.builds(GetMany, key_lists),
    st.builds(Failover, keys),
    st.just(AwaitPromotion()),
    st.just(RestartDead()),
)

MAX_FAILOVERS = 2
PROMOTION_LIMIT = 10.0
"""Seconds a failover may take (1 to 2 s measured, with a 500 ms node timeout)."""
"""Failovers per schedule (each takes 1 to 2 s): later ``Failover`` steps are noted, not run."""


@pytest.fixture(scope="module")
def failover_cluster() -> Any:
    """3 masters with a replica each, of the module's own; a failover takes 1 to 2 s."""
    with RedisClusterServer(replicas=1, node_timeout_ms=500) as cluster:
        yield cluster


class Failovers:
    """Runs a schedule's faults on a cluster with replicas: failovers, their end, restarts."""

    def __init__(self, cluster: RedisClusterServer, attack: Attack) -> None:
        self.cluster = cluster
        self.attack = attack
        self.started = 0
        self.pending: list[int] = []

    def start(self, key: str) -> None:
        """Fail over the master of ``key`` (not waiting for the promotion)."""
        # Two masters down at once leave too few to agree that either failed: one at a time.
        self.await_promotions()
        if self.started >= MAX_FAILOVERS:
            self.attack.note(f"FAILOVER of {key}'s master: not run (enough this schedule)")
            return
        master = self.cluster.node_for_key(wire_key(key))
        if not self.cluster.replicas_of(master):
            self.attack.note(f"FAILOVER of node {master}: not run (no replica left)")
            return
        self.cluster.start_failover(master, timeout=PROMOTION_LIMIT)
        self.started += 1
        self.pending.append(master)
        self.attack.note(f"FAILOVER node {master} killed, its replica to take over")

    def await_promotions(self) -> None:
        """Wait until every failover under way has ended."""
        while self.pending:
            master = self.pending.pop()
            promoted = self.cluster.wait_for_failover(master, timeout=PROMOTION_LIMIT)
            self.attack.note(f"FAILOVER node {master}: node {promoted} promoted")

    def restart_dead(self) -> None:
        """Start every dead node again once no failover is under way."""
        self.await_promotions()
        for index, node in enumerate(self.cluster.nodes):
            if not node.running:
                self.cluster.restart(index)
                self.attack.note(f"RESTART node {index}")


def _restart_dead(cluster: RedisClusterServer) -> None:
    for index, node in enumerate(cluster.nodes):
        if not node.running:
            cluster.restart(index)


class TestFailovers:
    """A master killed and its replica promoted, calls running all along: no wrong value,
    every call bounded, counters exact; once promoted, batches work again within about one
    cool-down, without a single-key call to refresh the slot map."""

    @settings(
        max_examples=4,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        first=st.builds(Failover, keys),
        plan=st.lists(failover_steps, min_size=1, max_size=12),
    )
    def test_schedule(
        self, failover_cluster: RedisClusterServer, first: Failover, plan: list[Any]
    ) -> None:
        _restart_dead(failover_cluster)
        failover_cluster.flush()
        fresh_process_state()
        backend = RedisRemoteCacheBackend(
            url=failover_cluster.url, cluster=True, timeout=TIMEOUT, retry_after=RETRY_AFTER
        )
        attack = Attack(ClusterAttackCache("attack", backend=backend))
        faults = Failovers(failover_cluster, attack)
        try:
            attack.put_many(list(KEYS), SIZES[0])
            for step in [first, *plan]:
                if isinstance(step, Failover):
                    faults.start(step.key)
                elif isinstance(step, AwaitPromotion):
                    faults.await_promotions()
                elif isinstance(step, RestartDead):
                    faults.restart_dead()
                elif isinstance(step, Put):
                    attack.put(step.key, step.size)
                elif isinstance(step, Get):
                    attack.get(step.key)
                elif isinstance(step, PutMany):
                    attack.put_many(list(step.keys), step.size)
                else:
                    attack.get_many(list(step.keys))
            faults.await_promotions()
            # Batches first: no single-key call may be what refreshes the slot map.
            attack.recover_batches(list(KEYS), limit=RETRY_AFTER + BOUND + 0.5)
            faults.restart_dead()
            attack.recover()
            attack.check_totals()
        finally:
            _restart_dead(failover_cluster)
        close_shared_clients()


dead_calls = st.one_of(
    st.builds(Get, keys),
    st.builds(Put, keys, st.just(16)),
    st.builds(GetMany, key_lists),
    st.builds(PutMany, key_lists, st.just(16)),
    st.just("wait"),
)


class TestDeadCluster:
    """A cluster that never answers costs at most one timeout a call and stalls nobody else."""

    @settings(
        max_examples=6,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        per_thread=st.lists(st.lists(dead_calls, min_size=2, max_size=8), min_size=1, max_size=3),
        refused=st.booleans(),
    )
    def test_schedule(
        self,
        leaks: Baseline,
        dead_address: OutageProxy,
        attack_server: RedisServer,
        per_thread: list[list[Any]],
        refused: bool,
    ) -> None:
        fresh_process_state()
        url = f"redis://127.0.0.1:{dead_address.port}/0"
        if refused:  # nothing listens there any more
            url = f"redis://127.0.0.1:{_closed_port()}/0"
        errors: list[BaseException] = []
        attacks: list[Attack] = []
        healthy_waits: list[float] = []
        stop = threading.Event()

        def dead_work(index: int, plan: list[Any]) -> None:
            cache_class = type(f"DeadCache{index}", (ClusterAttackCache,), {})
            backend_class = type(f"DeadBackend{index}", (RedisRemoteCacheBackend,), {})
            backend = backend_class(url=url, cluster=True, timeout=TIMEOUT, retry_after=RETRY_AFTER)
            attack = Attack(cache_class("attack", backend=backend), label=f"dead{index} ")
            attacks.append(attack)
            try:
                for step in plan:
                    if step == "wait":
                        time.sleep(RETRY_AFTER)
                    elif isinstance(step, Get):
                        attack.get(step.key)
                    elif isinstance(step, Put):
                        attack.put(step.key, step.size)
                    elif isinstance(step, GetMany):
                        attack.get_many(list(step.keys))
                    else:
                        attack.put_many(list(step.keys), step.size)
                    if attack.model.acked:
                        raise attack.fail("a put to a dead cluster was acknowledged")
            except BaseException as exc:
                errors.append(exc)

        def healthy_work() -> None:
            # A new cache per compile, each with settings of its own: a new client to build.
            index = 0
            while not stop.wait(0.005):
                index = index % 20 + 1  # at most 20 clients (and connections) in all
                backend = RedisRemoteCacheBackend(
                    url=attack_server.url, timeout=TIMEOUT + index / 1000, retry_after=RETRY_AFTER
                )
                cache = RedisRemoteCache("healthy", backend=backend)
                started = time.monotonic()
                cache.get("anything")
                healthy_waits.append(time.monotonic() - started)

        threads = [
            threading.Thread(target=dead_work, args=(i, plan), name=f"dead-{i}")
            for i, plan in enumerate(per_thread)
        ]
        healthy = threading.Thread(target=healthy_work, name="healthy")
        healthy.start()
        for thread in threads:
            thread.start()
        limit = max(len(plan) for plan in per_thread) * (BOUND + RETRY_AFTER) + 5
        for thread in threads:
            thread.join(timeout=limit)
        stop.set()
        healthy.join(timeout=BOUND + 5)
        if any(thread.is_alive() for thread in [*threads, healthy]):
            raise AssertionError(f"a thread did not finish within {limit:.1f}s")
        if errors:
            raise errors[0]
        for attack in attacks:
            attack.check_totals()
        slowest = max(healthy_waits, default=0.0)
        # The healthy server answers in milliseconds: a call to it that waits a whole
        # timeout waited for a lock held by a thread connecting to the dead cluster.
        assert slowest < TIMEOUT, (
            f"a get on a healthy server took {slowest:.3f}s while threads called a dead "
            f"cluster ({len(healthy_waits)} gets)"
        )
        close_shared_clients()
        for attack in attacks:
            attack.cache = None
        # A black hole holds the connections it accepted (closed by the client or not)
        # until the route comes back: let it release them before counting descriptors.
        dead_address.restore()
        try:
            leaks.check(attacks[0])
        finally:
            dead_address.blackhole()


def _closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    from remote_cache.testing._processes import free_port

    return free_port()
