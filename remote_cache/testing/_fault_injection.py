"""``FaultInjectingBackend``: wraps a backend and fails or slows its calls by ``FaultPlan``s
and a ``Schedule``'s faults, behind a breaker as the Redis backend's calls are.

Over 400 lines on purpose: its call paths (a get, a put, their batches, and a batch with an
expiry met key by key) each apply plans, a schedule and the breaker in the same order, and
are read side by side; the faults' words and matching are in ``faults``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from remote_cache import (
    BackendTimeoutError,
    BackendUnavailableError,
    RemoteCacheBackend,
    _clock,
)
from remote_cache._breaker import CircuitBreaker
from remote_cache._guard import Guard, ReenteredError
from remote_cache.exceptions import CircuitOpenError
from remote_cache.testing._fault_terms import CALL_COMMANDS
from remote_cache.testing._side_effects import (
    OPERATIONS,
    SideEffect,
    _make_error,
    _simulated_outage,
)
from remote_cache.testing.faults import (
    Corrupt,
    DropPut,
    Fault,
    Hang,
    Latency,
    Raise,
    Refuse,
    Reply,
    Schedule,
    Stale,
    Truncate,
)

__all__ = ["FaultInjectingBackend", "FaultPlan"]


@dataclasses.dataclass
class FaultPlan:
    """When a ``FaultInjectingBackend`` fails (or slows) a call.

    Exactly one trigger applies: ``nth`` (the n-th matching call, 1-based), ``every`` (every
    k-th matching call), ``probability`` (with ``seed`` for a repeatable sequence),
    ``window`` (matching calls numbered ``start <= n < stop``), or none of them: always.
    ``operations`` limits the plan to some of ``"get"``, ``"put"``, ``"get_many"``,
    ``"put_many"`` (None: all). ``latency`` seconds are added to each triggered call;
    ``error`` (a ``SideEffect``) is raised by it, unless ``latency`` is given without one.
    """

    nth: int | None = None
    every: int | None = None
    probability: float | None = None
    window: tuple[int, int] | None = None
    seed: int | None = None
    operations: frozenset[str] | None = None
    latency: float = 0.0
    error: SideEffect | None = None
    calls: int = dataclasses.field(default=0, init=False)
    triggered: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        triggers = [self.nth, self.every, self.probability, self.window]
        if sum(trigger is not None for trigger in triggers) > 1:
            raise ValueError("a FaultPlan takes at most one of nth, every, probability, window")
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"Expected nth >= 1 but got nth={self.nth!r}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"Expected every >= 1 but got every={self.every!r}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(
                f"Expected 0 <= probability <= 1 but got probability={self.probability!r}"
            )
        if self.window is not None and not 1 <= self.window[0] <= self.window[1]:
            raise ValueError(f"Expected 1 <= start <= stop but got window={self.window!r}")
        if self.latency < 0:
            raise ValueError(f"Expected latency >= 0 but got latency={self.latency!r}")
        if self.operations is not None:
            self.operations = frozenset(self.operations)
            unknown = self.operations - set(OPERATIONS)
            if unknown:
                raise ValueError(
                    f"unknown operations {sorted(unknown)}; expected some of {OPERATIONS}"
                )
        if self.error is None and self.latency == 0:
            self.error = _simulated_outage
        self._random = random.Random(self.seed)

    def matches(self, operation: str) -> bool:
        """Whether this plan looks at calls of ``operation``."""
        return self.operations is None or operation in self.operations

    def fires(self) -> bool:
        """Count one matching call; return whether the plan triggers on it."""
        self.calls += 1
        n = self.calls
        if self.nth is not None:
            fired = n == self.nth
        elif self.every is not None:
            fired = n % self.every == 0
        elif self.probability is not None:
            fired = self._random.random() < self.probability
        elif self.window is not None:
            fired = self.window[0] <= n < self.window[1]
        else:
            fired = True
        if fired:
            self.triggered += 1
        return fired


class FaultInjectingBackend(RemoteCacheBackend[Any]):
    """Wraps ``inner`` and fails or slows calls by ``FaultPlan``s, or all of them while down.

    ``down()`` makes every call raise a ``BackendUnavailableError`` (a ``ConnectionError``)
    until ``up()``; nothing stored in ``inner`` is lost. ``add(plan)`` and the shorthands
    (``fail_nth``, ``fail_every``, ``fail_randomly``, ``fail_window``, ``fail_always``,
    ``add_latency``) add plans at any time; ``clear()`` removes them. A failed call never
    reaches ``inner``. ``injected`` counts the failures raised, per operation in
    ``injected_by_operation``; ``last_error`` is the latest one. Thread-safe. A call made
    by a signal handler (or a ``__del__``) while this thread is evaluating the plans never
    waits for it: it raises a ``BackendUnavailableError`` at once, counted in ``reentered``,
    not in the plans nor in ``injected``.

    Latency is waited with ``sleep``: by default the process's clock's, so that under an
    installed ``VirtualClock`` a slowed call advances the clock at once instead of waiting.
    """

    def __init__(
        self,
        inner: RemoteCacheBackend[Any],
        plans: Iterable[FaultPlan] = (),
        *,
        sleep: Callable[[float], None] = _clock.sleep,
        deadline: float | None = None,
        schedule: Schedule | None = None,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__()
        if deadline is not None and not deadline > 0:
            raise ValueError(f"Expected a deadline above 0 seconds but got deadline={deadline!r}")
        self.deadline = deadline
        """Seconds a call may take, as a real server's client allows (None: no limit). A call
        delayed past it ends at the deadline with a ``BackendTimeoutError``, as it would."""
        self.inner = inner
        self.plans: list[FaultPlan] = list(plans)
        self.is_down = False
        self.down_error: SideEffect = _simulated_outage
        self.injected_by_operation: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self.last_error: BaseException | None = None
        self._sleep = sleep
        self._lock = Guard()
        if isinstance(retry_after, bool) or not (
            isinstance(retry_after, int | float) and 0 <= retry_after <= math.inf
        ):
            raise ValueError(f"Expected 0 <= retry_after <= inf seconds but got {retry_after!r}")
        self.retry_after = retry_after
        """The cool-down of the Redis backend's circuit breaker, kept here: after a failure
        that looks like a lost server, calls are skipped that long, then one probes (0: no
        cool-down, every call goes through; ``math.inf``: never again, upstream's way)."""
        self._breaker = CircuitBreaker() if retry_after > 0 else None
        self.schedule: Schedule | None = None
        """The ``Schedule`` applied (``apply``), whose ``fired`` logs every fault that fired."""
        self._previous: dict[str, Any] = {}  # for Stale: the value each put replaced
        if schedule is not None:
            self.apply(schedule)

    @property
    def reentered(self) -> int:
        """Calls refused because this thread was inside the backend's lock (a signal handler)."""
        return self._lock.refused

    @property
    def injected(self) -> int:
        """Failures raised so far."""
        return sum(self.injected_by_operation.values())

    # -- switches and plans ---------------------------------------------------------------

    def down(self, error: SideEffect | None = None) -> None:
        """Fail every call with ``error`` (a BackendUnavailableError by default) until ``up()``."""
        if error is not None:
            self.down_error = error
        self.is_down = True

    def up(self) -> None:
        """End ``down()``; plans stay."""
        self.is_down = False
        self.down_error = _simulated_outage

    def add(self, plan: FaultPlan) -> FaultPlan:
        """Add ``plan``; return it (its ``calls`` and ``triggered`` count what it saw)."""
        if not isinstance(plan, FaultPlan):
            raise TypeError(f"Expected a FaultPlan but got {plan!r}")
        self._lock.run_or_defer(lambda: self.plans.append(plan))
        return plan

    def clear(self) -> None:
        """Remove every plan and the schedule, and end ``down()``."""
        self._lock.run_or_defer(self.plans.clear)
        self.schedule = None
        self.up()

    def apply(self, schedule: Schedule) -> Schedule:
        """Apply ``schedule`` (from now: its counts, clock and draws start again); returns it.

        Each fault acts as the cache would meet it from a Redis server behind the Redis
        backend: a ``Reply`` as the error that backend raises for it, ``Hang`` and a latency
        past ``deadline`` as a timeout at the deadline. ``ValueError`` for a fault this layer
        cannot simulate (a byte fault of the proxy), or ``Hang`` without a deadline.
        """
        if not isinstance(schedule, Schedule):
            raise TypeError(f"Expected a Schedule but got {schedule!r}")
        schedule.check_layer("in-process")
        if self.deadline is None and any(isinstance(f.does, Hang) for f in schedule.faults):
            raise ValueError(
                "Hang() needs the injector's deadline: FaultInjectingBackend(deadline=...)"
            )
        schedule.start()
        self._previous.clear()
        self.schedule = schedule
        return schedule

    def fail_always(
        self, *, operations: Iterable[str] | None = None, error: SideEffect | None = None
    ) -> FaultPlan:
        """Fail every matching call."""
        return self.add(FaultPlan(operations=_ops(operations), error=error))

    def fail_nth(
        self, n: int, *, operations: Iterable[str] | None = None, error: SideEffect | None = None
    ) -> FaultPlan:
        """Fail the ``n``-th matching call (1-based)."""
        return self.add(FaultPlan(nth=n, operations=_ops(operations), error=error))

    def fail_every(
        self, k: int, *, operations: Iterable[str] | None = None, error: SideEffect | None = None
    ) -> FaultPlan:
        """Fail every ``k``-th matching call."""
        return self.add(FaultPlan(every=k, operations=_ops(operations), error=error))

    def fail_randomly(
        self,
        p: float,
        *,
        seed: int | None = 0,
        operations: Iterable[str] | None = None,
        error: SideEffect | None = None,
    ) -> FaultPlan:
        """Fail each matching call with probability ``p`` (repeatably, for a given ``seed``)."""
        return self.add(
            FaultPlan(probability=p, seed=seed, operations=_ops(operations), error=error)
        )

    def fail_window(
        self,
        start: int,
        stop: int,
        *,
        operations: Iterable[str] | None = None,
        error: SideEffect | None = None,
    ) -> FaultPlan:
        """Fail matching calls numbered ``start`` (1-based) up to, not including, ``stop``."""
        return self.add(FaultPlan(window=(start, stop), operations=_ops(operations), error=error))

    def add_latency(self, seconds: float, *, operations: Iterable[str] | None = None) -> FaultPlan:
        """Delay every matching call by ``seconds``."""
        return self.add(FaultPlan(latency=seconds, operations=_ops(operations)))

    # -- the calls ------------------------------------------------------------------------

    def _before(self, operation: str, key: Any) -> tuple[list[Fault], BaseException | None]:
        """Apply what fires on this call before it reaches ``inner``; return the data faults
        (``Corrupt``, ``Truncate``, ``DropPut``, ``Stale``) left to apply to it, and the
        timeout to raise once it has run (a reply slower than the deadline: the server did
        the work, the client gave up waiting for its answer)."""
        if self.is_down:
            self._inject(self.down_error, operation, key)
        schedule = self.schedule
        data_faults, late = _NO_FAULTS, None
        if schedule is not None:
            try:
                if isinstance(key, str):
                    firing = schedule.decide_key(CALL_COMMANDS[operation], key)
                else:
                    firing = schedule.decide(CALL_COMMANDS[operation], key)
            except ReenteredError:
                raise self._reentered(operation, key) from None
            if firing:
                data_faults, late = self._scheduled(firing, operation, key)
        if self.plans:
            late = self._planned(operation, key) or late
        return data_faults, late

    def _scheduled(
        self, firing: list[tuple[Fault, random.Random]], operation: str, key: Any
    ) -> tuple[list[Fault], BaseException | None]:
        """Apply the faults that fired; return the data faults among them, and a timeout
        to raise after the call. Of several faults that end the call, the first in the
        schedule's order wins; a refused connection waits for nothing."""
        delay, ending, data_faults = _sorted(firing)
        if isinstance(ending, Refuse):
            self._inject(_ending_error(ending), operation, key)
        if isinstance(ending, Hang):
            delay = math.inf
        late = self._wait(delay, operation, key)
        if late is not None and ending is not None:
            self._inject(late, operation, key)  # no answer in time: nothing was done
        if ending is not None:
            self._inject(_ending_error(ending), operation, key)
        return data_faults, late

    def _reentered(self, operation: str, key: Any) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"re-entered: {operation} called while this thread was evaluating the faults",
            backend="simulated", operation=operation, key=key if isinstance(key, str) else None,
        )  # fmt: skip

    def _wait(self, delay: float, operation: str, key: Any) -> BaseException | None:
        """Wait ``delay`` (on ``sleep``); past the deadline, wait that and return the timeout
        the client meets, to raise once the call is done (or at once, when it is not)."""
        if self.deadline is not None and delay > self.deadline:
            self._sleep(self.deadline)  # a real client gives up here, whatever comes later
            return _timed_out(self.deadline, delay, operation, key)
        if delay:
            self._sleep(delay)
        return None

    def _planned(self, operation: str, key: Any) -> BaseException | None:
        if not self._lock.enter():
            raise self._reentered(operation, key)
        try:
            delay, error = self._fire(operation)
        finally:
            self._lock.leave()
        late = self._wait(delay, operation, key)
        if late is not None and (error is not None or math.isinf(delay)):
            self._inject(late, operation, key)  # no answer in time: nothing was done
        if error is not None:
            self._inject(error, operation, key)
        return late

    def _fire(self, operation: str) -> tuple[float, SideEffect | None]:
        """The delay and the error of the plans that fire on this call. Hold the lock."""
        delay, error = 0.0, None
        for plan in self.plans:
            if plan.matches(operation) and plan.fires():
                delay += plan.latency
                if plan.error is not None and error is None:
                    error = plan.error
        return delay, error

    def _inject(self, side_effect: SideEffect, operation: str, key: Any) -> None:
        error = _make_error(side_effect, operation, key)
        self._lock.run_or_defer(lambda: self._count(operation, error))
        raise error

    def _count(self, operation: str, error: BaseException) -> None:
        self.injected_by_operation[operation] += 1
        self.last_error = error

    def _guarded(self, operation: str, key: Any, call: Callable[[], Any]) -> Any:
        """``call()`` behind the breaker, as the Redis backend makes its calls: skipped while
        it is open, opened by a lost server, closed by any answer."""
        breaker = self._breaker
        assert breaker is not None
        probe = breaker.admit(None if math.isinf(self.retry_after) else self.retry_after)
        if probe is None:
            raise CircuitOpenError(
                f"simulated: {operation} skipped, the server failed recently",
                backend="simulated", operation=operation, key=key if isinstance(key, str) else None,
            )  # fmt: skip
        try:
            result = call()
        except BaseException as exc:
            breaker.record_error(exc, probe)
            raise
        breaker.record_success()
        return result

    def _get(self, key: str) -> Any:
        if self._breaker is not None:
            return self._guarded("get", key, lambda: self._get_now(key))
        return self._get_now(key)

    def _put(self, key: str, data: Any) -> None:
        if self._breaker is not None:
            self._guarded("put", key, lambda: self._put_now(key, data))
        else:
            self._put_now(key, data)

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        if self._breaker is not None:
            found: dict[str, Any] = self._guarded(
                "get_many", keys, lambda: self._get_many_now(keys)
            )
            return found
        return self._get_many_now(keys)

    def _put_many(self, mapping: Mapping[str, Any]) -> None:
        if self._breaker is not None:
            self._guarded("put_many", tuple(mapping), lambda: self._put_many_now(mapping))
        else:
            self._put_many_now(mapping)

    def _get_now(self, key: str) -> Any:
        faults, late = self._before("get", key)
        value = self.inner.get(key)
        if late is not None:
            self._inject(late, "get", key)
        return _read(faults, key, value, self._previous) if faults else value

    def _put_now(self, key: str, data: Any) -> None:
        faults, late = self._before("put", key)
        if self._remembers():
            self._previous[key] = self.inner.get(key)
        if not any(isinstance(f.does, DropPut) and _names(f, key) for f in faults):
            self.inner.put(key, data)
        if late is not None:
            self._inject(late, "put", key)  # stored: only its answer came too late

    def _get_many_now(self, keys: list[str]) -> dict[str, Any]:
        faults, late = self._before("get_many", tuple(keys))
        found = self.inner.get_many(keys)
        if late is not None:
            self._inject(late, "get_many", tuple(keys))
        if not faults:
            return found
        read = {key: _read(faults, key, found.get(key), self._previous) for key in keys}
        return {key: value for key, value in read.items() if value is not None}

    def _put_many_now(self, mapping: Mapping[str, Any]) -> None:
        if self.schedule is not None and getattr(self.inner, "expire", None) is not None:
            self._put_each(mapping)
            return
        faults, late = self._before("put_many", tuple(mapping))
        if self._remembers():
            self._previous.update({key: self.inner.get(key) for key in mapping})
        dropped = [f for f in faults if isinstance(f.does, DropPut)]
        kept = {k: v for k, v in mapping.items() if not any(_names(f, k) for f in dropped)}
        if kept:
            self.inner.put_many(kept)
        if late is not None:
            self._inject(late, "put_many", tuple(mapping))

    def _put_each(self, mapping: Mapping[str, Any]) -> None:
        """A batch with an expiry, as the Redis backend sends it: one ``SET ... EX`` per key
        in a pipeline, each met by the schedule on its own. One refused by an error reply
        leaves the others stored (the call fails with the first error); a refused connection
        or a stalled server (``Hang``) loses that one and those after it, and ends the call;
        a late or lost answer leaves every key stored and the call timed out."""
        if self.is_down:
            self._inject(self.down_error, "put_many", tuple(mapping))
        late: BaseException | None = None
        if self.plans:
            late = self._planned("put_many", tuple(mapping))
        schedule = self.schedule
        assert schedule is not None
        stored: dict[str, Any] = {}
        failure: BaseException | None = None
        slowest = 0.0
        for key, value in mapping.items():
            try:
                firing = schedule.decide_key("SET", key)
            except ReenteredError:
                raise self._reentered("put_many", key) from None
            delay, ending, data_faults = _sorted(firing)
            if isinstance(ending, Hang):  # a stalled server: this and those after are lost
                failure = self._timeout_now(key)
                break
            if isinstance(ending, Refuse):  # the connection reset here: the same
                failure = _make_error(_ending_error(ending), "put_many", key)
                break
            if ending is not None:  # refused by an error reply: the others are stored
                failure = failure or _make_error(_ending_error(ending), "put_many", key)
                continue
            slowest = max(slowest, delay)  # pipelined: the replies wait for the slowest
            if not any(isinstance(f.does, DropPut) and _names(f, key) for f in data_faults):
                stored[key] = value
        if self._remembers():
            self._previous.update({key: self.inner.get(key) for key in stored})
        if stored:
            self.inner.put_many(stored)
        if failure is not None:
            self._inject(failure, "put_many", tuple(mapping))
        late = self._wait(slowest, "put_many", tuple(mapping)) or late
        if late is not None:
            self._inject(late, "put_many", tuple(mapping))

    def _timeout_now(self, key: str) -> BaseException:
        """A call that is never answered: the client waits its deadline, then gives up."""
        assert self.deadline is not None  # apply() refuses Hang without one
        self._sleep(self.deadline)
        return _timed_out(self.deadline, math.inf, "put_many", key)

    def _remembers(self) -> bool:
        """Whether the schedule has a ``Stale`` fault, which reads what a put replaced."""
        schedule = self.schedule
        return schedule is not None and any(isinstance(f.does, Stale) for f in schedule.faults)


def _sorted(firing: list[tuple[Fault, random.Random]]) -> tuple[float, Any, list[Fault]]:
    """The latency the faults that fired add, the first that ends the call (or None), and
    the data faults among them."""
    delay, ending, data_faults = 0.0, None, []
    for fault, rng in firing:
        action = fault.does
        if isinstance(action, Latency):
            delay += action.delay(rng)
        elif fault.loses_answer:  # done, and its answer never comes
            delay = math.inf
        elif isinstance(action, Corrupt | Truncate | DropPut | Stale):
            data_faults.append(fault)
        elif ending is None:
            ending = action
    return delay, ending, data_faults


_NO_FAULTS: list[Fault] = []
"""What ``_before`` returns when no data fault fired (never changed)."""


def _names(fault: Fault, key: str) -> bool:
    """Whether a data fault that fired on a call applies to ``key`` (its glob, if any)."""
    return fault.key is None or fnmatch.fnmatchcase(key, fault.key)


def _read(faults: list[Fault], key: str, value: Any, previous: Mapping[str, Any]) -> Any:
    """``value`` read under ``key`` as the data faults that fired make it come back."""
    for fault in faults:
        if not _names(fault, key):
            continue
        if isinstance(fault.does, Stale) and key in previous:
            value = previous[key]
        elif isinstance(fault.does, Corrupt) and value:
            value = _damaged(value)
        elif isinstance(fault.does, Truncate) and value:
            value = value[: len(value) // 2]
    return value


def _damaged(value: Any) -> Any:
    """``value`` with its bytes changed (every bit of the first and last byte flipped)."""
    if not isinstance(value, bytes | bytearray):
        return value
    data = bytearray(value)
    data[0] ^= 0xFF
    data[-1] ^= 0xFF
    return bytes(data)


def _ending_error(action: Any) -> SideEffect:
    """What an action that ends the call raises, as the Redis backend would for it."""
    if isinstance(action, Raise):
        return action.error
    if isinstance(action, Reply):

        def reply(operation: str, key: Any) -> BaseException:
            return action.error_for(operation, key if isinstance(key, str) else None)

        return reply

    def refused(operation: str, key: Any) -> BaseException:  # Refuse, the one action left
        named = key if isinstance(key, str) else None
        return BackendUnavailableError(
            f"simulated: connection refused ({operation})",
            backend="simulated", operation=operation, key=named,
        )  # fmt: skip

    return refused


def _timed_out(deadline: float, delay: float, operation: str, key: Any) -> BackendTimeoutError:
    """The error of a call delayed ``delay`` s past a ``deadline`` of its client."""
    late = "the server never answered" if math.isinf(delay) else f"delayed {delay:g} s"
    return BackendTimeoutError(
        f"simulated: no answer within {deadline:g} s ({operation} {late})",
        backend="simulated", operation=operation, key=key if isinstance(key, str) else None,
    )  # fmt: skip


def _ops(operations: Iterable[str] | None) -> frozenset[str] | None:
    if isinstance(operations, str):
        return frozenset([operations])
    return None if operations is None else frozenset(operations)
