"""``VirtualClock`` and ``remote_cache_clock``: breakers, expiry, latency and sweeps on a
clock the test moves, with no real wait."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from remote_cache import (
    LocalCacheBackend,
    RedisRemoteCacheBackend,
    RemoteFxGraphCache,
    _clock,
    cache_stats,
)
from remote_cache._breaker import CircuitBreaker
from remote_cache.testing import (
    FaultInjectingBackend,
    InMemoryBackend,
    MemoryFixture,
    OutageFixture,
    VirtualClock,
)


class TestVirtualClock:
    """It moves only when told, starts at the system's readings, and installs one at a time."""

    def test_starts_at_the_system_readings_and_stands_still(self) -> None:
        before = (time.monotonic(), time.time())
        clock = VirtualClock()
        after = (time.monotonic(), time.time())
        assert before[0] <= clock.monotonic() <= after[0]
        assert before[1] <= clock.time() <= after[1]
        reading = clock.monotonic()
        time.sleep(0.01)
        assert clock.monotonic() == reading

    def test_advance_and_sleep(self) -> None:
        clock = VirtualClock()
        start = (clock.monotonic(), clock.time())
        clock.advance(30)
        clock.sleep(1.5)
        assert clock.monotonic() == start[0] + 31.5
        assert clock.time() == start[1] + 31.5
        assert (clock.elapsed, clock.slept) == (31.5, 1.5)

    @pytest.mark.parametrize("seconds", [-1, -0.001, math.inf, math.nan])
    def test_refuses_going_back_or_for_ever(self, seconds: float) -> None:
        clock = VirtualClock()
        with pytest.raises(ValueError, match="0 <= seconds < inf"):
            clock.advance(seconds)
        assert clock.elapsed == 0

    @pytest.mark.parametrize("seconds", ["1", None, True])
    def test_refuses_what_is_not_a_number(self, seconds: Any) -> None:
        with pytest.raises(TypeError, match="seconds as a number"):
            VirtualClock().advance(seconds)

    def test_installed_while_in_the_block(self) -> None:
        with VirtualClock() as clock:
            assert clock.installed
            assert _clock.monotonic() == clock.monotonic()
            assert _clock.wall() == clock.time()
            clock.advance(5)
            assert _clock.monotonic() == clock.monotonic()
            assert "installed" in repr(clock)
        assert not clock.installed
        assert "not installed" in repr(clock)
        assert abs(_clock.monotonic() - time.monotonic()) < 1

    def test_uninstalled_when_the_block_raises(self) -> None:
        with pytest.raises(KeyError), VirtualClock() as clock:
            raise KeyError("x")
        assert not clock.installed
        assert _clock.installed() is None

    def test_one_clock_at_a_time(self) -> None:
        with VirtualClock() as first:
            second = VirtualClock()
            with pytest.raises(RuntimeError, match="a clock is installed already"):
                second.install()
            second.uninstall()  # not the installed one: nothing happens
            assert first.installed
            assert first.install() is first  # installing the same one again is harmless

    def test_sleep_on_the_process_clock(self) -> None:
        with VirtualClock() as clock:
            started = time.perf_counter()
            _clock.sleep(3600)
            assert time.perf_counter() - started < 1
        assert clock.slept == 3600


def _fakeredis_backend(retry_after: float) -> tuple[RedisRemoteCacheBackend, Any]:
    server = fakeredis.FakeServer()
    backend = RedisRemoteCacheBackend(
        client=fakeredis.FakeRedis(server=server), retry_after=retry_after
    )
    return backend, server


class TestBreakerCoolDown:
    """An outage, a 30 s cool-down, a probe and the recovery: on the virtual clock, at once."""

    def test_outage_cool_down_probe_recovery(self, remote_cache_clock: VirtualClock) -> None:
        started = time.perf_counter()
        backend, server = _fakeredis_backend(retry_after=30)
        cache = RemoteFxGraphCache("fx", backend=backend)
        cache.put("k", 1)
        server.connected = False
        assert cache.get("k") is None  # the failure that opens the breaker
        server.connected = True  # the server is back, but the cool-down is not over
        remote_cache_clock.advance(29.9)
        assert cache.get("k") is None
        assert cache_stats["RemoteFxGraphCache"].fail_open == 2
        remote_cache_clock.advance(0.1)
        assert cache.get("k") == 1  # the probe: answered, the breaker closes
        assert cache.get("k") == 1
        stats = cache_stats["RemoteFxGraphCache"]
        assert (stats.hit, stats.miss, stats.fail_open) == (2, 2, 2)
        assert cache_stats[f"backend:{type(backend).__name__}"].skipped == 1
        assert time.perf_counter() - started < 5  # no 30 s of real waiting

    def test_a_failed_probe_waits_another_cool_down(self, remote_cache_clock: VirtualClock) -> None:
        breaker = CircuitBreaker()
        breaker.record_failure()
        remote_cache_clock.advance(30)
        probe = breaker.admit(30)
        assert probe
        breaker.record_failure(probe)
        remote_cache_clock.advance(29)
        assert breaker.admit(30) is None
        remote_cache_clock.advance(1)
        assert breaker.admit(30)

    def test_a_lost_probe_is_given_back_after_its_lease(
        self, remote_cache_clock: VirtualClock
    ) -> None:
        breaker = CircuitBreaker(lease=60)
        breaker.record_failure()
        remote_cache_clock.advance(1)
        assert breaker.admit(1) == 1  # a probe that never reports
        remote_cache_clock.advance(59)
        assert breaker.admit(1) is None
        remote_cache_clock.advance(1)
        assert breaker.admit(1) == 2


class TestExpiryOfTheFakes:
    """``REMOTE_CACHE_REDIS_EXPIRE`` expires the in-memory fixtures' entries, as a server does."""

    def test_memory_fixture(
        self,
        monkeypatch: pytest.MonkeyPatch,
        remote_cache_clock: VirtualClock,
    ) -> None:
        from remote_cache.testing import memory_backends

        monkeypatch.setenv("REMOTE_CACHE_REDIS_EXPIRE", "1")
        with memory_backends() as memory:
            cache = RemoteFxGraphCache("fx")
            cache.put("k", 1)
            remote_cache_clock.advance(0.9)
            assert cache.get("k") == 1
            assert memory.entries
            remote_cache_clock.advance(0.4)
            assert cache.get("k") is None
            assert memory.entries == {}
            cache.put("k", 2)  # written again: a second lease
            assert cache.get("k") == 2

    def test_outage_fixture(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from remote_cache.testing import outage_backends

        monkeypatch.setenv("REMOTE_CACHE_REDIS_EXPIRE", "1")
        with VirtualClock() as clock, outage_backends() as outage:
            assert isinstance(outage, OutageFixture)
            cache = RemoteFxGraphCache("fx")
            cache.put("k", 1)
            clock.advance(1)
            assert cache.get("k") is None

    def test_unset_means_no_expiry(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("REMOTE_CACHE_REDIS_EXPIRE", raising=False)
        with VirtualClock() as clock:
            memory = MemoryFixture()
            memory.backend.put("k", b"v")
            clock.advance(10 * 365 * 86400)
            assert memory.backend.get("k") == b"v"

    def test_agrees_with_fakeredis(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The same put and reads, on fakeredis (real time: it reads ``time.time()`` itself)."""
        monkeypatch.setenv("REMOTE_CACHE_REDIS_EXPIRE", "1")
        fake = RedisRemoteCacheBackend(client=fakeredis.FakeRedis(server=fakeredis.FakeServer()))
        memory = MemoryFixture().backend
        for backend in (fake, memory):
            backend.put("k", b"v")
        time.sleep(1.05)
        assert fake.get("k") is None
        assert memory.get("k") is None

    def test_batches_and_renewal(self) -> None:
        with VirtualClock() as clock:
            backend = InMemoryBackend(expire=10)
            backend.put_many({"a": b"1", "b": b"2"})
            clock.advance(6)
            backend.put("a", b"1'")  # renewed: 10 s from now
            clock.advance(5)
            assert backend.get_many(["a", "b"]) == {"a": b"1'"}
            assert backend.entries == {"a": b"1'"}
            assert "expire=10s" in repr(backend)
            clock.advance(5)
            assert backend.get_many(["a", "b"]) == {}

    @pytest.mark.parametrize("expire", [0, -1, True])
    def test_refuses_a_non_positive_expire(self, expire: Any) -> None:
        with pytest.raises(ValueError, match="expire > 0"):
            InMemoryBackend(expire=expire)


class TestInjectedLatency:
    """Latency and deadlines of the fault injector advance the virtual clock instead of waiting."""

    def test_latency_within_the_deadline(self, remote_cache_clock: VirtualClock) -> None:
        injector = FaultInjectingBackend(InMemoryBackend({"k": b"v"}), deadline=5)
        injector.add_latency(3)
        started = time.perf_counter()
        assert injector.get("k") == b"v"
        assert time.perf_counter() - started < 1
        assert remote_cache_clock.slept == 3

    def test_latency_past_the_deadline(self, remote_cache_clock: VirtualClock) -> None:
        from remote_cache import BackendTimeoutError

        injector = FaultInjectingBackend(InMemoryBackend({"k": b"v"}), deadline=5)
        injector.add_latency(3600)
        with pytest.raises(BackendTimeoutError, match="no answer within 5 s"):
            injector.get("k")
        assert remote_cache_clock.slept == 5  # a real client gives up at its deadline

    def test_outage_fixture_slow(self, remote_cache_clock: VirtualClock) -> None:
        from remote_cache.testing import outage_backends

        with outage_backends() as outage:
            cache = RemoteFxGraphCache("fx")
            cache.put("k", 1)
            outage.slow(60)
            assert cache.get("k") is None
        assert remote_cache_clock.slept == 1  # the default deadline, not 60 s


class TestLocalSweeps:
    """LocalCache's sweep interval and temporary-file ages follow the clock."""

    def test_a_stale_temporary_file_is_swept_once_the_clock_says_so(
        self, tmp_path: Path, remote_cache_clock: VirtualClock
    ) -> None:
        from remote_cache._local import _TEMP_PREFIX, STALE_SECONDS, SWEEP_SECONDS

        backend = LocalCacheBackend(tmp_path)
        backend.put("first", b"1")  # the first put sweeps
        left = tmp_path / f"{_TEMP_PREFIX}abandoned"
        left.write_bytes(b"half")
        remote_cache_clock.advance(SWEEP_SECONDS)
        backend.put("second", b"2")  # swept again, but the file is new
        assert left.exists()
        remote_cache_clock.advance(STALE_SECONDS)
        backend.put("third", b"3")  # an hour later: stale, and its writer unknown
        assert not left.exists()


class TestFixture:
    """``remote_cache_clock`` is installed for the test and gone after it."""

    def test_through_pytest(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            from remote_cache import _clock

            def test_one(remote_cache_clock):
                assert _clock.installed() is remote_cache_clock
                remote_cache_clock.advance(30)

            def test_after():
                assert _clock.installed() is None
            """
        )
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
        result.assert_outcomes(passed=2)

    def test_a_full_reset_uninstalls_a_leaked_clock(self) -> None:
        from remote_cache._process import reset_process_state

        clock = VirtualClock().install()
        reset_process_state(counters=False)  # a fixture's reset, inside the test: kept
        assert clock.installed
        reset_process_state()  # between tests: gone
        assert not clock.installed
        assert _clock.installed() is None
