"""Every call the conformance suite makes to a backend is bounded: a call that never returns
fails its check, named, within the deadline, whichever check (deterministic, Hypothesis or
the cache state machine) made it; someone else's alarm is kept."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from remote_cache.testing._call_deadline import CallOverdue, bounded
from remote_cache.testing.conformance import (
    BackendConformance,
    call_deadline,
    check_backend,
    check_model,
)
from remote_cache.testing.stateful import run_cache_machine
from tests.testing import defects


def _timed_failure(run: Any) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(AssertionError) as caught:
        run()
    return str(caught.value), time.monotonic() - started


class NonAsciiHangs(defects.DictBackend):
    """Any call on a non-ASCII key waits forever: found by the properties, not by a fixed key."""

    def _put(self, key: str, data: bytes) -> None:
        if not key.isascii():
            defects.HangsOnOneKey.never.wait()
        super()._put(key, data)


class TestAHungCallFailsItsCheck:
    def test_in_the_key_families(self) -> None:
        message, took = _timed_failure(
            lambda: check_backend(defects.HangsOnOneKey, call_deadline=0.3)
        )
        assert message.startswith("HangsOnOneKey: check_keys: "), message
        assert "get('k\\x00') did not return within 0.3 s" in message
        assert "\n  replay:   check_keys" in message
        assert took < 5

    def test_a_deadlock_in_a_batch(self) -> None:
        message, took = _timed_failure(
            lambda: check_backend(defects.DeadlocksInPutMany, call_deadline=0.3)
        )
        assert message.startswith("DeadlocksInPutMany: check_contract: put_many("), message
        assert "a lock never released" in message
        assert took < 5

    def test_under_hypothesis_without_shrinking(self) -> None:
        with call_deadline(0.3):
            message, took = _timed_failure(
                lambda: check_model(NonAsciiHangs, examples=300, random_seed=0)
            )
        assert message.startswith("NonAsciiHangs: put"), message  # put or put_many
        assert "did not return within 0.3 s" in message
        assert "random_seed=0" in message
        assert took < 5  # one wait, not one per shrinking step

    def test_in_the_cache_machine(self) -> None:
        with call_deadline(0.3):
            message, took = _timed_failure(
                lambda: run_cache_machine(NonAsciiHangs, examples=100, random_seed=0)
            )
        assert "did not return within 0.3 s" in message, message
        assert "run_cache_machine(make_backend, random_seed=0)" in message
        assert took < 10

    def test_the_pytest_class_has_the_setting(self) -> None:
        class TestHanging(BackendConformance):
            call_deadline = 0.3

            def make_backend(self) -> Any:
                return defects.HangsOnOneKey()

        message, took = _timed_failure(TestHanging().test_keys)
        assert "did not return within 0.3 s" in message
        assert took < 5

    def test_a_deadlock_between_worker_threads(self) -> None:
        from remote_cache.testing.conformance import check_concurrency

        with call_deadline(0.2):
            message, took = _timed_failure(
                lambda: check_concurrency(defects.LocksInOppositeOrders, random_seed=0)
            )
        assert message.startswith("LocksInOppositeOrders: check_concurrency: "), message
        assert "threads did not finish within 2.4 s" in message
        assert "opposite orders" in message
        assert took < 10

    def test_a_mistake(self) -> None:
        with pytest.raises(ValueError, match="call_deadline"), call_deadline(0):
            pass


@pytest.fixture
def other_alarm() -> Iterator[list[int]]:
    """An alarm of someone else's (pytest-timeout's, say): its firings are counted."""
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class TestSomeoneElsesAlarm:
    def test_a_sooner_one_is_left_alone(self, other_alarm: list[int]) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with call_deadline(10), bounded("a call"):
            time.sleep(0.15)
        assert other_alarm == [signal.SIGALRM]  # it fired, as it would have

    def test_a_later_one_is_put_back(self, other_alarm: list[int]) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0.4)
        with call_deadline(0.2), bounded("a call"):
            time.sleep(0.05)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0.2 < left < 0.4  # what was left of it, less the call's time
        time.sleep(left + 0.1)
        assert other_alarm == [signal.SIGALRM]

    def test_ours_fires_first_then_theirs(self, other_alarm: list[int]) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(CallOverdue), call_deadline(0.1), bounded("a call"):
            time.sleep(5)
        assert other_alarm == []
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0  # theirs still pending
