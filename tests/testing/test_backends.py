"""The harness's backends and context managers, used without pytest's fixtures."""

from __future__ import annotations

import pytest

from remote_cache import (
    BackendTimeoutError,
    BackendUnavailableError,
    RemoteCache,
    RemoteCachePassthroughSerde,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache.testing import (
    FailingBackend,
    FaultInjectingBackend,
    FaultPlan,
    InMemoryBackend,
    NoopBackend,
    RecordingBackend,
    isolated_cache_stats,
    override_backends,
)


class PassCache(RemoteCache[object]):
    pass


class TestSimpleBackends:
    """Noop forgets, Failing raises what it is told, InMemory shares its store."""

    def test_noop(self) -> None:
        backend = NoopBackend()
        backend.put("k", b"v")
        assert backend.get("k") is None

    @pytest.mark.parametrize(
        ("error", "raised"),
        [
            (AssertionError("testget"), AssertionError),
            (KeyError, KeyError),
            (lambda op, key: OSError(f"{op}:{key}"), OSError),
        ],
    )
    def test_failing_side_effects(self, error: object, raised: type[BaseException]) -> None:
        backend = FailingBackend(error)  # type: ignore[arg-type]
        with pytest.raises(raised):
            backend.get("k")
        with pytest.raises(raised):
            backend.put("k", b"v")

    def test_failing_default_is_an_outage(self) -> None:
        with pytest.raises(ConnectionError):
            FailingBackend().get("k")
        backend = FailingBackend(get_error=KeyError, put_error=ValueError)
        with pytest.raises(KeyError):
            backend.get("k")
        with pytest.raises(ValueError, match="simulated"):
            backend.put("k", 1)
        with pytest.raises(TypeError, match="Expected an exception"):
            FailingBackend(3).get("k")  # type: ignore[arg-type]

    def test_memory_shared_store(self) -> None:
        store: dict[str, object] = {}
        first, second = InMemoryBackend(store), InMemoryBackend(store)
        first.put_many({"a": b"", "b": 0})
        assert second.get_many(["a", "b", "c"]) == {"a": b"", "b": 0}
        assert "2 entries" in repr(second)
        second.clear()
        assert first.entries == {}


class TestRecording:
    """Every call is recorded with its outcome."""

    def test_calls(self) -> None:
        backend = RecordingBackend(FaultInjectingBackend(InMemoryBackend()))
        backend.put("k", b"v")
        backend.get("k")
        backend.put_many({"a": b"1"})
        backend.get_many(["a", "z"])
        backend.inner.down()  # type: ignore[attr-defined]
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
        assert backend.ops() == ["put", "get", "put_many", "get_many", "get"]
        assert backend.calls[1].result == b"v"
        assert backend.calls[2].data == {"a": b"1"}
        assert backend.calls[3].key == ("a", "z")
        assert isinstance(backend.calls[4].error, BackendUnavailableError)
        assert all(call.duration >= 0 for call in backend.calls)


class TestFaultPlans:
    """Each trigger fires when documented; bad plans are refused."""

    def run(self, plan: FaultPlan, calls: int = 10) -> list[int]:
        backend = FaultInjectingBackend(InMemoryBackend(), [plan])
        failed = []
        for n in range(1, calls + 1):
            try:
                backend.get("k")
            except ConnectionError:
                failed.append(n)
        assert backend.injected == len(failed)
        return failed

    def test_triggers(self) -> None:
        assert self.run(FaultPlan()) == list(range(1, 11))
        assert self.run(FaultPlan(nth=3)) == [3]
        assert self.run(FaultPlan(every=4)) == [4, 8]
        assert self.run(FaultPlan(window=(2, 5))) == [2, 3, 4]
        assert self.run(FaultPlan(probability=0.0)) == []
        first = self.run(FaultPlan(probability=0.5, seed=7), 50)
        assert first == self.run(FaultPlan(probability=0.5, seed=7), 50)
        assert 0 < len(first) < 50

    def test_operations_filter_and_latency(self) -> None:
        slept: list[float] = []
        backend = FaultInjectingBackend(InMemoryBackend(), sleep=slept.append)
        backend.fail_always(operations="put")
        backend.add_latency(0.25, operations=["get"])
        assert backend.get("k") is None
        with pytest.raises(ConnectionError):
            backend.put("k", b"v")
        assert slept == [0.25]
        assert backend.injected_by_operation["put"] == 1
        backend.clear()
        backend.put("k", b"v")

    def test_shorthands(self) -> None:
        backend = FaultInjectingBackend(InMemoryBackend())
        backend.fail_nth(2)
        backend.fail_every(5, error=KeyError)
        backend.fail_window(7, 8)
        backend.fail_randomly(0.0)
        outcomes = []
        for _ in range(8):
            try:
                backend.get("k")
                outcomes.append("ok")
            except ConnectionError:
                outcomes.append("down")
            except KeyError:
                outcomes.append("key")
        assert outcomes == ["ok", "down", "ok", "ok", "key", "ok", "down", "ok"]

    def test_down_keeps_data_and_custom_error(self) -> None:
        inner = InMemoryBackend()
        backend = FaultInjectingBackend(inner)
        backend.put("k", b"v")
        backend.down(TimeoutError)
        with pytest.raises(TimeoutError):
            backend.get_many(["k"])
        backend.up()
        assert backend.get_many(["k"]) == {"k": b"v"}
        with pytest.raises(TypeError):
            backend.add("plan")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "options",
        [
            {"nth": 1, "every": 2},
            {"nth": 0},
            {"every": 0},
            {"probability": 1.5},
            {"window": (3, 2)},
            {"latency": -1.0},
            {"operations": frozenset({"delete"})},
        ],
    )
    def test_bad_plans(self, options: dict[str, object]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            FaultPlan(**options)  # type: ignore[arg-type]


class TestOverride:
    """override_backends restores exactly, nested or not, also on errors."""

    def test_nested_and_exact(self) -> None:
        outer, inner = InMemoryBackend(), InMemoryBackend()

        class Own(PassCache):
            backend_override_cls = staticmethod(NoopBackend)

        with override_backends(lambda: outer):
            assert RemoteFxGraphCache("x").backend is outer
            assert Own(None, RemoteCachePassthroughSerde()).backend is outer  # type: ignore[arg-type]
            with override_backends(lambda: inner, [RemoteFxGraphCache]):
                assert RemoteFxGraphCache("x").backend is inner
                assert PassCache(None, RemoteCachePassthroughSerde()).backend is outer  # type: ignore[arg-type]
            assert RemoteFxGraphCache("x").backend is outer
        assert RemoteCache.backend_override_cls is None
        assert "backend_override_cls" not in vars(RemoteFxGraphCache)
        assert isinstance(Own(None, RemoteCachePassthroughSerde()).backend, NoopBackend)  # type: ignore[arg-type]

    def test_restored_on_error(self) -> None:
        with pytest.raises(RuntimeError), override_backends(NoopBackend):
            raise RuntimeError
        assert RemoteCache.backend_override_cls is None

    def test_bad_arguments(self) -> None:
        with pytest.raises(TypeError), override_backends(3):  # type: ignore[arg-type]
            pass
        with pytest.raises(TypeError), override_backends(NoopBackend, [int]):  # type: ignore[list-item]
            pass

    def test_isolated_stats(self) -> None:
        cache_stats.hit("outer")
        with isolated_cache_stats() as stats:
            assert stats.snapshot() == {}
            cache_stats.hit("inner")
        assert cache_stats["outer"].hit == 1
        assert cache_stats["inner"].hit == 0


class TestDeadline:
    """A call slowed past the deadline ends as a real client's would: at it, as a timeout."""

    def injector(self, deadline: float | None) -> tuple[FaultInjectingBackend, list[float]]:
        slept: list[float] = []
        inner = InMemoryBackend()
        inner.put("k", b"v")
        return FaultInjectingBackend(inner, sleep=slept.append, deadline=deadline), slept

    def test_past_the_deadline_a_timeout_at_the_deadline(self) -> None:
        backend, slept = self.injector(0.5)
        backend.add_latency(1.5)
        with pytest.raises(BackendTimeoutError, match=r"no answer within 0\.5 s"):
            backend.get("k")
        assert slept == [0.5]
        assert backend.injected == 1
        assert isinstance(backend.last_error, TimeoutError)

    def test_within_the_deadline_the_answer_late(self) -> None:
        backend, slept = self.injector(0.5)
        backend.add_latency(0.4)
        assert backend.get("k") == b"v"
        assert slept == [0.4]
        assert backend.injected == 0

    def test_latencies_add_up_against_it(self) -> None:
        backend, slept = self.injector(0.5)
        backend.add_latency(0.3)
        backend.add_latency(0.3, operations=["put"])
        assert backend.get("k") == b"v"
        with pytest.raises(BackendTimeoutError):
            backend.put("k", b"w")
        assert slept == [0.3, 0.5]
        # A slow answer, not a lost request: the server stored it, the client gave up first.
        assert backend.inner.get("k") == b"w"

    def test_no_deadline_no_limit(self) -> None:
        backend, slept = self.injector(None)
        backend.add_latency(30.0)
        assert backend.get("k") == b"v"
        assert slept == [30.0]

    @pytest.mark.parametrize("deadline", [0, -1.0])
    def test_a_deadline_must_be_positive(self, deadline: float) -> None:
        with pytest.raises(ValueError, match="deadline above 0"):
            FaultInjectingBackend(InMemoryBackend(), deadline=deadline)
