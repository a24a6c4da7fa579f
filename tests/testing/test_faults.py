"""Faults as data (``remote_cache.testing.faults``): the language, its repr and JSON, replay
by seed, and one schedule giving one outcome on every layer (in-process, fakeredis, and a
real server where a real server can be made to do it)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

import remote_cache
from remote_cache import (
    BackendCommandError,
    BackendTimeoutError,
    BackendUnavailableError,
    RedisRemoteCacheBackend,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache._redis import close_shared_clients
from remote_cache.testing import (
    FaultInjectingBackend,
    InMemoryBackend,
    RedisClusterFixture,
    RedisClusterServer,
    RedisServer,
    VirtualClock,
    fakeredis_backends,
    isolated_cache_stats,
    outage_backends,
    redis_environment,
)
from remote_cache.testing import faults as f
from remote_cache.testing._cluster_nodes import free_cluster_port
from remote_cache.testing.faults import (
    REPLIES,
    AfterBytes,
    Always,
    Calls,
    Chance,
    Corrupt,
    Drip,
    DropPut,
    During,
    Every,
    Fault,
    FirstN,
    HalfReply,
    Hang,
    Latency,
    Nth,
    Raise,
    Refuse,
    Reply,
    Schedule,
    Stale,
    Truncate,
)
from remote_cache.testing.outages import OUTAGES

NAMESPACE = {**vars(f), **{n: getattr(remote_cache, n) for n in remote_cache.__all__}}
"""What a test that pastes a schedule's repr has imported: the language and our exceptions."""

# -- the language --------------------------------------------------------------------------

actions = st.one_of(
    st.builds(Raise, st.sampled_from([BackendUnavailableError, BackendTimeoutError, OSError])),
    st.builds(Reply, st.sampled_from([*REPLIES, "ERR something odd"])),
    st.just(Hang()),
    st.builds(
        Latency,
        st.floats(0, 10, allow_nan=False),
        jitter=st.floats(0, 1, allow_nan=False),
    ),
    st.builds(Drip, st.integers(1, 10**6)),
    st.sampled_from([HalfReply(), Refuse(), Corrupt(), Truncate(), DropPut(), Stale()]),
)
whens = st.one_of(
    st.just(Always()),
    st.builds(Nth, st.integers(1, 100)),
    st.builds(FirstN, st.integers(1, 100)),
    st.builds(Every, st.integers(1, 100)),
    st.integers(1, 50).flatmap(lambda a: st.builds(Calls, st.just(a), st.integers(a + 1, 100))),
    st.builds(Chance, st.floats(0, 1, allow_nan=False)),
    st.floats(0, 100, allow_nan=False).flatmap(
        lambda a: st.builds(During, st.just(a), st.floats(a, 200, allow_nan=False))
    ),
    st.builds(AfterBytes, st.integers(0, 10**6)),
)
glob = st.none() | st.text("abcpt2:*?[]-", min_size=1, max_size=8)
fault_terms = st.builds(
    Fault,
    actions,
    on=st.none()
    | st.sampled_from(["get", "put", "get_many", "put_many", "GET", "SET", "MGET"])
    | st.lists(st.sampled_from(["get", "SET", "MSET"]), min_size=1, max_size=3).map(tuple),
    key=glob,
    cache=glob,
    node=st.none() | st.integers(0, 5),
    connections=st.sampled_from(f.CONNECTIONS),
    when=whens,
).flatmap(
    lambda fault: (
        st.sampled_from(f.DIRECTIONS).map(
            lambda direction: dataclasses.replace(fault, direction=direction)
        )
        if isinstance(fault.does, f.DIRECTED)
        else st.just(fault)
    )
)
schedules = st.builds(Schedule, st.lists(fault_terms, max_size=5), seed=st.integers(0, 2**32))


class TestLanguage:
    """A schedule's repr is the Python that rebuilds it, and it round-trips through JSON."""

    @settings(max_examples=200)
    @given(schedules)
    def test_repr_rebuilds_it(self, schedule: Schedule) -> None:
        assert eval(repr(schedule), NAMESPACE) == schedule

    @settings(max_examples=200)
    @given(schedules)
    def test_json_round_trip(self, schedule: Schedule) -> None:
        again = Schedule.from_json(schedule.to_json())
        assert again == schedule
        assert again.to_json() == schedule.to_json()

    def test_reads_as_written(self) -> None:
        schedule = Schedule(
            [
                Fault(Reply("OOM"), on="put"),
                Fault(Hang(), when=Nth(3)),
                Fault(Latency(0.2, jitter=0.1), key="pt2:fx*", when=Calls(2, 5)),
            ],
            seed=7,
        )
        assert repr(schedule) == (
            "Schedule([Fault(Reply('OOM'), on='put'), Fault(Hang(), when=Nth(3)), "
            "Fault(Latency(0.2, jitter=0.1), key='pt2:fx*', when=Calls(2, 5))], seed=7)"
        )

    @pytest.mark.parametrize(
        ("build", "error", "message"),
        [
            (lambda: Nth(0), ValueError, "n >= 1"),
            (lambda: Calls(5, 2), ValueError, "stop >= 6"),
            (lambda: Calls(3, 3), ValueError, "stop >= 4"),
            (lambda: Fault(Hang(), on=()), ValueError, "on=() matches no call"),
            (lambda: Fault(Hang(), on="Get"), ValueError, "in lower case"),
            (lambda: Fault(Hang(), key=""), ValueError, "key='' matches no call"),
            (lambda: Raise(KeyboardInterrupt), TypeError, "an Exception"),
            (lambda: Chance(1.5), ValueError, "0 <= p <= 1"),
            (lambda: During(5, 1), ValueError, "start <= stop"),
            (lambda: Latency(-1), ValueError, "seconds >= 0"),
            (lambda: Latency(float("nan")), ValueError, "finite"),
            (lambda: Latency("1"), TypeError, "a number"),
            (lambda: Reply("a\r\nb"), ValueError, "one line"),
            (lambda: Reply(""), TypeError, "reply name"),
            (lambda: Raise(42), TypeError, "exception class"),
            (lambda: Fault(Hang(), on="gett"), ValueError, "unknown operation 'gett'"),
            (lambda: Fault(Hang(), direction="sideways"), ValueError, "direction"),
            (lambda: Fault("hang"), TypeError, "an action"),
            (lambda: Fault(Hang(), when=3), TypeError, "when="),
            (lambda: Schedule([Hang()]), TypeError, "Fault"),
            (lambda: Schedule(seed="x"), TypeError, "seed"),
        ],
    )
    def test_mistakes_are_named(self, build: Callable[[], Any], error: type, message: str) -> None:
        with pytest.raises(error, match=re.escape(message)):
            build()

    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            "[]",
            '{"faults": [{"type": "Nope"}]}',
            '{"faults": [{"type": "Fault", "does": {"type": "Nth", "n": 1}}]}',
            '{"faults": [{"type": "Fault", "does": {"type": "Hang"}, "colour": 1}]}',
            '{"faults": [{"type": "Fault", "does": {"type": "Raise", "error": "os.path"}}]}',
            '{"faults": [{"type": "Fault", "does": {"type": "Raise", "error": "no.Such"}}]}',
            '{"faults": [], "seed": "x"}',
        ],
    )
    def test_bad_json_is_a_value_error(self, text: str) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - each names its own problem
            Schedule.from_json(text)

    def test_a_layer_refuses_what_it_cannot_do(self) -> None:
        schedule = Schedule([Fault(Hang()), Fault(Drip(100)), Fault(Refuse(), node=2)])
        with pytest.raises(ValueError, match=r"fault 1 Fault\(Drip\(100\)\) \(it needs: proxy\)"):
            schedule.check_layer("in-process")
        with pytest.raises(ValueError, match=r"fault 2 .*node=2"):
            FaultInjectingBackend(InMemoryBackend(), deadline=1, schedule=schedule)

    def test_hang_needs_a_deadline(self) -> None:
        with pytest.raises(ValueError, match="deadline"):
            FaultInjectingBackend(InMemoryBackend(), schedule=Schedule([Fault(Hang())]))


class TestReplay:
    """The seed decides every draw: the same seed, the same faults; a fault for puts leaves
    the draws of a fault for gets alone."""

    @staticmethod
    def fired_on(schedule: Schedule, calls: int = 60) -> list[tuple[int, int]]:
        injector = FaultInjectingBackend(InMemoryBackend(), deadline=1, schedule=schedule)
        for n in range(calls):
            with contextlib.suppress(BackendUnavailableError):
                injector.get(f"k{n}")
            with contextlib.suppress(BackendUnavailableError):
                injector.put(f"k{n}", b"v")
        return [(fired.fault, fired.call) for fired in schedule.fired]

    def test_same_seed_same_sequence(self) -> None:
        def make(seed: int) -> Schedule:
            return Schedule([Fault(Raise(BackendUnavailableError), when=Chance(0.3))], seed=seed)

        first = self.fired_on(make(11))
        assert first == self.fired_on(make(11))
        assert first != self.fired_on(make(12))
        assert 15 < len(first) < 60  # about 36 of 120

    def test_a_new_fault_leaves_the_others_draws_alone(self) -> None:
        gets = Fault(Raise(BackendUnavailableError), on="get", when=Chance(0.5))
        puts = Fault(Raise(BackendUnavailableError), on="put", when=Chance(0.5))
        alone = [call for fault, call in self.fired_on(Schedule([gets], seed=3))]
        both = [call for fault, call in self.fired_on(Schedule([gets, puts], seed=3)) if fault == 0]
        assert alone == both

    def test_report_names_what_fired(self, remote_cache_clock: VirtualClock) -> None:
        schedule = Schedule([Fault(Raise(BackendUnavailableError), on="get", when=Nth(2))], seed=0)
        injector = FaultInjectingBackend(InMemoryBackend(), schedule=schedule)
        injector.get("first")
        remote_cache_clock.advance(2.5)
        with pytest.raises(BackendUnavailableError):
            injector.get("second")
        assert schedule.report() == (
            "schedule: Schedule([Fault(Raise(BackendUnavailableError), on='get', "
            "when=Nth(2))], seed=0)\n"
            "  fault 0 fired on its matching call 2: GET second at +2.500s"
        )


# -- one schedule, every layer ---------------------------------------------------------------

LAYER_SCHEDULES = [
    *(pytest.param([Fault(Reply(name), on="put")], id=f"{name}-on-put") for name in REPLIES),
    *(pytest.param([Fault(Reply(name), on="get")], id=f"{name}-on-get") for name in REPLIES),
    pytest.param([Fault(Reply("ERR odd"))], id="custom-reply"),
    pytest.param([Fault(Hang(), when=Nth(3))], id="third-call-hangs"),
    pytest.param([Fault(Hang(), on="get", key="pt2:fx::b:*")], id="one-key-hangs"),
    pytest.param([Fault(Latency(0.3, jitter=0.2))], id="latency-within-deadline"),
    pytest.param([Fault(Latency(5))], id="latency-past-deadline"),
    pytest.param([Fault(Refuse(), when=FirstN(2))], id="refused-twice"),
    pytest.param([Fault(Reply("LOADING"), when=During(0, 1.5))], id="loading-for-1.5s"),
    pytest.param([Fault(Reply("OOM"), on="put", when=Chance(0.5))], id="flaky-oom"),
    pytest.param([Fault(Reply("READONLY"), on="put"), Fault(Latency(0.4), on="get")], id="two"),
    pytest.param([Fault(Hang(), on="put", direction="downstream")], id="put-answers-lost"),
    pytest.param([Fault(Hang(), direction="upstream", when=Nth(3))], id="a-request-lost"),
    pytest.param([Fault(Latency(0.3), direction="upstream")], id="late-requests"),
    pytest.param(
        [Fault(Hang(), on="put", direction="downstream"), Fault(Reply("OOM"), key="*b*")],
        id="answer-lost-after-a-refusal",
    ),
]


def script(advance: Callable[[float], None]) -> list[Any]:
    """What the layers are compared on: puts, gets, a batch, with time passing."""
    cache = RemoteFxGraphCache("fx")
    results: list[Any] = []
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value)
        advance(0.4)
    for key in ("a", "b", "c", "a", "b"):
        results.append(cache.get(key))
        advance(0.4)
    results.append(cache.get_many(["a", "b", "c"]))
    return results


def run_on(layer: str, faults: list[Fault], caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """The script on ``layer`` under ``Schedule(faults, seed=5)``: what the caller saw."""
    schedule = Schedule(faults, seed=5)
    caplog.clear()
    blocks = {"in-process": outage_backends, "fakeredis": fakeredis_backends}
    with isolated_cache_stats() as stats, VirtualClock() as clock, blocks[layer]() as handle:
        handle.apply(schedule)
        results = script(clock.advance)
        stat = stats["RemoteFxGraphCache"]
    seen = _seen(results, stat, caplog, schedule, timed=True)
    seen["waited"] = round(clock.slept, 3)
    return seen


def _seen(
    results: list[Any], stat: Any, caplog: Any, schedule: Schedule, *, timed: bool
) -> dict[str, Any]:
    """What a caller of the script saw: values, counts, the errors logged, what fired (with
    the time of each on the test's clock when ``timed``)."""
    errors = [re.search(r"\((\w+Error)", r.getMessage()) for r in caplog.records]
    return {
        "results": results,
        "counted": (stat.hit, stat.miss, stat.put, stat.fail_open),
        "errors": [m.group(1) for m in errors if m],
        "fired": [
            (x.fault, x.call, x.command, x.keys, *((round(x.seconds, 3),) if timed else ()))
            for x in schedule.fired
        ],
    }


class TestEveryLayerAgrees:
    """The same schedule gives the same values, counts, errors, firings and time in-process
    (``remote_cache_outage``) and on fakeredis (``remote_cache_fakeredis``), where the error
    replies are read by redis-py and translated by the Redis backend."""

    @pytest.mark.parametrize("faults", LAYER_SCHEDULES)
    def test_same_outcome(
        self,
        faults: list[Fault],
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.delenv("REMOTE_CACHE_REDIS_TIMEOUT", raising=False)  # 1 s on both
        caplog.set_level(logging.WARNING)
        in_process = run_on("in-process", faults, caplog)
        fake = run_on("fakeredis", faults, caplog)
        assert in_process == fake
        assert in_process["fired"], "the schedule fired nothing: the comparison checks nothing"


# -- the in-process data faults ----------------------------------------------------------------


@pytest.fixture
def outage(remote_cache_clock: VirtualClock) -> Iterator[Any]:
    with outage_backends() as handle:
        yield handle


class TestDataFaults:
    """Faults on the data itself, in-process: damaged, cut, dropped and stale values."""

    def test_corrupt_read_is_counted_corrupt(self, outage: Any) -> None:
        cache = RemoteFxGraphCache("fx")
        cache.put("k", {"big": "value"})
        outage.apply(Schedule([Fault(Corrupt(), on="get", when=Nth(1))]))
        assert cache.get("k") is None
        assert cache.get("k") == {"big": "value"}
        assert cache_stats["RemoteFxGraphCache"].corrupt == 1

    def test_truncated_read(self, outage: Any) -> None:
        cache = RemoteFxGraphCache("fx")
        cache.put("k", {"big": "value"})
        outage.apply(Schedule([Fault(Truncate(), on="get")]))
        assert cache.get("k") is None
        assert cache_stats["RemoteFxGraphCache"].corrupt == 1

    def test_dropped_put_is_acknowledged_and_lost(self, outage: Any) -> None:
        cache = RemoteFxGraphCache("fx")
        outage.apply(Schedule([Fault(DropPut(), key="pt2:fx::lost:*")]))
        cache.put("lost", 1)
        cache.put("kept", 2)
        assert (cache.get("lost"), cache.get("kept")) == (None, 2)
        assert cache_stats["RemoteFxGraphCache"].fail_open == 0  # nobody knew

    def test_dropped_batch_keeps_the_other_keys(self, outage: Any) -> None:
        injector = outage.injector
        outage.apply(Schedule([Fault(DropPut(), key="b")]))
        injector.put_many({"a": b"1", "b": b"2"})
        assert injector.get_many(["a", "b"]) == {"a": b"1"}

    def test_stale_read_returns_what_the_last_put_replaced(self, outage: Any) -> None:
        cache = RemoteFxGraphCache("fx")
        outage.apply(Schedule([Fault(Stale(), on="get", when=Nth(1))]))
        cache.put("k", "old")
        cache.put("k", "new")
        assert cache.get("k") == "old"  # a lagging replica
        assert cache.get("k") == "new"

    def test_stale_batch(self, outage: Any) -> None:
        injector = outage.injector
        outage.apply(Schedule([Fault(Stale(), on="get_many")]))
        injector.put_many({"a": b"1", "b": b"1"})
        injector.put("a", b"2")
        # "a" reads what its last put replaced; "b" had nothing before its only put: a miss
        assert injector.get_many(["a", "b"]) == {"a": b"1"}
        assert injector.get("a") == b"2"


# -- a real server -----------------------------------------------------------------------------


def _three_calls(first: str = "a", second: str = "b") -> dict[str, Any]:
    """Read what was stored before, write, read both: what is compared with a real server."""
    with isolated_cache_stats() as stats:
        cache = RemoteFxGraphCache("fx")
        results = [cache.get(first)]
        cache.put(second, 2)
        results += [cache.get(second), cache.get(first)]
        stat = stats["RemoteFxGraphCache"]
    return {"results": results, "counted": (stat.hit, stat.miss, stat.put, stat.fail_open)}


def _batch_calls(first: str, second: str) -> dict[str, Any]:
    """A batch read of two entries stored before, then each alone."""
    with isolated_cache_stats() as stats:
        cache = RemoteFxGraphCache("fx")
        batch = cache.get_many([first, second])
        results = [batch.get(first), batch.get(second), cache.get(first), cache.get(second)]
        stat = stats["RemoteFxGraphCache"]
    return {"results": results, "counted": (stat.hit, stat.miss, stat.put, stat.fail_open)}


def _script_on_server(url: str, script: Callable[[], dict[str, Any]] = _three_calls) -> Any:
    with redis_environment(url, timeout=0.5):
        return script()


def _script_on_fakes(
    faults: list[Fault],
    layer: str,
    script: Callable[[], dict[str, Any]] = _three_calls,
    stored: tuple[str, ...] = ("a",),
) -> dict[str, Any]:
    """``script``'s outcome on ``layer`` under ``faults``, the ``stored`` entries put before."""
    blocks = {"in-process": outage_backends, "fakeredis": fakeredis_backends}
    with VirtualClock(), blocks[layer]() as handle:
        for name in stored:
            RemoteFxGraphCache("fx").put(name, 1)
        handle.apply(Schedule(faults))
        return script()


def _backend_key(name: str) -> str:
    """The key of entry ``name`` of the scripts' cache on the server."""
    return f"pt2:fx::{name}:c1"


@pytest.mark.redis
class TestARealServerAgrees:
    """What a real server does when made to fail so is what the schedule's one line does."""

    def _seeded(self, server: RedisServer) -> None:
        with redis_environment(server.url, timeout=0.5):
            RemoteFxGraphCache("fx").put("a", 1)

    def test_memory_full_on_writes_only(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        real = _script_on_server(fresh_redis_server.url)
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("OOM"), on="put")], layer) == real
        assert real["results"] == [1, None, 1]

    def test_read_only_replica_after_a_failover(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # nothing listens: stays a replica
        real = _script_on_server(fresh_redis_server.url)
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("READONLY"), on="put")], layer) == real
        assert real["results"] == [1, None, 1]

    def test_an_acl_that_refuses_writes(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        admin.execute_command("ACL", "SETUSER", "admin", "on", ">admin", "~*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "-set", "-mset")
        real = _script_on_server(fresh_redis_server.url)
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("NOPERM"), on="put")], layer) == real
        assert real["results"] == [1, None, 1]

    def test_a_rotated_password(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        admin.execute_command("ACL", "SETUSER", "default", "resetpass", ">rotated")
        stale = fresh_redis_server.url.replace("redis://", "redis://:before@")
        real = _script_on_server(stale)  # a deploy still on the old password
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("WRONGPASS"))], layer) == real
        assert real["results"] == [None, None, None]

    def test_a_paused_server_times_out(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        started = time.monotonic()
        admin.execute_command("CLIENT", "PAUSE", 1250, "ALL")
        real = _script_on_server(fresh_redis_server.url)
        assert time.monotonic() - started >= 1.0  # each call waited its 0.5 s deadline
        faults = [Fault(Hang(), when=FirstN(2))]  # the pause outlasts two deadlines
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes(faults, layer)["counted"] == real["counted"]

    def test_a_restart_loading_a_large_dataset(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        for start in range(0, 20_000, 2_000):  # about 4 s to load at 200 us a key
            admin.mset({f"filler:{n}": "x" for n in range(start, start + 2_000)})
        admin.save()
        fresh_redis_server.config["key-load-delay"] = "200"
        fresh_redis_server.config["loading-process-events-interval-bytes"] = "1024"
        fresh_redis_server.restart(loaded=False)  # it answers LOADING, the test ends it
        real = _script_on_server(fresh_redis_server.url)
        assert fresh_redis_server._ping_reply().startswith(b"-LOADING")  # still loading
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("LOADING"))], layer) == real
        assert real["counted"] == (0, 3, 0, 4)

    def test_the_client_limit(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        admin.config_set("maxclients", 1)  # the admin's own connection is the one
        real = _script_on_server(fresh_redis_server.url)
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("MAXCLIENTS"))], layer) == real
        assert real["counted"] == (0, 3, 0, 4)

    def test_a_password_set_after_the_deploy(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        fresh_redis_server.client().config_set("requirepass", "new")  # the admin stays in
        real = _script_on_server(fresh_redis_server.url)  # a deploy with no password: NOAUTH
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("NOAUTH"))], layer) == real
        assert real["counted"] == (0, 3, 0, 4)

    def test_a_replica_cut_from_its_master(self, fresh_redis_server: RedisServer) -> None:
        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client()
        admin.config_set("replica-serve-stale-data", "no")
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # its master never answers
        real = _script_on_server(fresh_redis_server.url)
        entry = OUTAGES["replica-link-down"]
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes(list(entry.faults), layer) == real
        assert real["counted"] == (0, 3, 0, 4)

    def test_a_script_running_too_long(self, fresh_redis_server: RedisServer) -> None:
        import threading

        self._seeded(fresh_redis_server)
        admin = fresh_redis_server.client(socket_timeout=10)
        admin.config_set("busy-reply-threshold", 50)  # ms: others get BUSY after it
        spin = (  # 0.8 s of a busy loop
            "local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end "
            "local start = now() while now() - start < 800000 do end"
        )
        script = threading.Thread(target=lambda: admin.eval(spin, 0))
        script.start()
        try:
            time.sleep(0.15)  # past the threshold: the server answers BUSY
            real = _script_on_server(fresh_redis_server.url)
        finally:
            script.join(timeout=10)
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("BUSY"))], layer) == real
        assert real["counted"] == (0, 3, 0, 4)

    def test_the_messages_agree(
        self, fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The warning a user reads names the same redis-py error on every layer."""
        admin = fresh_redis_server.client()
        admin.config_set("maxclients", 1)  # held: the admin's connection is the one
        with caplog.at_level(logging.WARNING, logger="remote_cache"):
            _script_on_server(fresh_redis_server.url)
            _script_on_fakes([Fault(Reply("MAXCLIENTS"))], "fakeredis")
        admin.close()
        # "... (BackendUnavailableError: <url>: <what redis-py raised>); failing open ..."
        said = [re.search(r"Error: \S+: (.*?)\);", r.getMessage()) for r in caplog.records]
        errors = [match.group(1) for match in said if match]
        assert len(errors) == 2  # redis-py 5 says ConnectionError, later MaxClientsReachedError
        assert errors[0] == errors[1]
        assert errors[0].endswith("Error: max number of clients reached")


def _long_lived_then_new(
    refuse_new: Callable[[], None], new_process: Callable[[], None]
) -> dict[str, Any]:
    """A process connected before the outage, then one that connects during it: the three
    calls of each (the caller has pointed the caches at a layer)."""
    RemoteFxGraphCache("fx").put("a", 1)  # connected: this connection is kept
    refuse_new()
    long_lived = _three_calls()
    new_process()
    return {"long-lived": long_lived, "new": _three_calls()}


@pytest.mark.redis
class TestOnlyNewConnectionsAreRefused:
    """A client limit or a password set refuses new connections only: a process connected
    before keeps hitting, on a real server and under ``connections="new"``."""

    CASES: ClassVar[dict[str, tuple[Callable[[Any], None], str]]] = {
        "client-limit": (lambda admin: admin.config_set("maxclients", 1), "MAXCLIENTS"),
        "password-set": (lambda admin: admin.config_set("requirepass", "new"), "NOAUTH"),
    }

    @pytest.mark.parametrize("case", list(CASES))
    def test_the_layers_agree_with_a_real_server(
        self, case: str, fresh_redis_server: RedisServer
    ) -> None:
        from remote_cache.testing import OutageProxy

        configure, reply = self.CASES[case]
        admin = fresh_redis_server.client()
        with redis_environment(fresh_redis_server.url, timeout=0.5):
            real = _long_lived_then_new(lambda: configure(admin), close_shared_clients)
        assert real["long-lived"]["counted"] == (3, 0, 1, 0)  # all hits, nothing refused
        assert real["new"]["counted"] == (0, 3, 0, 4)
        admin.config_set("maxclients", 10000)
        admin.config_set("requirepass", "")
        admin.flushall()
        schedule = Schedule([Fault(Reply(reply), connections="new")])
        with VirtualClock(), fakeredis_backends() as fake:
            assert _long_lived_then_new(lambda: fake.apply(schedule), fake.close_clients) == real
        with (
            OutageProxy.for_url(fresh_redis_server.url) as proxy,
            redis_environment(proxy.url, timeout=0.5),
        ):
            assert _long_lived_then_new(lambda: proxy.apply(schedule), close_shared_clients) == real
        admin.close()

    def test_in_process_calls_have_no_connections(self) -> None:
        with outage_backends() as outage, pytest.raises(ValueError, match="in-process"):
            outage.apply(Schedule([Fault(Reply("NOAUTH"), connections="new")]))

    def test_a_mistake(self) -> None:
        with pytest.raises(ValueError, match="connections"):
            Fault(Reply("NOAUTH"), connections="old")


def _names_in_one_slot(count: int) -> list[str]:
    """``count`` entry names whose keys hash to one slot (a batch of them is one slot's)."""
    by_slot: dict[int, list[str]] = {}
    for n in range(100_000):
        names = by_slot.setdefault(key_slot(_backend_key(f"e{n}").encode()), [])
        names.append(f"e{n}")
        if len(names) == count:
            return names
    raise AssertionError("no slot")  # pragma: no cover - the birthday bound: about 200 names


def _name_on(cluster: RedisClusterServer, index: int, *, besides: str) -> str:
    """An entry name whose key node ``index`` serves, in another slot than ``besides``'s."""
    taken = key_slot(_backend_key(besides).encode())
    for n in range(10_000):
        key = _backend_key(f"n{n}")
        if cluster.node_for_key(key) == index and key_slot(key.encode()) != taken:
            return f"n{n}"
    raise AssertionError("no name")  # pragma: no cover - a third of the names qualify


@contextlib.contextmanager
def _migrating(cluster: RedisClusterServer, slot: int, source: int, target: int) -> Iterator[None]:
    """``slot`` half moved from node ``source`` to ``target`` (ASK), put back after."""
    src, dst = cluster.nodes[source].client(), cluster.nodes[target].client()
    ids = [_text(c.execute_command("CLUSTER", "MYID")) for c in (src, dst)]
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[0])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[1])
        yield
    finally:
        for client in (src, dst):
            client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
            client.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.redis
class TestARealClusterAgrees:
    """A client that is not a cluster client, on a real cluster in the middle of a resharding,
    meets what the schedule's replies say: MOVED, ASK, TRYAGAIN, CLUSTERDOWN."""

    def test_moved(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        cluster = remote_cache_redis_cluster.cluster
        RemoteFxGraphCache("fx").put("a", 1)  # through the fixture's cluster client
        owner = cluster.node_for_key(_backend_key("a"))
        node = (owner + 1) % len(cluster.nodes)  # the node a stale configuration names
        second = _name_on(cluster, node, besides="a")
        script = functools.partial(_three_calls, "a", second)
        real = _script_on_server(cluster.nodes[node].url, script)
        faults = [Fault(Reply("MOVED"), key=_backend_key("a"))]
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes(faults, layer, script) == real
        assert real["results"] == [None, 2, None]

    def test_asked_for_a_key_already_moved(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        cluster = remote_cache_redis_cluster.cluster
        key = _backend_key("a")
        source = cluster.node_for_key(key)
        target = (source + 1) % len(cluster.nodes)
        with _migrating(cluster, key_slot(key.encode()), source, target):
            script = functools.partial(_three_calls, "a", "a")  # its write is asked away too
            real = _script_on_server(cluster.nodes[source].url, script)
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("ASK"), key=key)], layer, script) == real
        assert real["counted"] == (0, 3, 0, 4)

    def test_a_batch_over_a_slot_half_moved(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        cluster = remote_cache_redis_cluster.cluster
        kept, moved = _names_in_one_slot(2)
        cache = RemoteFxGraphCache("fx")
        cache.put(kept, 1)
        cache.put(moved, 1)
        slot = key_slot(_backend_key(kept).encode())
        source = cluster.node_for_key(_backend_key(kept))
        target = (source + 1) % len(cluster.nodes)
        script = functools.partial(_batch_calls, kept, moved)
        with _migrating(cluster, slot, source, target):
            node, admin = cluster.nodes[target], cluster.nodes[source].client()
            admin.execute_command("MIGRATE", node.host, node.port, _backend_key(moved), 0, 5000)
            admin.close()
            real = _script_on_server(cluster.nodes[source].url, script)
        faults = [
            Fault(Reply("TRYAGAIN"), on="get_many"),
            Fault(Reply("ASK"), key=_backend_key(moved)),
        ]
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes(faults, layer, script, (kept, moved)) == real
        assert real["results"] == [None, None, 1, None]

    def test_a_node_serving_no_slot(self) -> None:
        port = free_cluster_port("127.0.0.1", set())
        config = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"}
        with RedisServer(port=port, config=config) as lone:  # no slot assigned: cluster down
            real = _script_on_server(lone.url)
        for layer in ("in-process", "fakeredis"):
            assert _script_on_fakes([Fault(Reply("CLUSTERDOWN"))], layer) == real
        assert real["counted"] == (0, 3, 0, 4)


@pytest.mark.redis
@pytest.mark.remote_cache_cluster(proxied=True)
class TestOneNodeOfACluster:
    """Each node of a cluster behind a proxy of its own: ``Fault(node=i)`` fails node ``i``'s
    calls only, for a cluster client that follows the slots as it would in production."""

    def _spread(self, cluster: RedisClusterFixture) -> dict[int, list[str]]:
        """Entry names stored before the outage, by the index of the node serving each."""
        cache = RemoteFxGraphCache("fx")
        by_node: dict[int, list[str]] = {}
        for n in range(24):
            cache.put(str(n), n)
            by_node.setdefault(cluster.node_for_key(_backend_key(str(n))), []).append(str(n))
        assert len(by_node) == 3  # every node serves some
        return by_node

    def test_one_node_loading(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        by_node = self._spread(remote_cache_redis_cluster)
        schedule = remote_cache_redis_cluster.apply(Schedule([Fault(Reply("LOADING"), node=1)]))
        with isolated_cache_stats() as stats:
            cache = RemoteFxGraphCache("fx")
            read = {name: cache.get(name) for names in by_node.values() for name in names}
            stat = stats["RemoteFxGraphCache"]
        assert {n for n, value in read.items() if value is None} == set(by_node[1])
        assert all(read[n] == int(n) for n in (*by_node[0], *by_node[2]))
        assert (stat.hit, stat.miss) == (24 - len(by_node[1]), len(by_node[1]))
        assert {fired.keys for fired in schedule.fired} == {
            (_backend_key(n),) for n in by_node[1]
        }  # each proxy fires for its own node alone

    def test_a_batch_over_every_node(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        by_node = self._spread(remote_cache_redis_cluster)
        remote_cache_redis_cluster.apply(Schedule([Fault(Hang(), node=2)]))
        started = time.monotonic()
        found = RemoteFxGraphCache("fx").get_many([str(n) for n in range(24)])
        assert time.monotonic() - started < 4  # bounded by the 1 s deadline, not hung
        assert set(found) <= {n for n in map(str, range(24)) if n not in by_node[2]}
        remote_cache_redis_cluster.restore()
        again = RemoteFxGraphCache("fx").get_many([str(n) for n in range(24)])
        assert again == {str(n): n for n in range(24)}  # every node answers again

    def test_an_ask_is_followed_as_from_a_real_migration(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        cluster = remote_cache_redis_cluster.cluster
        key = _backend_key("a")
        source = cluster.node_for_key(key)
        target = (source + 1) % len(cluster.nodes)
        script = functools.partial(_three_calls, "a", "a")
        RemoteFxGraphCache("fx").put("a", 1)
        with _migrating(cluster, key_slot(key.encode()), source, target):
            node, admin = cluster.nodes[target], cluster.nodes[source].client()
            admin.execute_command("MIGRATE", node.host, node.port, key, 0, 5000)
            admin.close()
            real = script()  # the cluster client follows ASK to the target, through its proxy
        remote_cache_redis_cluster.client.delete(key)
        cluster.nodes[target].client().flushall()  # the moved entry, in a slot not its own
        RemoteFxGraphCache("fx").put("a", 1)
        schedule = remote_cache_redis_cluster.apply(Schedule([Fault(Reply("ASK"), key=key)]))
        assert script() == real
        assert real["counted"] == (3, 0, 1, 0)  # no failure: redirections are followed
        assert len(schedule.fired) == 4  # each call asked away once, then served

    def test_a_moved_names_a_node_of_the_cluster(
        self, remote_cache_redis_cluster: RedisClusterFixture
    ) -> None:
        cache = RemoteFxGraphCache("fx")
        cache.put("a", 1)
        remote_cache_redis_cluster.apply(
            Schedule([Fault(Reply("MOVED"), key=_backend_key("a"), when=FirstN(1))])
        )
        assert cache.get("a") == 1  # followed back to the node serving it
        remote_cache_redis_cluster.restore()
        others = [f"s{n}" for n in range(40)]
        cache.put_many({name: name for name in others})
        assert cache.get_many(others) == {name: name for name in others}  # no slot misled

    def test_the_proxy_of_a_key(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        cache = RemoteFxGraphCache("fx")
        cache.put("a", 1)
        proxy = remote_cache_redis_cluster.proxy_for_key(_backend_key("a"))
        assert proxy.node == remote_cache_redis_cluster.node_for_key(_backend_key("a"))
        proxy.cut()  # that node looks crashed to the cluster's clients
        assert cache.get("a") is None
        assert remote_cache_redis_cluster.client.get(_backend_key("a")) is not None  # direct


def test_apply_needs_the_nodes_behind_proxies() -> None:
    unstarted = RedisClusterServer()  # ports picked, nothing started
    handle = RedisClusterFixture(unstarted, client=None)
    with pytest.raises(RuntimeError, match="proxied=True"):
        handle.apply(Schedule([Fault(Hang())]))
    with pytest.raises(RuntimeError, match="proxied=True"):
        handle.proxy_for_key("k")
    with pytest.raises(ValueError, match="no replicas"):
        RedisClusterServer(replicas=1, proxied=True)


# -- replay from a failure's report --------------------------------------------------------

FLAKY_TEST = """
from remote_cache import RemoteFxGraphCache
from remote_cache.testing.faults import Chance, Fault, Reply, Schedule


def test_flaky(remote_cache_outage):
    remote_cache_outage.apply(Schedule([Fault(Reply("LOADING"), when=Chance(0.5))]))
    cache = RemoteFxGraphCache("fx")
    hits = 0
    for n in range(12):
        cache.put(str(n), n)
        hits += cache.get(str(n)) == n
    assert hits == 12, hits
"""


def _faults_section(result: pytest.RunResult) -> list[str]:
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "remote_cache faults" in line)
    section = []
    for line in lines[start + 1 :]:
        if line.startswith(("=", "_", "FAILED")):
            break
        section.append(line)
    return section


class TestReplayFromTheReport:
    """A failing test's report shows its schedule, what fired and the line that replays it;
    that line gives the same faults again, under xdist too."""

    @pytest.mark.parametrize("workers", [["-n", "2"]], ids=["xdist"])  # xdist: the hard case
    def test_replay(self, pytester: pytest.Pytester, workers: list[str]) -> None:
        pytester.makepyfile(test_flaky=FLAKY_TEST)
        first = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
        first.assert_outcomes(failed=1)
        section = _faults_section(first)
        assert section[0].startswith(
            "schedule: Schedule([Fault(Reply('LOADING'), when=Chance(0.5))]"
        )
        assert any("fault 0 fired on its matching call" in line for line in section)
        replay = section[-1]
        match = re.fullmatch(r"replay: pytest '(.+)' --remote-cache-seed=(\d+)", replay)
        assert match, replay
        again = pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            *workers,
            match.group(1),
            f"--remote-cache-seed={match.group(2)}",
        )
        again.assert_outcomes(failed=1)
        untimed = [re.sub(r" at \+[\d.]+s$", "", line) for line in section]  # real time moves
        assert [re.sub(r" at \+[\d.]+s$", "", line) for line in _faults_section(again)] == untimed

    def test_the_line_runs_as_printed_from_elsewhere(self, pytester: pytest.Pytester) -> None:
        import subprocess
        import sys

        pytester.makepyfile(
            test_quote="""
            import pytest
            from remote_cache.testing.faults import Fault, Hang, Schedule

            @pytest.mark.parametrize("name", ["it's"])
            def test_q(remote_cache_outage, name):
                remote_cache_outage.apply(Schedule([Fault(Hang())]))
                assert name == "no"
            """
        )
        (pytester.path / "elsewhere").mkdir()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "../test_quote.py"],
            cwd=pytester.path / "elsewhere", capture_output=True, text=True, check=False,
        )  # fmt: skip
        replay = next(line for line in result.stdout.splitlines() if line.startswith("replay: "))
        command = replay.removeprefix("replay: ").replace(
            "&& pytest ", f"&& {sys.executable} -m pytest -p no:cacheprovider "
        )
        assert command.startswith("cd '")  # run from pytest's root, where node ids start
        again = subprocess.run(
            ["/bin/sh", "-c", command], cwd=pytester.path / "elsewhere",
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert "1 failed" in again.stdout, again.stdout + again.stderr  # found, run, failed

    def test_a_passing_test_reports_nothing(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            test_fine="""
            from remote_cache.testing.faults import Fault, Hang, Schedule

            def test_fine(remote_cache_outage):
                remote_cache_outage.apply(Schedule([Fault(Hang())]))
            """
        )
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
        result.assert_outcomes(passed=1)
        assert "remote_cache faults" not in result.stdout.str()


# -- matching, validation and the pieces underneath ------------------------------------------


class TestMatching:
    """What a fault matches: commands for operation names, key and cache-id globs."""

    @pytest.mark.parametrize(
        ("on", "command", "matched"),
        [
            ("get", "GET", True),
            ("get", "MGET", True),
            ("get_many", "GET", False),
            ("put", "MSET", True),
            ("put_many", "SET", True),
            ("SET", "SET", True),
            ("SET", "GET", False),
            (["get", "MSET"], "MSET", True),
            (None, "MGET", True),
        ],
    )
    def test_on(self, on: Any, command: str, matched: bool) -> None:
        assert Fault(Hang(), on=on).matches(command, ["k"]) is matched

    def test_a_list_is_kept_as_a_tuple(self) -> None:
        assert Fault(Hang(), on=["get", "put"]).on == ("get", "put")

    def test_cache_glob_matches_the_cache_id(self) -> None:
        fault = Fault(Hang(), cache="fx-*")
        assert fault.matches("GET", ["pt2:fx-graph-v1::abc:c1"])
        assert not fault.matches("GET", ["pt2:autotune::abc:c1"])
        assert not fault.matches("GET", ["not-a-cache-key"])  # no id to match
        assert fault.matches("MGET", ["pt2:autotune::a:c1", "pt2:fx-graph-v1::b:c1"])

    def test_key_glob(self) -> None:
        fault = Fault(Hang(), key="pt2:*::hot*")
        assert fault.matches("GET", ["pt2:fx::hot-1:c1"])
        assert not fault.matches("GET", ["pt2:fx::cold:c1"])

    def test_after_bytes(self) -> None:
        import random

        assert AfterBytes(10).fires(1, random.Random(0), 0.0, 10)
        assert not AfterBytes(10).fires(1, random.Random(0), 0.0, 9)
        assert Fault(Hang(), when=AfterBytes(1)).layers == ("proxy",)

    @pytest.mark.parametrize(
        ("build", "error"),
        [
            (lambda: Nth(1.5), TypeError),
            (lambda: Chance("x"), TypeError),
            (lambda: Fault(Hang(), on=[""]), TypeError),
            (lambda: Fault(Hang(), key=3), TypeError),
            (lambda: Fault(Hang(), node=-1), ValueError),
        ],
        ids=["nth-fraction", "chance-text", "on-empty", "key-number", "node-negative"],
    )
    def test_more_mistakes(self, build: Callable[[], Any], error: type) -> None:
        with pytest.raises(error):
            build()

    def test_equality_is_of_schedules_only(self) -> None:
        assert Schedule([], seed=1) != "Schedule([], seed=1)"
        assert Schedule([Fault(Hang())], seed=1) == Schedule([Fault(Hang())], seed=1)
        assert Schedule([Fault(Hang())], seed=1) != Schedule([Fault(Hang())], seed=2)

    @pytest.mark.parametrize(
        "data",
        [
            {"faults": 3},
            {"faults": [{"type": "Fault", "does": {"type": "Raise", "error": ""}}]},
            {"faults": [{"type": "Fault", "does": {"type": "Raise", "error": "json.JSONDecoder"}}]},
            {"faults": [{"type": "Fault", "does": {"type": "Latency"}}]},
        ],
    )
    def test_bad_data(self, data: Any) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - each names its own problem
            Schedule.from_data(data)

    def test_builtin_exceptions_by_name(self) -> None:
        schedule = Schedule([Fault(Raise(TimeoutError))], seed=0)
        assert '"builtins:TimeoutError"' in schedule.to_json()
        assert Schedule.from_json(schedule.to_json()) == schedule

    def test_a_schedule_started_twice_is_reported_once(self) -> None:
        schedule = Schedule([Fault(Hang())], seed=0)
        f.begin_test(5)
        try:
            assert f.current_seed() == 5
            assert Schedule([]).seed == 5  # made without a seed: the test's
            schedule.start()
            schedule.start()
            assert f.started_schedules() == [schedule]
        finally:
            f.begin_test(None)
        assert f.current_seed() == 0


class TestInjectorDetails:
    """The in-process layer's corners: several ending faults, re-entry, batches."""

    def test_the_first_ending_fault_wins(self) -> None:
        schedule = Schedule([Fault(Reply("OOM")), Fault(Refuse())], seed=0)
        injector = FaultInjectingBackend(InMemoryBackend(), schedule=schedule)
        with pytest.raises(BackendCommandError, match="OOM"):
            injector.put("k", b"v")
        assert [fired.fault for fired in schedule.fired] == [0, 1]

    def test_refused_is_a_lost_connection(self) -> None:
        injector = FaultInjectingBackend(InMemoryBackend(), schedule=Schedule([Fault(Refuse())]))
        with pytest.raises(BackendUnavailableError, match="connection refused"):
            injector.get("k")

    def test_apply_needs_a_schedule(self) -> None:
        with pytest.raises(TypeError, match="Schedule"):
            FaultInjectingBackend(InMemoryBackend()).apply([Fault(Hang())])  # type: ignore[arg-type]

    def test_a_batch_dropped_whole(self) -> None:
        injector = FaultInjectingBackend(InMemoryBackend(), schedule=Schedule([Fault(DropPut())]))
        injector.put_many({"a": b"1", "b": b"2"})
        assert injector.get_many(["a", "b"]) == {}

    def test_corrupting_what_is_not_bytes_leaves_it(self) -> None:
        schedule = Schedule([Fault(Corrupt())])
        injector = FaultInjectingBackend(InMemoryBackend({"k": "text"}), schedule=schedule)
        assert injector.get("k") == "text"

    def test_a_call_made_while_deciding_is_refused(self) -> None:
        """A call from inside the decision (a signal handler, here a When of the test's own)
        is refused as re-entered, never waited for."""
        seen: list[BaseException] = []

        @dataclasses.dataclass(frozen=True, repr=False)
        class Reentering(f.When):
            def fires(self, n: int, rng: Any, seconds: float, sent: int) -> bool:
                if n == 1:
                    try:
                        injector.get("inner")
                    except BackendUnavailableError as exc:
                        seen.append(exc)
                return False

        injector = FaultInjectingBackend(InMemoryBackend({"outer": b"v"}), deadline=1)
        injector.apply(Schedule([Fault(Hang(), when=Reentering())]))
        assert injector.get("outer") == b"v"
        assert len(seen) == 1
        assert "re-entered" in str(seen[0])


class TestResp:
    """Requests as redis-py sends them: whole, in pieces, several at once."""

    def test_split(self) -> None:
        from remote_cache.testing._resp import split_requests

        one = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        two = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n"
        requests, rest = split_requests(one + two + b"*2\r\n$3\r\nGE")
        assert requests == [([b"GET", b"k"], one), ([b"SET", b"k", b"value"], two)]
        assert rest == b"*2\r\n$3\r\nGE"

    @pytest.mark.parametrize("cut", range(1, 22))
    def test_any_cut_waits_for_the_rest(self, cut: int) -> None:
        from remote_cache.testing._resp import split_requests

        whole = b"*2\r\n$3\r\nGET\r\n$4\r\nk\r\nx\r\n"
        requests, rest = split_requests(whole[:cut])
        assert (requests, rest) == ([], whole[:cut])
        assert split_requests(rest + whole[cut:]) == ([([b"GET", b"k\r\nx"], whole)], b"")

    def test_inline_command(self) -> None:
        from remote_cache.testing._resp import split_requests

        assert split_requests(b"PING\r\n") == ([([b"PING"], b"PING\r\n")], b"")

    @pytest.mark.parametrize(
        "data", [b"*x\r\n", b"*1\r\n+GET\r\n", b"*1\r\n$-1\r\n", b"*1\r\n$3\r\nGETXX"]
    )
    def test_what_no_client_sends(self, data: bytes) -> None:
        from remote_cache.testing._resp import split_requests

        with pytest.raises(ValueError):  # noqa: PT011 - each names its own problem
            split_requests(data)

    @pytest.mark.parametrize(
        ("fields", "keys"),
        [
            ([b"GET", b"a"], ["a"]),
            ([b"SET", b"a", b"v", b"EX", b"5"], ["a"]),
            ([b"MGET", b"a", b"b"], ["a", b"b".decode()]),
            ([b"MSET", b"a", b"1", b"b", b"2"], ["a", "b"]),
            ([b"PING"], []),
            ([b"GET", "é\udc80".encode("utf-8", "surrogatepass")], ["é\udc80"]),
        ],
    )
    def test_keys(self, fields: list[bytes], keys: list[str]) -> None:
        from remote_cache.testing._resp import keys_of

        assert keys_of(fields[0].decode(), fields) == keys


class TestFakeredisDetails:
    """The fakeredis layer with a value redis-py sends in pieces, and after the schedule."""

    def test_a_large_value_under_a_schedule(self, remote_cache_clock: VirtualClock) -> None:
        big = "x" * 100_000
        with fakeredis_backends() as fake:
            fake.apply(Schedule([Fault(Latency(0.1), on="put")]))
            cache = RemoteFxGraphCache("fx")
            cache.put("big", big)  # sent as several pieces: the request is read whole
            assert cache.get("big") == big
            fake.restore()
            cache.put("big2", big)
            assert cache.get("big2") == big
        assert remote_cache_clock.slept == pytest.approx(0.1)

    def test_refused(self, remote_cache_clock: VirtualClock) -> None:
        with fakeredis_backends() as fake:
            fake.apply(Schedule([Fault(Refuse(), on="get")]))
            with pytest.raises(BackendUnavailableError):
                RedisRemoteCacheBackend().get("k")

    def test_apply_refuses_what_fakeredis_cannot_do(self) -> None:
        with fakeredis_backends() as fake:
            with pytest.raises(ValueError, match="fakeredis layer cannot simulate"):
                fake.apply(Schedule([Fault(Corrupt())]))
            with pytest.raises(TypeError, match="Schedule"):
                fake.apply("OOM")  # type: ignore[arg-type]


# -- the proxy: the same schedule over a real network -------------------------------------------

PROXY_SCHEDULES = [
    *(pytest.param([Fault(Reply(name), on="put")], id=f"{name}-on-put") for name in REPLIES),
    *(pytest.param([Fault(Reply(name), on="get")], id=f"{name}-on-get") for name in REPLIES),
    pytest.param([Fault(Reply("ERR odd"))], id="custom-reply"),
    pytest.param([Fault(Hang(), when=Nth(3))], id="third-call-hangs"),
    pytest.param([Fault(Refuse(), when=FirstN(2))], id="refused-twice"),
    pytest.param([Fault(Reply("LOADING"), when=During(0, 1.5))], id="loading-for-1.5s"),
    pytest.param([Fault(Reply("OOM"), on="put", when=Chance(0.5))], id="flaky-oom"),
    pytest.param([Fault(Latency(0.05), on="get")], id="latency-on-gets"),
    pytest.param([Fault(Hang(), on="put", direction="downstream", when=Nth(2))], id="answer-lost"),
    pytest.param([Fault(Latency(0.05), direction="upstream")], id="late-requests"),
]


def run_through_proxy(server: RedisServer, faults: list[Fault], caplog: Any) -> dict[str, Any]:
    """``run_on``'s script through an ``OutageProxy`` in front of a real server."""
    from remote_cache.testing import OutageProxy

    server.client().flushall()
    schedule = Schedule(faults, seed=5)
    caplog.clear()
    with (
        isolated_cache_stats() as stats,
        VirtualClock() as clock,
        OutageProxy.for_url(server.url) as proxy,
        redis_environment(proxy.url, timeout=0.5),
    ):
        proxy.apply(schedule)
        results = script(clock.advance)
        stat = stats["RemoteFxGraphCache"]
    return _seen(results, stat, caplog, schedule, timed=False)


@pytest.mark.redis
class TestTheProxyAgrees:
    """The proxy reads RESP: the same schedule gives the same values, counts, errors and
    firings over a real network to a real server as in-process."""

    @pytest.mark.parametrize("faults", PROXY_SCHEDULES)
    def test_same_outcome(
        self,
        faults: list[Fault],
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", "0.5")  # the proxy fixture's deadline
        caplog.set_level(logging.WARNING)
        in_process = run_on("in-process", faults, caplog)
        del in_process["waited"]
        in_process["fired"] = [fired[:4] for fired in in_process["fired"]]
        assert run_through_proxy(redis_server, faults, caplog) == in_process
        assert in_process["fired"]


@pytest.fixture
def proxied(redis_server: RedisServer) -> Iterator[Any]:
    """An ``OutageProxy`` in front of the session's server, emptied."""
    from remote_cache.testing import OutageProxy

    redis_server.client().flushall()
    with OutageProxy.for_url(redis_server.url) as proxy:
        yield proxy


def _proxy_client(proxy: Any, timeout: float = 2.0) -> Any:
    """A plain redis-py client through ``proxy`` (RESP2, ``timeout`` seconds a reply)."""
    import redis

    return redis.Redis.from_url(proxy.url, socket_timeout=timeout, protocol=2)


def _replies_after_restore(proxy: Any, requests: list[bytes], lines: int) -> bytes:
    """Send raw ``requests`` on one connection; nothing comes back while the proxy's faults
    hold it; after ``restore()``, the first ``lines`` reply lines that come."""
    import socket

    with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
        for request in requests:
            sock.sendall(request)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        proxy.restore()
        sock.settimeout(5)
        received = b""
        while received.count(b"\r\n") < lines:
            received += sock.recv(100)
    return received


@pytest.mark.redis
class TestProxyFaults:
    """What only the proxy does, and what it leaves alone."""

    _client = staticmethod(_proxy_client)

    def test_an_answer_keeps_its_turn_in_a_pipeline(self, proxied: Any) -> None:
        proxied.apply(Schedule([Fault(Reply("OOM"), key="b")]))
        client = self._client(proxied)
        pipe = client.pipeline(transaction=False)
        pipe.set("a", "1").set("b", "2").set("c", "3").get("a").get("c")
        assert [type(r).__name__ if isinstance(r, Exception) else r for r in pipe.execute(
            raise_on_error=False
        )] == [True, "OutOfMemoryError", True, b"1", b"3"]  # fmt: skip
        client.close()

    def test_hang_holds_the_connection_until_restore(self, proxied: Any) -> None:
        import redis

        proxied.apply(Schedule([Fault(Hang(), on="get", when=Nth(1))]))
        client = self._client(proxied)
        client.set("k", "v")
        slow = redis.Redis.from_url(proxied.url, socket_timeout=0.3, protocol=2)
        with pytest.raises(redis.TimeoutError):
            slow.get("k")
        proxied.restore()
        assert client.get("k") == b"v"  # another connection: untouched
        client.close()
        slow.close()

    def test_held_requests_reach_the_server_in_order_after_restore(self, proxied: Any) -> None:
        proxied.apply(Schedule([Fault(Hang(), on="SET", key="first")]))
        received = _replies_after_restore(
            proxied,
            [
                b"*3\r\n$3\r\nSET\r\n$5\r\nfirst\r\n$1\r\n1\r\n",
                b"*2\r\n$3\r\nGET\r\n$5\r\nfirst\r\n",
            ],
            3,
        )
        assert received == b"+OK\r\n$1\r\n1\r\n"  # each reply in its turn, none lost

    def test_half_reply_then_reset(self, proxied: Any) -> None:
        import redis

        client = self._client(proxied)
        client.set("k", "x" * 1000)
        proxied.apply(Schedule([Fault(HalfReply(), on="get")]))
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        client.close()

    def test_drip(self, proxied: Any) -> None:
        client = self._client(proxied)
        client.set("k", "x" * 300)
        proxied.apply(Schedule([Fault(Drip(1000), on="get")]))
        started = time.monotonic()
        assert client.get("k") == b"x" * 300
        assert time.monotonic() - started >= 0.25  # ~310 bytes at 1000 bytes/s
        client.close()


@pytest.mark.redis
class TestDirections:
    """``direction=`` on what a link does: the request's way ("upstream") or the answer's
    ("downstream"). Over a real network to a real server, what the server got is checked."""

    _client = staticmethod(_proxy_client)

    def test_an_answer_lost_after_the_work(self, proxied: Any, redis_server: RedisServer) -> None:
        import redis

        proxied.apply(Schedule([Fault(Hang(), on="SET", direction="downstream")]))
        client = self._client(proxied, timeout=0.3)
        with pytest.raises(redis.TimeoutError):
            client.set("k", "v")
        assert redis_server.client().get("k") == b"v"  # done: only its answer was lost
        client.close()

    def test_the_answers_after_a_lost_one_wait_and_come_on_restore(self, proxied: Any) -> None:
        proxied.apply(Schedule([Fault(Hang(), key="first", direction="downstream")]))
        received = _replies_after_restore(
            proxied,
            [
                b"*3\r\n$3\r\nSET\r\n$5\r\nfirst\r\n$1\r\n1\r\n",
                b"*2\r\n$3\r\nGET\r\n$6\r\nsecond\r\n",
            ],
            2,
        )
        assert received == b"+OK\r\n$-1\r\n"  # in order, none lost

    def test_a_request_lost_on_its_way(self, proxied: Any, redis_server: RedisServer) -> None:
        import redis

        client = self._client(proxied, timeout=0.2)
        for _ in range(3):  # the client leaves at its timeout, the test restores at once
            proxied.apply(Schedule([Fault(Hang(), on="SET", direction="upstream")]))
            with pytest.raises(redis.TimeoutError):
                client.set("k", "v")
            proxied.restore()
            time.sleep(0.1)
            assert redis_server.client().get("k") is None  # never reached the server
        client.close()

    def test_half_a_request_then_a_reset(self, proxied: Any, redis_server: RedisServer) -> None:
        import redis

        proxied.apply(Schedule([Fault(HalfReply(), on="SET", direction="upstream")]))
        client = self._client(proxied)
        with pytest.raises(redis.ConnectionError):
            client.set("k", "x" * 1000)
        assert redis_server.client().get("k") is None  # half a command is none
        proxied.restore()
        assert client.set("k", "y") is True  # a new connection: all well
        client.close()

    def test_a_request_late_on_its_way_is_done_when_it_arrives(
        self, proxied: Any, redis_server: RedisServer
    ) -> None:
        import redis

        proxied.apply(Schedule([Fault(Latency(0.5), on="SET", direction="upstream")]))
        client = self._client(proxied, timeout=0.2)
        with pytest.raises(redis.TimeoutError):
            client.set("k", "v")
        direct = redis_server.client()
        assert direct.get("k") is None  # still on its way
        deadline = time.monotonic() + 3
        while direct.get("k") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert direct.get("k") == b"v"  # it arrived after the client gave up
        client.close()

    def test_a_dripping_request(self, proxied: Any) -> None:
        client = self._client(proxied)
        proxied.apply(Schedule([Fault(Drip(2000), on="SET", direction="upstream")]))
        started = time.monotonic()
        assert client.set("k", "x" * 300) is True
        assert time.monotonic() - started >= 0.12  # ~330 bytes at 2000 bytes/s
        proxied.restore()
        started = time.monotonic()
        assert client.get("k") == b"x" * 300  # the reply was never slowed
        assert time.monotonic() - started < 0.12
        client.close()

    @pytest.mark.parametrize(("direction", "stored"), [("upstream", None), ("downstream", b"v")])
    def test_a_timeout_toxic_one_way(
        self, proxied: Any, redis_server: RedisServer, direction: str, stored: bytes | None
    ) -> None:
        import redis

        client = self._client(proxied, timeout=0.2)
        client.ping()  # connected before: a new one's handshake would stop too
        proxied.timeout(0, direction=direction)
        with pytest.raises(redis.TimeoutError):
            client.set("k", "v")
        time.sleep(0.05)
        assert redis_server.client().get("k") == stored  # downstream: done, answer stopped
        client.close()

    def test_a_reply_is_no_direction(self) -> None:
        with pytest.raises(ValueError, match=r"Reply.*has none"):
            Fault(Reply("OOM"), direction="downstream")

    def test_refuse_resets(self, proxied: Any) -> None:
        import redis

        client = self._client(proxied)
        proxied.apply(Schedule([Fault(Refuse(), when=Nth(1))]))
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        assert client.get("k") is None  # the next call connects again
        client.close()

    def test_node_and_bytes(self, proxied: Any) -> None:
        client = self._client(proxied)
        proxied.node = 1
        late = Fault(Reply("ERR late"), when=AfterBytes(2000))
        schedule = proxied.apply(Schedule([Fault(Reply("ERR node 0"), node=0), late]))
        assert client.set("k", "v")  # node 0's fault is not this node's; 2000 bytes not yet
        with pytest.raises(Exception, match="late"):
            client.set("big", "x" * 2000)  # the connection passes 2000 bytes with this one
        assert [fired.fault for fired in schedule.fired] == [1]
        client.close()

    def test_a_layer_it_cannot_simulate(self, proxied: Any) -> None:
        with pytest.raises(ValueError, match="proxy layer cannot simulate"):
            proxied.apply(Schedule([Fault(Corrupt())]))
        with pytest.raises(TypeError, match="Schedule"):
            proxied.apply([Fault(Hang())])

    def test_tls_passes_through_untouched(self) -> None:
        from remote_cache.testing import OutageProxy

        with RedisServer(tls=True) as server:
            url = f"{server.url}?ssl_ca_certs={server.directory}/ca.crt&ssl_check_hostname=false"
            with OutageProxy.for_url(url) as proxy:
                schedule = proxy.apply(Schedule([Fault(Reply("OOM"))]))
                backend = RedisRemoteCacheBackend(url=proxy.url, timeout=5)
                backend.put("k", b"v")
                assert backend.get("k") == b"v"
                assert schedule.fired == []  # encrypted: no command to match


class TestReplies:
    """Replies as servers send them (RESP2 and RESP3): where each ends, at any cut."""

    REPLIES = (
        b"+OK\r\n",
        b"-ERR no\r\n",
        b":42\r\n",
        b"$5\r\nhello\r\n",
        b"$-1\r\n",
        b"*2\r\n$1\r\na\r\n:1\r\n",
        b"*-1\r\n",
        b"*2\r\n*1\r\n+x\r\n$0\r\n\r\n",
        b"_\r\n",
        b",1.5\r\n",
        b"#t\r\n",
        b"(12345678901234567890\r\n",
        b"!3\r\nbad\r\n",
        b"=8\r\ntxt:abcd\r\n",
        b"%1\r\n+k\r\n:1\r\n",
        b"~2\r\n+a\r\n+b\r\n",
        b">2\r\n+invalidate\r\n*1\r\n+k\r\n",
        b"|1\r\n+ttl\r\n:3\r\n+OK\r\n",  # an attribute, then the reply it annotates
    )

    @pytest.mark.parametrize("reply", REPLIES)
    def test_whole_and_every_cut(self, reply: bytes) -> None:
        from remote_cache.testing._resp import reply_end

        assert reply_end(reply + b"+next\r\n") == len(reply)
        for cut in range(1, len(reply)):
            assert reply_end(reply[:cut]) is None, cut

    def test_push(self) -> None:
        from remote_cache.testing._resp import is_push

        assert is_push(b">1\r\n+x\r\n")
        assert not is_push(b"*1\r\n+x\r\n")

    @pytest.mark.parametrize(
        "data", [b"bye", b"$x\r\n", b"*1x", b"$" + b"9" * 20, b"+" + b"x" * 70_000]
    )
    def test_not_a_reply(self, data: bytes) -> None:
        from remote_cache.testing._resp import reply_end

        with pytest.raises(ValueError):  # noqa: PT011 - each names its own problem
            reply_end(data)


@pytest.mark.redis
class TestABusyServerAgrees:
    """A server busy past the deadline (``DEBUG SLEEP``) stores a put it answers too late, as
    ``Latency`` past the deadline does on every layer."""

    def test_a_late_answer_is_a_stored_put(self) -> None:
        import threading

        with RedisServer(config={"enable-debug-command": "yes"}) as server:
            admin = server.client()
            busy = threading.Thread(target=lambda: admin.execute_command("DEBUG", "SLEEP", "1"))
            with redis_environment(server.url, timeout=0.3):
                cache = RemoteFxGraphCache("fx")
                cache.get("warm")  # connected before the server is busy
                busy.start()
                time.sleep(0.1)
                with isolated_cache_stats() as stats:
                    cache.put("k", "v")  # times out; the server does it when it wakes
                    assert stats["RemoteFxGraphCache"].fail_open == 1
                busy.join(timeout=10)
                deadline = time.monotonic() + 5
                while server.client().get("pt2:fx::k:c1") is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                real = server.client().get("pt2:fx::k:c1")
        assert real == b'"v"'
        for layer in ("in-process", "fakeredis"):
            blocks = {"in-process": outage_backends, "fakeredis": fakeredis_backends}
            with VirtualClock(), blocks[layer]() as handle, isolated_cache_stats() as stats:
                handle.apply(Schedule([Fault(Latency(2), on="put")]))
                cache = RemoteFxGraphCache("fx")
                cache.put("k", "v")
                assert stats["RemoteFxGraphCache"].fail_open == 1
                handle.restore()
                assert cache.get("k") == "v", layer


# -- found by attacking the layers from outside ---------------------------------------------


class Errors:
    """A namespace of exception classes, as some projects keep them."""

    class Lost(ConnectionError):
        """A nested exception class."""


def _expiring_layer(
    stack: contextlib.ExitStack,
    layer: str,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    timeout: float,
) -> Any:
    """``layer``'s handle in ``stack``, caches writing with an expiry (one ``SET ... EX`` per
    key of a batch); the proxy in front of ``redis_server`` with a ``timeout`` deadline."""
    from remote_cache.testing import OutageProxy

    if layer == "proxy":
        redis_server.client().flushall()
        proxy = stack.enter_context(OutageProxy.for_url(redis_server.url))
        stack.enter_context(redis_environment(proxy.url, timeout=timeout))
        monkeypatch.setenv("REMOTE_CACHE_REDIS_EXPIRE", "100")  # after: the block clears it
        return proxy
    monkeypatch.setenv("REMOTE_CACHE_REDIS_EXPIRE", "100")
    blocks = {"in-process": outage_backends, "fakeredis": fakeredis_backends}
    return stack.enter_context(blocks[layer]())


class TestFoundByAttack:
    """Each case failed before: a batch with an expiry, faults that both end a call, the
    breaker's cool-down, nested exception classes, a leaked clock."""

    @pytest.mark.redis
    @pytest.mark.parametrize("layer", ["in-process", "fakeredis", "proxy"])
    def test_a_batch_with_an_expiry_is_one_set_per_key(
        self, layer: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        schedule = Schedule([Fault(Reply("OOM"), on="put", when=Nth(2))], seed=0)
        with contextlib.ExitStack() as stack:
            stats = stack.enter_context(isolated_cache_stats())
            handle = _expiring_layer(stack, layer, redis_server, monkeypatch, timeout=0.5)
            handle.apply(schedule)
            cache = RemoteFxGraphCache("fx")
            cache.put_many({"a": 1, "b": 2, "c": 3})  # SET a, SET b (refused), SET c
            cache.put("d", 4)
            found = cache.get_many(["a", "b", "c", "d"])
            stat = stats["RemoteFxGraphCache"]
            counted = (stat.put, stat.fail_open)
        assert found == {"a": 1, "c": 3, "d": 4}
        assert counted == (1, 3)  # the batch failed as a whole, though two of it were stored
        assert [(x.call, x.command, x.keys) for x in schedule.fired] == [
            (2, "SET", ("pt2:fx::b:c1",))
        ]

    @pytest.mark.redis
    @pytest.mark.parametrize("layer", ["in-process", "fakeredis", "proxy"])
    @pytest.mark.parametrize(
        ("does", "direction", "stored"),
        [
            (Reply("OOM"), "both", {"a", "c"}),  # refused alone: the others are stored
            (Refuse(), "both", {"a"}),  # the connection reset there: those after it lost
            (Hang(), "both", {"a"}),  # a stalled server: the same
            (Hang(), "downstream", {"a", "b", "c"}),  # every one done, an answer lost
            (Latency(2), "both", {"a", "b", "c"}),  # every one done, answered too late
        ],
        ids=["reply", "refuse", "hang", "answer-lost", "late"],
    )
    def test_one_key_of_a_pipelined_batch(  # noqa: PLR0917 - the parameters
        self,
        layer: str,
        does: Any,
        direction: str,
        stored: set[str],
        redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        schedule = Schedule([Fault(does, key="pt2:fx::b:c1", direction=direction)], seed=0)
        with contextlib.ExitStack() as stack:
            if layer != "proxy":
                stack.enter_context(VirtualClock())
            handle = _expiring_layer(stack, layer, redis_server, monkeypatch, timeout=0.3)
            handle.apply(schedule)
            cache = RemoteFxGraphCache("fx")
            cache.put_many({"a": 1, "b": 2, "c": 3})
            handle.restore()
            assert set(cache.get_many(["a", "b", "c"])) == stored

    @pytest.mark.parametrize(
        ("faults", "waited"),
        [
            ([Fault(Hang()), Fault(Refuse())], 1.0),  # the first to end the call wins
            ([Fault(Refuse()), Fault(Latency(2))], 0.0),  # refused at once: no wait
            ([Fault(Hang()), Fault(Reply("NOPERM"))], 1.0),
        ],
        ids=["hang-then-refuse", "refuse-then-latency", "hang-then-reply"],
    )
    def test_the_first_fault_to_end_a_call_wins(
        self, faults: list[Fault], waited: float, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("REMOTE_CACHE_REDIS_TIMEOUT", raising=False)
        for block in (outage_backends, fakeredis_backends):
            with VirtualClock() as clock, block() as handle:
                handle.apply(Schedule(faults, seed=0))
                assert RemoteFxGraphCache("fx").get("k") is None
                assert clock.slept == waited, block.__name__

    @pytest.mark.parametrize("block", [outage_backends, fakeredis_backends])
    def test_the_cool_down_is_kept_when_set(
        self, block: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_RETRY_AFTER", "30")
        monkeypatch.delenv("REMOTE_CACHE_REDIS_TIMEOUT", raising=False)
        with VirtualClock() as clock, block() as handle, isolated_cache_stats() as stats:
            RemoteFxGraphCache("fx").put("k", 1)
            handle.apply(Schedule([Fault(Hang())], seed=0))
            for _ in range(3):
                assert RemoteFxGraphCache("fx").get("k") is None
            assert clock.slept == 1.0  # one deadline; then skipped for the cool-down
            handle.restore()
            assert RemoteFxGraphCache("fx").get("k") is None  # still cooling down
            clock.advance(30)
            assert RemoteFxGraphCache("fx").get("k") == 1  # the probe finds it back
            assert stats["RemoteFxGraphCache"].fail_open == 4

    def test_no_cool_down_unless_set(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from remote_cache.testing._fixtures import fixture_retry_after

        monkeypatch.delenv("REMOTE_CACHE_REDIS_RETRY_AFTER", raising=False)
        assert fixture_retry_after() == 0.0
        monkeypatch.setenv("REMOTE_CACHE_REDIS_RETRY_AFTER", "never")
        assert fixture_retry_after() == float("inf")
        with fakeredis_backends():
            import os

            assert os.environ["REMOTE_CACHE_REDIS_RETRY_AFTER"] == "never"  # kept, not 0

    def test_a_cool_down_of_never(self) -> None:
        injector = FaultInjectingBackend(
            InMemoryBackend({"k": b"v"}), retry_after=float("inf"), deadline=1
        )
        injector.apply(Schedule([Fault(Refuse(), when=Nth(1))]))
        with pytest.raises(BackendUnavailableError):
            injector.get("k")
        with pytest.raises(BackendUnavailableError, match="skipped"):
            injector.get("k")  # never again, as upstream

    @pytest.mark.parametrize("retry_after", [-1, float("nan"), True])
    def test_a_bad_cool_down_is_refused(self, retry_after: Any) -> None:
        with pytest.raises(ValueError, match="retry_after"):
            FaultInjectingBackend(InMemoryBackend(), retry_after=retry_after)

    def test_a_command_error_closes_the_breaker(self) -> None:
        injector = FaultInjectingBackend(InMemoryBackend({"k": b"v"}), retry_after=30, deadline=1)
        injector.apply(Schedule([Fault(Reply("OOM"), on="put")]))
        with pytest.raises(BackendCommandError):
            injector.put("k", b"w")
        assert injector.get("k") == b"v"  # the server answered: no cool-down

    def test_a_nested_exception_class_round_trips(self) -> None:
        schedule = Schedule([Fault(Raise(Errors.Lost))], seed=1)
        assert ":Errors.Lost" in schedule.to_json()
        assert Schedule.from_json(schedule.to_json()) == schedule
        assert repr(schedule) == "Schedule([Fault(Raise(Errors.Lost))], seed=1)"

    def test_a_class_inside_a_function_cannot_be_written(self) -> None:
        class Local(Exception):
            pass

        with pytest.raises(ValueError, match="inside a function"):
            Schedule([Fault(Raise(Local))]).to_json()

    def test_a_leaked_clock_fails_the_test_that_leaked_it(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            from remote_cache.testing import VirtualClock

            def test_leaks():
                VirtualClock().install()

            def test_after(remote_cache_clock):
                assert remote_cache_clock.installed
            """
        )
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2, errors=1)
        result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", "*left <VirtualClock*"])
