"""Signal handlers that call the cache at random moments of the main thread's own calls.

A ``SIGALRM`` handler makes get, put, get_many and put_many calls, landing anywhere in a
loop of cache calls of the main thread (inside the breaker, the outage log, the counters,
redis-py) against a real server that is up, refuses connections, or never answers. Nothing
may wait for the frame it interrupted: the example ends within its bound; every value read
is one put under its key; the counters equal what the calls' outcomes say, exactly.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_cache import RedisRemoteCacheBackend, RemoteFxGraphCache, cache_stats
from remote_cache.testing import OutageProxy, RedisServer
from tests.attack._harness import BOUND, TIMEOUT
from tests.attack.conftest import fresh_process_state

pytestmark = [pytest.mark.attack, pytest.mark.redis]

RETRY_AFTER = 0.5
"""A cool-down longer than the harness's: a black hole costs one timeout per probe."""
KEYS = ("alpha", "beta")
OPERATIONS = ("get", "put", "get_many", "put_many")


@dataclasses.dataclass
class Outcome:
    """One call: its operation, how many keys, whether it failed open, how many it found."""

    operation: str
    keys: int
    failed: bool
    found: int


@dataclasses.dataclass
class Sample:
    """The sample of one call: ``_swallowed`` sets ``fail_reason`` when it fails open."""

    fail_reason: str | None = None


class SignalCache(RemoteFxGraphCache):
    """Records every call's outcome, from the main thread or a handler nested in its calls.

    Samples are kept in a stack: a handler's call nested in a main call pushes and pops its
    own above the main call's, so each call finds its sample at the depth it started at.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_samples: list[Sample] = []
        self.outcomes: list[Outcome] = []

    def _create_sample(self) -> Any:
        sample = Sample()
        self.open_samples.append(sample)
        return sample

    def _log_sample(self, sample: Any) -> None:
        """Nothing here: ``_track`` reads the sample once the call has returned."""

    def _track(self, operation: str, keys: int, call: Callable[[], Any]) -> Any:
        depth = len(self.open_samples)
        result = call()
        sample = self.open_samples.pop(depth)
        if operation == "get":
            found = 0 if result is None else 1
        else:
            found = len(result) if operation == "get_many" else 0
        self.outcomes.append(Outcome(operation, keys, sample.fail_reason is not None, found))
        return result

    def get(self, key: str) -> Any:
        """``get``, its outcome recorded."""
        return self._track("get", 1, lambda: super(SignalCache, self).get(key))

    def put(self, key: str, value: Any) -> None:
        """``put``, its outcome recorded."""
        self._track("put", 1, lambda: super(SignalCache, self).put(key, value))

    def get_many(self, keys: Any) -> dict[str, Any]:
        """``get_many``, its outcome recorded."""
        wanted = list(keys)
        found: dict[str, Any] = self._track(
            "get_many", len(wanted), lambda: super(SignalCache, self).get_many(wanted)
        )
        return found

    def put_many(self, mapping: Any) -> None:
        """``put_many``, its outcome recorded."""
        self._track("put_many", len(mapping), lambda: super(SignalCache, self).put_many(mapping))


class Caller:
    """Makes calls (from the main thread or a handler) and checks every value read."""

    def __init__(self, cache: SignalCache) -> None:
        self.cache = cache
        self.written: dict[str, list[dict[str, Any]]] = {key: [] for key in KEYS}
        self.errors: list[str] = []
        self.serial = 0
        self.run = time.monotonic_ns()  # values of earlier examples never pass as this one's

    def value(self, key: str) -> dict[str, Any]:
        """A new value for ``key``, allowed from now on (a put may land whatever it returns)."""
        self.serial += 1
        value = {"key": key, "serial": f"{self.run}-{self.serial}"}
        self.written[key].append(value)
        return value

    def check(self, key: str, got: Any) -> None:
        """A read returns None or a value put under ``key``."""
        if got is not None and got not in self.written[key]:
            self.errors.append(f"read {got!r} under {key!r}: never put there")

    def call(self, operation: str, index: int) -> None:
        """Make one call of ``operation``; its outcome lands in ``cache.outcomes``."""
        key = KEYS[index % 2]
        if operation == "get":
            self.check(key, self.cache.get(key))
        elif operation == "put":
            self.cache.put(key, self.value(key))
        elif operation == "get_many":
            found = self.cache.get_many(list(KEYS))
            for each in KEYS:
                self.check(each, found.get(each))
        else:
            self.cache.put_many({each: self.value(each) for each in KEYS})


class Alarms:
    """Delivers the drawn handler calls, one SIGALRM each, the next armed by the previous."""

    def __init__(self, caller: Caller, plan: list[tuple[str, float]]) -> None:
        self.caller = caller
        self.plan = list(plan)
        self.landed = 0
        self.inside = False

    def handler(self, signum: int, frame: object) -> None:
        """Make the next drawn call, then arm the alarm for the one after."""
        if self.inside or self.landed >= len(self.plan):
            return
        self.inside = True
        try:
            operation, _ = self.plan[self.landed]
            self.caller.call(operation, self.landed)
        except BaseException as exc:  # reported as a broken invariant
            self.caller.errors.append(f"handler {type(exc).__name__}: {exc}")
        finally:
            self.landed += 1
            self.inside = False
            self.arm()

    def arm(self) -> None:
        """Set the timer for the next drawn call, if any."""
        if self.landed < len(self.plan):
            signal.setitimer(signal.ITIMER_REAL, self.plan[self.landed][1])

    @property
    def done(self) -> bool:
        """Whether every drawn call was made."""
        return self.landed >= len(self.plan)


@pytest.fixture
def alarm_handler() -> Iterator[Callable[[Alarms], None]]:
    """Install an ``Alarms`` as the SIGALRM handler; always disarmed and restored after."""
    previous = signal.getsignal(signal.SIGALRM)

    def install(alarms: Alarms) -> None:
        signal.signal(signal.SIGALRM, alarms.handler)

    yield install
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def expected_counters(outcomes: list[Outcome]) -> dict[str, int]:
    """The cache counters that the calls' outcomes add up to."""
    counts = dict.fromkeys(("hit", "miss", "put", "exception", "fail_open"), 0)
    for outcome in outcomes:
        if outcome.failed:
            counts["fail_open"] += outcome.keys
            if outcome.operation.startswith("get"):
                counts["miss"] += outcome.keys
        elif outcome.operation.startswith("get"):
            counts["hit"] += outcome.found
            counts["miss"] += outcome.keys - outcome.found
        else:
            counts["put"] += outcome.keys
    return counts


step = st.tuples(st.sampled_from(OPERATIONS), st.floats(0.0002, 0.02))


class TestSignalHandlers:
    """A handler's calls never wait for the frame they interrupted; values and counts hold."""

    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        state=st.sampled_from(["up", "refused", "blackhole"]),
        plan=st.lists(step, min_size=1, max_size=6),
        main=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=4),
    )
    def test_schedule(  # noqa: PLR0917 - fixtures, then the drawn plan
        self,
        attack_server: RedisServer,
        attack_proxy: OutageProxy,
        attack_admin: Any,
        alarm_handler: Callable[[Alarms], None],
        state: str,
        plan: list[tuple[str, float]],
        main: list[str],
    ) -> None:
        attack_proxy.restore()
        attack_admin.flushall()
        fresh_process_state()
        backend = RedisRemoteCacheBackend(
            url=attack_proxy.url, timeout=TIMEOUT, retry_after=RETRY_AFTER
        )
        # A cache id of its own: a put an earlier example sent into the black hole may still
        # reach the server after this example's FLUSHALL, as a timed-out write can for real.
        cache = SignalCache(f"signals-{time.monotonic_ns()}", backend=backend)
        caller = Caller(cache)
        alarms = Alarms(caller, plan)
        alarm_handler(alarms)
        # The client is built before any signal: a handler landing while the main thread
        # builds it waits for the build lock (bounded by the timeout) and fails.
        caller.call("get", 0)
        if state == "refused":
            attack_proxy.cut()
        elif state == "blackhole":
            attack_proxy.blackhole()
        calls = 0
        started = time.monotonic()
        # Bounded: at most one timeout per cool-down (the breaker skips the rest), per caller.
        limit = (len(plan) + 2) * BOUND + 2.0
        try:
            alarms.arm()
            while time.monotonic() - started < limit and not (alarms.done and calls >= len(main)):
                caller.call(main[calls % len(main)], calls)
                calls += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            attack_proxy.restore()
        seconds = time.monotonic() - started
        history = f"state={state} plan={plan} main={main}: {calls} main calls in {seconds:.3f}s"
        assert alarms.done, f"{alarms.landed} of {len(plan)} handler calls made; {history}"
        assert caller.errors == [], history
        assert seconds < limit + BOUND, history
        assert len(cache.outcomes) == 1 + calls + len(plan), history
        stat = cache_stats["SignalCache"]
        counted = {name: getattr(stat, name) for name in expected_counters([])}
        assert counted == expected_counters(cache.outcomes), history
        if state == "up":
            assert not any(outcome.failed for outcome in cache.outcomes), history
