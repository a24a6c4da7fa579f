"""Random schedules of proxy faults, kills and restarts against a real redis-server.

Hypothesis draws a schedule (cache calls, faults between them, faults landing in the middle
of a call) and one thread, or several at once, run it through an ``OutageProxy``; every
call is checked by ``Attack`` (value, time, counters), and at the end of each schedule the
cache must work again and nothing may be left open.
"""

from __future__ import annotations

import _thread
import dataclasses
import gc
import socket
import threading
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_cache import RedisRemoteCache, RedisRemoteCacheBackend, cache_stats
from remote_cache._redis import close_shared_clients
from remote_cache.testing import OutageProxy, RedisServer
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
    SharedModel,
    server_clients,
    settle,
)
from tests.attack.conftest import fresh_process_state

pytestmark = [pytest.mark.attack, pytest.mark.redis]

KEYS = ("alpha", "beta", "gamma")
# 150 KB spans several of the proxy's 64 KB chunks; 2 MB streams for a few milliseconds,
# long enough for a fault to land in the middle of a reply.
SIZES = (16, 3_000, 150_000, 2_000_000)


class AttackCache(RedisRemoteCache):
    """The cache under attack (its own name in ``cache_stats``)."""


# -- the schedule's vocabulary ---------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A fault: ``cut``, ``blackhole``, ``latency``, ``reset_mid_reply``, ``slow_close``
    (and the server hangs up), ``restore``, ``kill``, ``restart``, ``wait`` (the
    breaker's cool-down), or ``stalled_reader`` (a client through the proxy asks for
    megabytes and never reads them)."""

    name: str
    seconds: float = 0.0


@dataclass(frozen=True)
class MidCall:
    """``fault`` lands ``after`` seconds into ``call`` (from another thread)."""

    fault: Fault
    after: float
    call: Put | Get | PutMany | GetMany


Call = Put | Get | PutMany | GetMany
Step = Call | Fault | MidCall

keys = st.sampled_from(KEYS)
sizes = st.sampled_from(SIZES)
key_lists = st.lists(keys, min_size=1, max_size=3, unique=True).map(tuple)
calls: st.SearchStrategy[Call] = st.one_of(
    st.builds(Put, keys, sizes),
    st.builds(Get, keys),
    st.builds(PutMany, key_lists, sizes),
    st.builds(GetMany, key_lists),
)
proxy_faults = st.one_of(
    st.sampled_from(["cut", "blackhole", "reset_mid_reply", "restore", "stalled_reader"]).map(
        Fault
    ),
    st.builds(Fault, st.just("latency"), st.sampled_from([0.0, 0.03, 0.6])),
    st.builds(Fault, st.just("slow_close"), st.just(0.3)),
)
faults = st.one_of(
    proxy_faults,
    st.sampled_from(["kill", "restart", "wait"]).map(Fault),
)
mid_call = st.builds(MidCall, proxy_faults, st.sampled_from([0.0, 0.002, 0.005, 0.03]), calls)
steps: st.SearchStrategy[Step] = st.one_of(calls, calls, faults, mid_call)


class Schedule:
    """Runs steps against a server behind a proxy, with one ``Attack`` per thread."""

    def __init__(self, server: RedisServer, proxy: OutageProxy, admin: Any) -> None:
        self.server = server
        self.proxy = proxy
        self.admin = admin
        self.attacks: list[Attack] = []
        self.stalled: list[socket.socket] = []

    def cache(self, name: str = "AttackCache") -> AttackCache:
        """A cache through the proxy (per-thread class names keep their counters apart)."""
        cache_class = AttackCache if name == "AttackCache" else type(name, (AttackCache,), {})
        backend_class = type(f"{name}Backend", (RedisRemoteCacheBackend,), {})
        backend = backend_class(url=self.proxy.url, timeout=TIMEOUT, retry_after=RETRY_AFTER)
        return cache_class("attack", backend=backend)

    def fault(self, fault: Fault) -> None:
        """Apply ``fault``; note it in every attack's history."""
        for attack in self.attacks:
            attack.note(f"FAULT {fault}")
        name = fault.name
        if name == "latency":
            self.proxy.latency(fault.seconds)
        elif name == "slow_close":
            self.proxy.slow_close(fault.seconds)
            if self.server.running:  # the server hangs up on every client but the admin
                self.admin.client_kill_filter(_type="normal", skipme=True)
        elif name == "kill":
            self.server.kill()
            self.lost()
        elif name == "restart":
            self.server.restart()
            self.lost()
        elif name == "wait":
            time.sleep(RETRY_AFTER)
        elif name == "stalled_reader":
            self.stall()
        else:
            getattr(self.proxy, name)()

    def stall(self) -> None:
        """Open a connection through the proxy that asks for 20 MB and never reads it."""
        if not self.server.running or self.proxy.mode != "up":
            return
        self.admin.set("attack-stall", b"s" * 2_000_000)
        reader = socket.create_connection((self.proxy.host, self.proxy.port), timeout=2)
        reader.sendall(b"GET attack-stall\r\n" * 10)
        self.stalled.append(reader)

    def close_stalled(self) -> None:
        """Close the connections that stopped reading."""
        for reader in self.stalled:
            reader.close()
        self.stalled.clear()

    def lost(self) -> None:
        """The server's data is gone; with several threads a racing put may still land
        afterwards, so their models keep their values (None is always allowed anyway)."""
        if len(self.attacks) == 1:
            self.attacks[0].model.lost()

    def run(self, attack: Attack, step: Step) -> None:
        """Run one step of a schedule."""
        if isinstance(step, Fault):
            self.fault(step)
        elif isinstance(step, MidCall):
            timer = threading.Timer(step.after, self.fault, args=(step.fault,))
            timer.start()
            try:
                self.call(attack, step.call)
            finally:
                timer.join()
        else:
            self.call(attack, step)

    @staticmethod
    def call(attack: Attack, call: Call) -> None:
        """Run one cache call through ``attack``'s checks."""
        if isinstance(call, Put):
            attack.put(call.key, call.size)
        elif isinstance(call, Get):
            attack.get(call.key)
        elif isinstance(call, PutMany):
            attack.put_many(list(call.keys), call.size)
        else:
            attack.get_many(list(call.keys))

    def end(self, leaks: Baseline) -> None:
        """End every fault; the cache works again, counters add up, nothing is left open."""
        self.proxy.restore()
        if not self.server.running:
            self.server.start()
        for attack in self.attacks:
            attack.recover()
            attack.check_totals()
        self.close_stalled()
        # A connection per thread at most, even after many faults (no socket left behind).
        first = self.attacks[0]
        open_now = settle(lambda: server_clients(self.admin), len(self.attacks))
        if open_now > len(self.attacks):
            raise first.fail(f"{open_now} server connections for {len(self.attacks)} thread(s)")
        close_shared_clients()
        for attack in self.attacks:
            attack.cache = None
        leaks.check(first, admin=self.admin)


@pytest.fixture
def schedule(attack_server: RedisServer, attack_proxy: OutageProxy, attack_admin: Any) -> Schedule:
    """A ``Schedule`` on the module's server and proxy."""
    return Schedule(attack_server, attack_proxy, attack_admin)


def start_example(schedule: Schedule) -> None:
    """Each example: the server up, no fault, empty, no state left from the previous one."""
    schedule.close_stalled()
    schedule.proxy.restore()
    if not schedule.server.running:
        schedule.server.start()
    schedule.admin.flushall()
    fresh_process_state()
    schedule.attacks = []


class TestOneThreadUnderFaults:
    """Under any schedule of proxy faults, kills and restarts, every call keeps every promise."""

    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(plan=st.lists(steps, min_size=1, max_size=25))
    def test_schedule(self, schedule: Schedule, leaks: Baseline, plan: list[Step]) -> None:
        start_example(schedule)
        attack = Attack(schedule.cache())
        schedule.attacks = [attack]
        try:
            for step in plan:
                schedule.run(attack, step)
            schedule.end(leaks)
        finally:
            schedule.proxy.restore()
            schedule.close_stalled()


THREAD_KEYS = ("alpha", "beta", "shared-one", "shared-two")
thread_calls: st.SearchStrategy[Call] = st.one_of(
    st.builds(Put, st.sampled_from(THREAD_KEYS), sizes),
    st.builds(Get, st.sampled_from(THREAD_KEYS)),
    st.builds(
        PutMany, st.lists(st.sampled_from(THREAD_KEYS), min_size=1, max_size=3, unique=True)
        .map(tuple), sizes,
    ),
    st.builds(
        GetMany, st.lists(st.sampled_from(THREAD_KEYS), min_size=1, max_size=3, unique=True)
        .map(tuple),
    ),
)  # fmt: skip


def own_keys(call: Call, label: str) -> Call:
    """``call`` with its keys (but the shared ones) prefixed by the thread's label."""

    def own(key: str) -> str:
        return key if key.startswith("shared-") else f"{label}{key}"

    if isinstance(call, (Put, Get)):
        return dataclasses.replace(call, key=own(call.key))
    return dataclasses.replace(call, keys=tuple(own(key) for key in call.keys))


class TestThreadsUnderFaults:
    """Threads sharing a server keep every promise while the main thread injects faults."""

    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        per_thread=st.lists(
            st.lists(thread_calls, min_size=3, max_size=12), min_size=2, max_size=4
        ),
        fault_plan=st.lists(
            st.tuples(st.sampled_from([0.0, 0.01, 0.05, 0.15]), faults), max_size=6
        ),
    )
    def test_schedule(
        self,
        schedule: Schedule,
        leaks: Baseline,
        per_thread: list[list[Call]],
        fault_plan: list[tuple[float, Fault]],
    ) -> None:
        start_example(schedule)
        shared = SharedModel()
        # Own keys per thread (checked strictly), shared keys checked against every put.
        attacks = [
            Attack(schedule.cache(f"ThreadCache{i}"), shared=shared, label=f"t{i} ")
            for i in range(len(per_thread))
        ]
        schedule.attacks = attacks
        errors: list[BaseException] = []

        def work(attack: Attack, plan: list[Call]) -> None:
            try:
                for drawn in plan:
                    Schedule.call(attack, own_keys(drawn, attack.label))
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(attack, plan), name=f"attack-{i}")
            for i, (attack, plan) in enumerate(zip(attacks, per_thread, strict=True))
        ]
        for thread in threads:
            thread.start()
        try:
            for delay, fault in fault_plan:
                time.sleep(delay)
                schedule.fault(fault)
        finally:
            schedule.proxy.restore()
            limit = max(len(plan) for plan in per_thread) * BOUND + 5
            for thread in threads:
                thread.join(timeout=limit)
        if any(thread.is_alive() for thread in threads):
            raise attacks[0].fail(f"a thread did not finish within {limit:.1f}s")
        if errors:
            raise errors[0]
        schedule.end(leaks)


class TestMemoryPerThread:
    """Short-lived threads, started by ``threading`` or not, leave no memory behind."""

    THREADS = 1_500
    FOREIGN = 500  # started with _thread: threading never sees them end
    PER_THREAD = 256  # bytes; a shard kept per dead thread costs several KB

    def test_many_short_lived_threads(self, schedule: Schedule) -> None:
        start_example(schedule)
        attack = Attack(schedule.cache())
        schedule.attacks = [attack]
        cache = attack.cache
        cache.put("alpha", {"key": "alpha"})

        def one_call() -> None:
            cache.get("alpha")

        def threading_batch(count: int) -> None:
            threads = [threading.Thread(target=one_call) for _ in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        def foreign_batch(count: int) -> None:
            done = threading.Semaphore(0)

            def body() -> None:
                try:
                    one_call()
                finally:
                    done.release()

            for _ in range(count):
                _thread.start_new_thread(body, ())
            for _ in range(count):
                assert done.acquire(timeout=BOUND + 5)

        # A batch of 50 threads needs up to 50 connections at once: open them all before
        # measuring, so that what is measured is per thread, not the pool growing once.
        pool = cache.backend.client().connection_pool
        held = [pool.get_connection() for _ in range(50)]
        for connection in held:
            pool.release(connection)
        threading_batch(50)
        foreign_batch(50)
        gc.collect()
        # coverage (make test measures it) gives each thread `threading` starts a tracer of its
        # own, kept after the thread ends, whose stack grows with the calls' depth: its memory,
        # not ours. The measured threads run untraced.
        not_coverage = [tracemalloc.Filter(False, "*/coverage/*")]
        trace = threading.gettrace()
        threading.settrace(None)  # type: ignore[arg-type]
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot().filter_traces(not_coverage)
            for _ in range(self.THREADS // 50):
                threading_batch(50)
            for _ in range(self.FOREIGN // 50):
                foreign_batch(50)
            gc.collect()
            after = tracemalloc.take_snapshot().filter_traces(not_coverage)
        finally:
            tracemalloc.stop()
            threading.settrace(trace)  # type: ignore[arg-type]
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        threads = self.THREADS + self.FOREIGN
        assert grown / threads < self.PER_THREAD, (
            f"{grown:,} bytes kept after {threads:,} short-lived threads "
            f"({grown / threads:,.0f} per thread)"
        )
        total = 1 + 100 + threads  # every get was counted, whichever thread made it
        stat = cache_stats["AttackCache"]
        assert (stat.hit, stat.miss, stat.put) == (total - 1, 0, 1)
        close_shared_clients()
        assert settle(lambda: server_clients(schedule.admin), 0) == 0
