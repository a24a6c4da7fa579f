"""The attack layer's checker: every call timed, its value and its counters checked.

``Attack`` runs one cache call at a time and checks, for each one, what the issue promises:
the call returns within ``timeout + 0.5 s`` (at once when the breaker skipped it), a get
returns a value that was put under that key (the last acknowledged one, or one whose put
failed after it) or None, and the counters moved by exactly one of the outcomes that
docs/behaviour.md allows for that call. Every call is written to a history, printed with
any failure, so that a failing schedule can be read and replayed.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from remote_cache import CacheStat, cache_stats

TIMEOUT = 0.5
"""Connect and reply timeout of every cache under attack, in seconds."""
BOUND = TIMEOUT + 0.5
"""The promise: no call takes longer than this."""
SKIP_BOUND = TIMEOUT / 2
"""A call the open breaker skipped touches no network: it must not wait for a timeout."""
RETRY_AFTER = 0.1
"""The breaker's cool-down under attack."""
RECOVERY = RETRY_AFTER + BOUND + 2.0
"""After every fault has ended, the cache must work again within this many seconds."""
SETTLE = 3.0
"""How long closed connections, descriptors and threads may take to go away."""

COUNTERS = ("hit", "miss", "put", "exception", "skipped", "corrupt", "fail_open")
BACKEND_COUNTERS = (*COUNTERS, "get_calls", "put_calls")

Delta = dict[str, int]


class InvariantError(AssertionError):
    """An invariant of the attack layer did not hold (the message holds the history)."""


# Every position of the pad differs (numbered), so bytes delivered out of order, twice or
# not at all never read back as the value that was put.
_PAD = "".join(f"{position:07d}," for position in range(0, 4_000_000, 8))


def value_for(key: str, serial: str, size: int) -> dict[str, Any]:
    """A value that says which key and which put it belongs to, ``size`` characters long."""
    return {"key": key, "serial": serial, "pad": _PAD[:size]}


def _delta(before: CacheStat, after: CacheStat, names: Iterable[str]) -> Delta:
    moved = {name: getattr(after, name) - getattr(before, name) for name in names}
    return {name: count for name, count in moved.items() if count}


def _clean(delta: Delta) -> Delta:
    return {name: count for name, count in delta.items() if count}


def _within(actual: Delta, allowed: Delta) -> bool:
    """Whether every counter moved by at least 0 and at most what ``allowed`` says."""
    return all(0 <= count <= allowed.get(name, 0) for name, count in actual.items())


@dataclass
class Model:
    """What each key may read as: its last acknowledged value, or any value whose put failed.

    A failed put may still land later (a black-holed route delivers the request when it
    comes back, a server applies a request whose reply timed out), so its value stays
    allowed, even after a later put or a restart of the server.
    """

    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def put_acked(self, key: str, value: dict[str, Any]) -> None:
        """The server confirmed ``value``: older acknowledged values can no longer be read."""
        self.acked[key] = value

    def put_failed(self, key: str, value: dict[str, Any]) -> None:
        """A put failed: it may or may not have been written, now or later."""
        self.failed.setdefault(key, []).append(value)

    def allowed(self, key: str) -> list[dict[str, Any]]:
        """The values other than None a get of ``key`` may return now."""
        acked = [self.acked[key]] if key in self.acked else []
        return acked + self.failed.get(key, [])

    def lost(self) -> None:
        """The server lost its data (killed without persistence): acknowledged values are gone."""
        self.acked.clear()


class SharedModel:
    """Keys written by several threads: a read returns a value someone put there, or None."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: dict[str, list[dict[str, Any]]] = {}

    def will_put(self, key: str, value: dict[str, Any]) -> None:
        """Record ``value`` before its put starts (another thread may read it at once)."""
        with self._lock:
            self._written.setdefault(key, []).append(value)

    def allowed(self, key: str) -> list[dict[str, Any]]:
        """Every value ever put under ``key``."""
        with self._lock:
            return list(self._written.get(key, []))


class Attack:
    """Run calls on one cache and check each one; see the module docstring.

    ``strict`` (no transport fault in the schedule): every call must succeed and every get
    return exactly the last value put. Keys starting with ``shared-`` are checked against
    ``shared`` (written by other threads too) instead of this attack's own model.
    """

    failures = 0
    """Invariant failures so far in this process (see ``Baseline``)."""

    def __init__(
        self,
        cache: Any,
        *,
        strict: bool = False,
        shared: SharedModel | None = None,
        label: str = "",
    ) -> None:
        self.cache = cache
        self.cache_name = type(cache).__name__
        self.backend_name = f"backend:{type(cache.backend).__name__}"
        self.strict = strict
        self.shared = shared
        self.label = label
        self.model = Model()
        self.history: list[str] = []
        self.totals: dict[str, Delta] = {"cache": {}, "backend": {}}
        self.calls = 0
        self.last_read: Any = None
        """What the last completed single-key get returned."""
        self.last_found: Any = None
        """What the last completed ``get_many`` returned."""
        self._serial = 0
        self._started = time.monotonic()

    # -- history --------------------------------------------------------------------

    def note(self, text: str) -> None:
        """Add a line (a fault, a kill) to the history."""
        self.history.append(f"{time.monotonic() - self._started:8.3f}s {self.label}{text}")

    def fail(self, text: str) -> InvariantError:
        """An ``InvariantError`` saying ``text``, with the history of this attack."""
        Attack.failures += 1
        lines = "\n".join(self.history[-60:])
        return InvariantError(f"{self.label}{text}\nhistory (last 60 lines):\n{lines}")

    # -- calls ----------------------------------------------------------------------

    def next_value(self, key: str, size: int) -> dict[str, Any]:
        """A new value for ``key`` (serials are unique within the attack)."""
        self._serial += 1
        return value_for(key, f"{self.label}{self._serial}", size)

    def _stats(self) -> tuple[CacheStat, CacheStat]:
        snapshot = cache_stats.snapshot()
        return (
            snapshot.get(self.cache_name) or CacheStat(),
            snapshot.get(self.backend_name) or CacheStat(),
        )

    def _timed(
        self, describe: str, call: Callable[[], Any], interrupt: Callable[[], Any] | None
    ) -> tuple[Any, float, Delta, Delta, bool]:
        before = self._stats()
        interrupted = False
        started = time.monotonic()
        result: Any = None
        try:
            result = interrupt() if interrupt is not None else call()
        except KeyboardInterrupt:
            interrupted = True
        except Exception as exc:
            seconds = time.monotonic() - started
            self.note(f"{describe} -> raised {type(exc).__name__}: {exc} in {seconds:.3f}s")
            raise self.fail(f"{describe} raised {type(exc).__name__}: {exc}") from exc
        seconds = time.monotonic() - started
        after = self._stats()
        cache_delta = _delta(before[0], after[0], COUNTERS)
        backend_delta = _delta(before[1], after[1], BACKEND_COUNTERS)
        self.calls += 1
        for name, delta in (("cache", cache_delta), ("backend", backend_delta)):
            total = self.totals[name]
            for counter, count in delta.items():
                total[counter] = total.get(counter, 0) + count
        return result, seconds, cache_delta, backend_delta, interrupted

    def _outcome(
        self,
        describe: str,
        *,
        seconds: float,
        actual: tuple[Delta, Delta],
        ok: tuple[Delta, Delta],
        failed: tuple[Delta, Delta],
        interrupted: bool,
        result: Any,
    ) -> str:
        """Which outcome the counters show ("ok", "exception", "skipped", "interrupted")."""
        skipped = (failed[0], {"skipped": 1})
        exception = (failed[0], {"exception": 1})
        outcomes = {"ok": ok, "exception": exception, "skipped": skipped}
        found = next((name for name, each in outcomes.items() if each == actual), None)
        self.note(
            f"{describe} -> {_show(result)} in {seconds * 1000:.1f} ms, "
            f"counted {actual[0]} / backend {actual[1]}" + (" (interrupted)" if interrupted else "")
        )
        if interrupted:
            if found is None and not any(
                _within(actual[0], each[0]) and _within(actual[1], each[1])
                for each in outcomes.values()
            ):
                raise self.fail(f"{describe}: interrupted, but counted {actual}")
            return "interrupted"
        if seconds > BOUND:
            raise self.fail(f"{describe} took {seconds:.3f}s, over the bound of {BOUND}s")
        if found is None:
            raise self.fail(
                f"{describe}: counters moved by {actual}, which is none of the outcomes "
                f"allowed: {outcomes}"
            )
        # Puts encode their values first (megabytes take a while); a skipped get does nothing.
        if found == "skipped" and describe.startswith("get") and seconds > SKIP_BOUND:
            raise self.fail(
                f"{describe}: skipped by the open breaker, yet took {seconds:.3f}s "
                f"(over {SKIP_BOUND}s: it waited for the network)"
            )
        if self.strict and found != "ok":
            raise self.fail(f"{describe}: failed ({found}) with no transport fault")
        return found

    def _check_value(self, describe: str, key: str, got: Any) -> None:
        if got is None:
            if self.strict and not key.startswith("shared-") and key in self.model.acked:
                raise self.fail(f"{describe}: a miss, but {key!r} was put and acknowledged")
            return
        if not isinstance(got, dict) or got.get("key") != key:
            raise self.fail(f"{describe}: read {_show(got)}: another key's value, or garbage")
        if key.startswith("shared-") and self.shared is not None:
            allowed = self.shared.allowed(key)
        else:
            allowed = self.model.allowed(key)
            if self.strict:
                allowed = allowed[:1]
        if got not in allowed:
            raise self.fail(
                f"{describe}: read {_show(got)}, neither the last acknowledged value put under "
                f"it nor one whose put failed ({[_show(each) for each in allowed]})"
            )

    def get(self, key: str, *, interrupt: Callable[[Callable[[], Any]], Any] | None = None) -> str:
        """``cache.get(key)``, checked; returns the outcome."""
        describe = f"get {key}"
        call: Callable[[], Any] = lambda: self.cache.get(key)  # noqa: E731
        got, seconds, cache_delta, backend_delta, interrupted = self._timed(
            describe, call, (lambda: interrupt(call)) if interrupt else None
        )
        hit = 0 if got is None else 1
        if interrupted and cache_delta.get("hit"):
            hit = 1  # the interrupt landed once the hit was counted, before the value came back
        ok = (_clean({"hit": hit, "miss": 1 - hit}),
              _clean({"hit": hit, "miss": 1 - hit, "get_calls": 1}))  # fmt: skip
        failed = ({"miss": 1, "fail_open": 1}, {})
        outcome = self._outcome(
            describe,
            seconds=seconds,
            actual=(cache_delta, backend_delta),
            ok=ok,
            failed=failed,
            interrupted=interrupted,
            result=got,
        )
        if outcome != "interrupted":
            self._check_value(describe, key, got)
            self.last_read = got
        return outcome

    def put(
        self, key: str, size: int, *, interrupt: Callable[[Callable[[], Any]], Any] | None = None
    ) -> str:
        """``cache.put(key, new value)``, checked and recorded in the model."""
        value = self.next_value(key, size)
        describe = f"put {key} #{value['serial']} ({size} B)"
        if key.startswith("shared-") and self.shared is not None:
            self.shared.will_put(key, value)
        call: Callable[[], Any] = lambda: self.cache.put(key, value)  # noqa: E731
        _, seconds, cache_delta, backend_delta, interrupted = self._timed(
            describe, call, (lambda: interrupt(call)) if interrupt else None
        )
        ok = ({"put": 1}, {"put": 1, "put_calls": 1})
        failed = ({"fail_open": 1}, {})
        outcome = self._outcome(
            describe,
            seconds=seconds,
            actual=(cache_delta, backend_delta),
            ok=ok,
            failed=failed,
            interrupted=interrupted,
            result=None,
        )
        if outcome == "ok":
            self.model.put_acked(key, value)
        else:
            self.model.put_failed(key, value)
        return outcome

    def get_many(self, keys: list[str]) -> str:
        """``cache.get_many(keys)``, checked key by key."""
        describe = f"get_many {keys}"
        found, seconds, cache_delta, backend_delta, _ = self._timed(
            describe, lambda: self.cache.get_many(keys), None
        )
        if not isinstance(found, dict) or not set(found) <= set(keys):
            raise self.fail(f"{describe}: returned {_show(found)}, not a dict of asked keys")
        hits, count = len(found), len(keys)
        ok = (_clean({"hit": hits, "miss": count - hits}),
              _clean({"hit": hits, "miss": count - hits, "get_calls": 1}))  # fmt: skip
        failed = ({"miss": count, "fail_open": count}, {})
        outcome = self._outcome(
            describe,
            seconds=seconds,
            actual=(cache_delta, backend_delta),
            ok=ok,
            failed=failed,
            interrupted=False,
            result=found,
        )
        for key in keys:
            self._check_value(f"{describe}[{key}]", key, found.get(key))
        self.last_found = found
        return outcome

    def put_many(self, keys: list[str], size: int) -> str:
        """``cache.put_many`` of a new value for each key, checked and recorded."""
        values = {key: self.next_value(key, size) for key in keys}
        serials = [value["serial"] for value in values.values()]
        describe = f"put_many {keys} #{serials} ({size} B each)"
        if self.shared is not None:
            for key, value in values.items():
                if key.startswith("shared-"):
                    self.shared.will_put(key, value)
        _, seconds, cache_delta, backend_delta, _ = self._timed(
            describe, lambda: self.cache.put_many(values), None
        )
        count = len(keys)
        ok = ({"put": count}, {"put": count, "put_calls": 1})
        failed = ({"fail_open": count}, {})
        outcome = self._outcome(
            describe,
            seconds=seconds,
            actual=(cache_delta, backend_delta),
            ok=ok,
            failed=failed,
            interrupted=False,
            result=None,
        )
        for key, value in values.items():
            if outcome == "ok":
                self.model.put_acked(key, value)
            else:
                self.model.put_failed(key, value)
        return outcome

    # -- end of a schedule ----------------------------------------------------------

    def recover(self, limit: float = RECOVERY) -> float:
        """Seconds until a put and a get of a new value both work again (after the faults)."""
        started = time.monotonic()
        while True:
            if (
                self.put("recovery", 16) == "ok"
                and self.get("recovery") == "ok"
                and self.last_read is not None
                and self.last_read == self.model.acked.get("recovery")
            ):
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise self.fail(f"the cache did not work again within {limit:.1f}s of the end")
            time.sleep(0.02)

    def recover_batches(self, keys: list[str], limit: float = RECOVERY) -> float:
        """Seconds until a ``put_many`` of new values for ``keys`` and a ``get_many`` reading
        every one of them back both work again (after the faults)."""
        started = time.monotonic()
        while True:
            if (
                self.put_many(keys, 16) == "ok"
                and self.get_many(keys) == "ok"
                and self.last_found == {key: self.model.acked.get(key) for key in keys}
            ):
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise self.fail(f"batches did not work again within {limit:.1f}s of the end")
            time.sleep(0.02)

    def check_totals(self) -> None:
        """The counters equal the sum of every call's outcome (nothing lost, nothing extra)."""
        cache, backend = self._stats()
        for name, stat, names in (
            ("cache", cache, COUNTERS),
            ("backend", backend, BACKEND_COUNTERS),
        ):
            counted = _delta(CacheStat(), stat, names)
            if counted != self.totals[name]:
                raise self.fail(
                    f"{name} counters {counted} differ from the sum of the calls' outcomes "
                    f"{self.totals[name]}"
                )


def _show(value: Any) -> str:
    """A short description of a returned value (values carry a long pad)."""
    if isinstance(value, dict) and "serial" in value:
        return f"<{value.get('key')} #{value['serial']} {len(str(value.get('pad', '')))} B>"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in value.items()) + "}"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


# -- leaks ---------------------------------------------------------------------------


def open_descriptors() -> int:
    """File descriptors open in this process."""
    return len(os.listdir("/proc/self/fd"))


def describe_descriptors(numbers: Iterable[int]) -> list[str]:
    """What each descriptor is: a file's path, or a socket's two addresses."""
    described = []
    for number in sorted(numbers):
        try:
            target = os.readlink(f"/proc/self/fd/{number}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:"):
            try:
                with socket.socket(fileno=os.dup(number)) as sock:
                    target = f"socket {sock.getsockname()} -> {sock.getpeername()}"
            except OSError as exc:
                target = f"{target} ({exc.strerror})"
        described.append(f"{number}: {target}")
    return described


def descriptor_numbers() -> set[int]:
    """The numbers of the descriptors open in this process."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def os_threads() -> int:
    """Threads of this process, as the kernel counts them (foreign threads included)."""
    return len(os.listdir("/proc/self/task"))


def server_clients(admin: Any, admin_name: str = "attack-admin") -> int:
    """Connections the server has open, other than the admin client's."""
    return sum(1 for client in admin.client_list() if client.get("name") != admin_name)


def settle(measure: Callable[[], int], target: int, limit: float = SETTLE) -> int:
    """Poll ``measure()`` until it is at most ``target`` (or ``limit`` passes); its last value."""
    deadline = time.monotonic() + limit
    while True:
        value = measure()
        if value <= target or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


class Baseline:
    """Descriptors and threads after the first schedule of a test, to compare the others with.

    The first schedule is the warm-up: it opens what stays open for good (admin
    connections, redis-py's lazily built parts). Every later schedule must end with no
    more descriptors or threads than it did, so a leak of even one per schedule shows.
    """

    def __init__(self) -> None:
        self.descriptors: int | None = None
        self.threads: int | None = None
        self.numbers: set[int] = set()
        self.failures = Attack.failures

    def check(self, attack: Attack, *, admin: Any = None) -> None:
        """Nothing leaked: no server connection, descriptor or thread more than after warm-up.

        Call it after ``close_shared_clients()``. The attack lets go of its cache first:
        redis-py's ``RedisCluster.close()`` leaves the startup node's socket open until the
        client object is collected, and a live backend still refers to its client.
        """
        attack.cache = None
        gc.collect()
        if admin is not None:
            left = settle(lambda: server_clients(admin), 0)
            if left:
                raise attack.fail(f"{left} connection(s) left open on the server")
        if self.failures != Attack.failures:
            # Hypothesis keeps a failing example's traceback, whose frames keep its caches
            # (and their sockets) open: after a failure, the next example warms up again.
            self.descriptors = self.threads = None
        if self.descriptors is None or self.threads is None:
            self.failures = Attack.failures
            time.sleep(0.1)  # what the warm-up closed is gone before it is the reference
            self.descriptors, self.threads = open_descriptors(), os_threads()
            self.numbers = descriptor_numbers()
            return
        descriptors = settle(open_descriptors, self.descriptors)
        if descriptors > self.descriptors:
            new = describe_descriptors(descriptor_numbers() - self.numbers)
            raise attack.fail(
                f"{descriptors - self.descriptors} file descriptor(s) leaked "
                f"({self.descriptors} after the first schedule, {descriptors} now): {new}"
            )
        threads = settle(os_threads, self.threads)
        if threads > self.threads:
            raise attack.fail(
                f"{threads - self.threads} thread(s) leaked ({self.threads} after the first "
                f"schedule, {threads} now)"
            )


# -- the calls a schedule makes (its faults are each test's own) ------------------------


@dataclass(frozen=True)
class Put:
    """``cache.put(key, a new value of size characters)``."""

    key: str
    size: int


@dataclass(frozen=True)
class Get:
    """``cache.get(key)``."""

    key: str


@dataclass(frozen=True)
class PutMany:
    """``cache.put_many`` of a new value for each key."""

    keys: tuple[str, ...]
    size: int


@dataclass(frozen=True)
class GetMany:
    """``cache.get_many(keys)``."""

    keys: tuple[str, ...]
