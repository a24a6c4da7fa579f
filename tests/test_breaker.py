"""The circuit breaker: open on failure, one probe after the cool-down, never with None."""

from __future__ import annotations

import threading

from remote_cache._breaker import CircuitBreaker, breaker_for, reset_breakers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestStates:
    """Closed, open, half-open and back."""

    def test_closed_allows(self) -> None:
        breaker = CircuitBreaker()
        assert breaker.allow(30)
        assert not breaker.is_open
        assert breaker.record_success() is False

    def test_open_skips_until_cool_down_then_one_probe(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock)
        assert breaker.record_failure() is True
        assert breaker.record_failure() is False
        assert not breaker.allow(30)
        clock.now += 29.9
        assert not breaker.allow(30)
        clock.now += 0.2
        assert breaker.allow(30)
        assert not breaker.allow(30), "only one probe at a time"
        assert breaker.record_success() is True
        assert breaker.allow(30)
        assert "closed" in repr(breaker)

    def test_failed_probe_reopens(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock)
        breaker.record_failure()
        clock.now += 31
        assert breaker.allow(30)
        breaker.record_failure()
        assert not breaker.allow(30)
        assert "open" in repr(breaker)
        assert breaker.failures == 2

    def test_never_retries_with_none(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock)
        breaker.record_failure()
        clock.now += 10**9
        assert not breaker.allow(None)

    def test_zero_probes_every_call(self) -> None:
        breaker = CircuitBreaker()
        breaker.record_failure()
        assert breaker.allow(0)
        breaker.record_failure()
        assert breaker.allow(0)

    def test_reset(self) -> None:
        breaker = CircuitBreaker()
        breaker.record_failure()
        breaker.reset()
        assert breaker.allow(30)
        assert breaker.failures == 0

    def test_release_probe_lets_the_next_call_probe(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock)
        breaker.record_failure()
        clock.now += 31
        assert breaker.allow(30)
        assert not breaker.allow(30)
        breaker.release_probe()  # the probe was interrupted: neither success nor failure
        assert breaker.is_open
        assert breaker.failures == 1
        assert breaker.allow(30)

    def test_release_probe_when_closed_is_harmless(self) -> None:
        breaker = CircuitBreaker()
        breaker.release_probe()
        assert breaker.allow(30)
        assert not breaker.is_open

    def test_one_probe_among_threads(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock)
        breaker.record_failure()
        clock.now += 60
        allowed: list[bool] = []
        barrier = threading.Barrier(8)

        def probe() -> None:
            barrier.wait()
            allowed.append(breaker.allow(30))

        threads = [threading.Thread(target=probe) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert allowed.count(True) == 1


class TestProbeLease:
    """A probe that never reports loses its slot after a lease; stale reports spare newer probes."""

    def lost_probe(self, clock: Clock, breaker: CircuitBreaker) -> int:
        """Open ``breaker``, wait out a 30 s cool-down and hand out a probe that never reports."""
        breaker.record_failure()
        clock.now += 31
        probe = breaker.admit(30)
        assert probe
        return probe

    def test_unreported_probe_blocks_others_until_its_lease_then_one_probe_goes(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock, lease=5)
        self.lost_probe(clock, breaker)  # its thread died, or an interrupt landed before `try`
        clock.now += 4.9
        assert not breaker.allow(30), "the probe may still be under way"
        clock.now += 0.2
        assert breaker.allow(30), "the probe is lost: the next call probes"
        assert not breaker.allow(30), "and only that one"
        assert breaker.is_open
        assert breaker.record_success() is True
        assert not breaker.is_open

    def test_the_callers_lease_wins_over_the_default(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock, lease=1000)
        breaker.record_failure()
        clock.now += 31
        assert breaker.allow(30, lease=3)
        clock.now += 2.9
        assert not breaker.allow(30, lease=3)
        clock.now += 0.2
        assert breaker.allow(30, lease=3)

    def test_a_lost_probe_then_a_new_cool_down(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock, lease=5)
        first = self.lost_probe(clock, breaker)
        clock.now += 6
        second = breaker.admit(30)
        assert second
        assert second != first
        assert breaker.record_failure(second) is False
        clock.now += 29
        assert not breaker.allow(30), "a failed probe restarts the cool-down"
        clock.now += 2
        assert breaker.allow(30)

    def test_stale_release_does_not_free_a_newer_probe(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock, lease=5)
        stale = self.lost_probe(clock, breaker)
        clock.now += 6
        newer = breaker.admit(30)
        assert newer
        breaker.release_probe(stale)  # the stale probe's interrupt finally unwinds
        assert not breaker.allow(30), "the newer probe still holds the slot"
        breaker.release_probe(newer)
        assert breaker.allow(30)

    def test_interrupted_plain_call_does_not_free_a_probe(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock)
        plain = breaker.admit(30)
        assert plain == 0, "a closed breaker hands out no probe"
        self.lost_probe(clock, breaker)
        breaker.release_probe(plain)  # the call started before the outage is interrupted now
        assert not breaker.allow(30)

    def test_stale_failure_reopens_and_keeps_the_newer_probe(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock, lease=60)
        stale = self.lost_probe(clock, breaker)
        clock.now += 61
        newer = breaker.admit(30)
        assert newer
        assert breaker.record_failure(stale) is False  # the stale probe timed out at last
        assert breaker.failures == 2
        clock.now += 31
        assert not breaker.allow(30), "past the new cool-down, but the newer probe is out"
        assert breaker.record_failure(newer) is False
        assert not breaker.allow(30), "its failure restarts the cool-down"
        clock.now += 31
        assert breaker.allow(30)

    def test_stale_success_closes(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(clock, lease=5)
        self.lost_probe(clock, breaker)
        clock.now += 6
        newer = breaker.admit(30)
        assert newer
        assert breaker.record_success() is True  # the stale probe's server answered
        assert breaker.allow(30)
        breaker.release_probe(newer)
        assert not breaker.is_open
        assert breaker.record_failure(newer) is True, "a late failure reopens a closed breaker"
        clock.now += 31
        assert breaker.allow(30)


class TestRegistry:
    """One breaker per server, process-wide."""

    def test_same_server_same_breaker(self) -> None:
        assert breaker_for(("a", 1)) is breaker_for(("a", 1))
        assert breaker_for(("a", 1)) is not breaker_for(("a", 2))

    def test_distinct_scopes_distinct_breakers(self) -> None:
        assert breaker_for(("a", 1, 0.1)) is not breaker_for(("a", 1, 5.0))

    def test_reset_breakers_closes_all(self) -> None:
        breaker = breaker_for(("reset", 1))
        breaker.record_failure()
        reset_breakers()
        assert not breaker.is_open


class TestRecordError:
    """``record_error``: what a failed call says about the server, in one place."""

    def test_a_lost_server_opens_it(self) -> None:
        from remote_cache import BackendUnavailableError
        from remote_cache._breaker import CircuitBreaker

        breaker = CircuitBreaker()
        assert breaker.record_error(BackendUnavailableError("gone"))
        assert breaker.is_open
        assert not breaker.record_error(BackendUnavailableError("still gone"))  # already open

    def test_an_error_reply_closes_it(self) -> None:
        from remote_cache import BackendCommandError, BackendUnavailableError
        from remote_cache._breaker import CircuitBreaker

        breaker = CircuitBreaker()
        breaker.record_error(BackendUnavailableError("gone"))
        assert not breaker.record_error(BackendCommandError("OOM"))
        assert not breaker.is_open

    def test_anything_else_frees_the_probe(self) -> None:
        from remote_cache import BackendError, BackendUnavailableError
        from remote_cache._breaker import CircuitBreaker

        breaker = CircuitBreaker()
        breaker.record_error(BackendUnavailableError("gone"))
        probe = breaker.admit(0)
        assert probe
        assert not breaker.record_error(BackendError("pool full"), probe)
        assert breaker.is_open  # no verdict
        assert breaker.admit(0) == probe + 1  # the next call probes
        assert not breaker.record_error(KeyboardInterrupt(), probe + 1)
        assert breaker.admit(0) == probe + 2
