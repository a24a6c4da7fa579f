"""Forks and interrupts at random moments, against a real redis-server.

A process forks while its threads are inside the cache (building clients, connecting to a
dead cluster, counting, snapshotting): the child must finish its own calls within a bound,
with right values. A ``KeyboardInterrupt`` lands in the middle of a call, a probe of the
breaker included: the cache must work again after the cool-down.
"""

from __future__ import annotations

import json
import logging
import os
import random
import select
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_cache import (
    RedisRemoteCache,
    RedisRemoteCacheBackend,
    cache_stats,
    dump_cache_stats,
)
from remote_cache._redis import close_shared_clients
from remote_cache.testing import OutageProxy, RedisServer
from tests.attack._harness import (
    BOUND,
    RETRY_AFTER,
    TIMEOUT,
    Attack,
    Baseline,
)
from tests.attack.conftest import fresh_process_state

pytestmark = [pytest.mark.attack, pytest.mark.redis]

CHILD_BOUND = 4 * BOUND + 2.0
"""A forked child makes four calls: it must be done (and gone) within this many seconds."""


class ForkCache(RedisRemoteCache):
    """The cache the parent's threads and the forked child share."""


ACTIVITIES = ("calls", "snapshot", "new_clients", "dead_cluster", "short_threads")


def background(
    activity: str, server: RedisServer, dead: OutageProxy, stop: threading.Event
) -> None:
    """Use the cache in one way until ``stop``: what a child may be forked in the middle of."""
    index = 0
    while not stop.is_set():
        index += 1
        if activity == "calls":
            cache = ForkCache("fork", backend=_backend(server.url))
            cache.put(f"busy-{index % 5}", {"index": index})
            cache.get(f"busy-{index % 5}")
        elif activity == "snapshot":
            cache_stats.snapshot()
        elif activity == "new_clients":  # a client (and its lock) built over and over
            backend = _backend(server.url, timeout=TIMEOUT + (index % 10) / 1000)
            ForkCache("fork", backend=backend).get("anything")
        elif activity == "dead_cluster":  # a connect that holds whatever it holds for 0.3 s
            backend = RedisRemoteCacheBackend(
                url=dead.url, cluster=True, timeout=TIMEOUT, retry_after=0.0
            )
            ForkCache("fork", backend=backend).get("anything")
        else:  # threads that count once and end (their counters are folded)
            thread = threading.Thread(target=cache_stats.hit, args=("ForkCache",))
            thread.start()
            thread.join()


def _backend(url: str, *, timeout: float = TIMEOUT) -> RedisRemoteCacheBackend:
    return RedisRemoteCacheBackend(url=url, timeout=timeout, retry_after=RETRY_AFTER)


def child(server: RedisServer, write_end: int) -> None:  # pragma: no cover - in the child
    """What the forked child does: calls, a snapshot, the exit dump; its report to the pipe."""
    report: dict[str, Any] = {"calls": []}
    try:
        value = {"pid": os.getpid()}
        for name, call in (
            ("put", lambda: ForkCache("fork", backend=_backend(server.url)).put("child", value)),
            ("get", lambda: ForkCache("fork", backend=_backend(server.url)).get("child")),
            # settings of its own: a client the child must build itself
            ("new", lambda: ForkCache("fork", backend=_backend(server.url, timeout=0.29)).get(
                "child"
            )),
            ("snapshot", lambda: cache_stats.snapshot() and None),
        ):  # fmt: skip
            started = time.monotonic()
            got = call()
            report["calls"].append([name, got, time.monotonic() - started])
        logging.getLogger("remote_cache").setLevel(logging.INFO)
        dump_cache_stats()
        stat = cache_stats["ForkCache"]
        report["stat"] = [stat.put, stat.fail_open]
        report["value"] = value
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)


def wait_for_child(pid: int, read_end: int, limit: float) -> tuple[dict[str, Any] | None, float]:
    """The child's report and how long it took; None when it did not finish in ``limit``."""
    started = time.monotonic()
    chunks: list[bytes] = []
    while time.monotonic() - started < limit:
        ready, _, _ = select.select([read_end], [], [], 0.05)
        if ready:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finished = 0
    while True:  # the pipe closes a moment before the child is gone
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished or time.monotonic() - started > limit:
            break
        time.sleep(0.005)
    seconds = time.monotonic() - started
    if not finished:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None, seconds
    data = b"".join(chunks)
    return (json.loads(data) if data else {"error": "no report"}), seconds


class TestForks:
    """A child forked while the parent's threads use the cache finishes, with right values."""

    # Python 3.12+ warns when a process with threads forks: that is what is attacked here.
    @pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        activities=st.lists(st.sampled_from(ACTIVITIES), min_size=1, max_size=4),
        fork_after=st.lists(st.sampled_from([0.0, 0.001, 0.01, 0.05]), min_size=1, max_size=3),
    )
    def test_schedule(
        self,
        attack_server: RedisServer,
        dead_address: OutageProxy,
        activities: list[str],
        fork_after: list[float],
    ) -> None:
        fresh_process_state()
        attack_server.client().flushall()
        stop = threading.Event()
        threads = [
            threading.Thread(target=background, args=(each, attack_server, dead_address, stop))
            for each in activities
        ]
        for thread in threads:
            thread.start()
        failures: list[str] = []
        try:
            for delay in fork_after:
                time.sleep(delay)
                read_end, write_end = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    os.close(read_end)
                    child(attack_server, write_end)
                os.close(write_end)
                try:
                    report, seconds = wait_for_child(pid, read_end, CHILD_BOUND)
                finally:
                    os.close(read_end)
                if report is None:
                    failures.append(
                        f"a child forked after {delay}s did not finish in {seconds:.1f}s"
                    )
                    continue
                failures += check_child(report, attack_server, pid)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=BOUND + 5)
        assert not failures, f"activities {activities}, forks after {fork_after}:\n" + "\n".join(
            failures
        )


def check_child(report: dict[str, Any], server: RedisServer, pid: int) -> list[str]:
    """What went wrong in one child's report (empty: nothing)."""
    if "error" in report:
        return [f"child {pid} raised {report['error']}"]
    failures = []
    value = report["value"]
    for name, got, seconds in report["calls"]:
        if seconds > BOUND:
            failures.append(f"child {pid}: {name} took {seconds:.3f}s, over {BOUND}s")
        if name in ("get", "new") and got not in (None, value):
            failures.append(f"child {pid}: {name} read {got!r}, not its own {value!r}")
    puts, fail_open = report["stat"]
    if puts + fail_open < 1:
        failures.append(f"child {pid}: its put was counted nowhere ({report['stat']})")
    if puts >= 1:  # acknowledged: the parent reads it (the child's was the last put)
        seen = ForkCache("fork", backend=_backend(server.url)).get("child")
        if seen not in (value, None):
            failures.append(f"the parent read {seen!r} under the child's key, not {value!r}")
    return failures


# -- interrupts ----------------------------------------------------------------------


class Interrupter:
    """Delivers ``KeyboardInterrupt`` into a call after a delay (SIGALRM, main thread)."""

    def __init__(self) -> None:
        self.armed = False
        self.delivered = 0
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.armed:
            self.armed = False
            self.delivered += 1
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupter:
        self._previous = signal.signal(signal.SIGALRM, self._handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)

    def after(self, seconds: float) -> Callable[[Callable[[], Any]], Any]:
        """A runner that calls its argument with an interrupt due ``seconds`` into it."""

        def run(call: Callable[[], Any]) -> Any:
            self.armed = True
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                return call()
            finally:
                self.armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)

        return run


@pytest.fixture
def interrupter() -> Iterator[Interrupter]:
    """An ``Interrupter`` whose SIGALRM handler is installed for the test."""
    assert threading.current_thread() is threading.main_thread()  # signals land there
    with Interrupter() as installed:
        yield installed


interrupt_steps = st.one_of(
    st.tuples(st.just("interrupt_get"), st.sampled_from([0.001, 0.01, 0.05, 0.2])),
    st.tuples(st.just("interrupt_put"), st.sampled_from([0.001, 0.01, 0.05, 0.2])),
    # the breaker opens, cools down, and its probe is the call interrupted
    st.tuples(st.just("interrupt_probe"), st.sampled_from([0.001, 0.01, 0.05, 0.2])),
    st.tuples(
        st.sampled_from(["get", "put", "blackhole", "latency", "restore", "wait"]), st.just(0.0)
    ),
)


class TestInterrupts:
    """After a ``KeyboardInterrupt`` lands anywhere in a call, the cache works again."""

    # redis-py closes a socket whose connect failed only on OSError: one interrupted in
    # connect() is closed when collected (the descriptor check collects, then counts).
    @pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(plan=st.lists(interrupt_steps, min_size=1, max_size=12))
    def test_schedule(  # noqa: PLR0917 - fixtures, then the drawn plan
        self,
        attack_server: RedisServer,
        attack_proxy: OutageProxy,
        attack_admin: Any,
        interrupter: Interrupter,
        leaks: Baseline,
        plan: list[tuple[str, float]],
    ) -> None:
        attack_proxy.restore()
        attack_admin.flushall()
        fresh_process_state()
        backend = RedisRemoteCacheBackend(
            url=attack_proxy.url, timeout=TIMEOUT, retry_after=RETRY_AFTER
        )
        attack = Attack(ForkCache("interrupted", backend=backend))
        try:
            for name, seconds in plan:
                if name == "interrupt_get":
                    attack.get("alpha", interrupt=interrupter.after(seconds))
                elif name == "interrupt_probe":
                    attack.note("FAULT blackhole")
                    attack_proxy.blackhole()
                    attack.get("alpha")
                    time.sleep(RETRY_AFTER)
                    attack.get("alpha", interrupt=interrupter.after(seconds))
                elif name == "interrupt_put":
                    attack.put("alpha", 3_000, interrupt=interrupter.after(seconds))
                elif name == "get":
                    attack.get("alpha")
                elif name == "put":
                    attack.put("alpha", 3_000)
                elif name == "wait":
                    time.sleep(RETRY_AFTER)
                elif name == "latency":
                    attack.note("FAULT latency 0.6")
                    attack_proxy.latency(0.6)
                else:
                    attack.note(f"FAULT {name}")
                    getattr(attack_proxy, name)()
        finally:
            attack_proxy.restore()
        attack.note(f"restored ({interrupter.delivered} interrupt(s) delivered)")
        attack.recover()
        attack.check_totals()
        close_shared_clients()
        leaks.check(attack, admin=attack_admin)


class TestInterruptSweep:
    """Interrupts swept across the first 600 µs of gets, on a link slow enough that a reply
    left unread is still on its way when the next call is sent: a get never returns another
    key's value (redis-py does not disconnect between a command's send and its read)."""

    ROUNDS = 400

    def test_two_keys(
        self,
        attack_server: RedisServer,
        attack_proxy: OutageProxy,
        attack_admin: Any,
        interrupter: Interrupter,
    ) -> None:
        attack_proxy.restore()
        attack_admin.flushall()
        fresh_process_state()
        values = {"A": b"value-of-A", "B": b"value-of-B"}
        attack_admin.mset(values)
        backend = RedisRemoteCacheBackend(url=attack_proxy.url, timeout=2, retry_after=0)
        rng = random.Random(0)
        wrong: list[str] = []
        interrupted = 0
        attack_proxy.latency(0.004)
        try:
            # Aim: how long into a get its reply starts being read, on this machine now.
            center = statistics.median(self.reply_read_after(backend) for _ in range(30))
            for round_ in range(self.ROUNDS):
                first, second = ("A", "B") if round_ % 2 else ("B", "A")
                delay = max(5e-6, center + rng.uniform(-60e-6, 60e-6))
                try:
                    interrupter.after(delay)(lambda k=first: backend.get(k))
                except KeyboardInterrupt:
                    interrupted += 1
                for key in (second, first):
                    got = backend.get(key)
                    if got != values[key]:
                        wrong.append(f"round {round_}: get({key!r}) -> {got!r}")
        finally:
            attack_proxy.restore()
            close_shared_clients()
        assert not wrong, "\n".join(wrong[:10])
        assert interrupted > self.ROUNDS // 4  # the sweep did land inside calls

    @staticmethod
    def reply_read_after(backend: RedisRemoteCacheBackend) -> float:
        """Seconds from the start of a get to the moment redis-py starts reading its reply."""
        client = backend.client()
        marks: list[float] = []

        def parse_response(*args: Any, **kwargs: Any) -> Any:
            marks.append(time.perf_counter())
            return type(client).parse_response(client, *args, **kwargs)

        client.parse_response = parse_response
        try:
            started = time.perf_counter()
            backend.get("A")
        finally:
            del client.parse_response
        return marks[0] - started
