"""A signal handler that calls the cache while its thread is inside one of our locks.

Each test runs in a child process with a time limit, so that a deadlock fails the test
instead of hanging the suite. The signal is real (``SIGALRM``, handled in the main
thread); where the moment matters, a hook that runs inside the locked region raises it, so
the handler lands there every time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 20.0
"""Seconds a child may take; a child still running then is deadlocked."""

PREAMBLE = """
import json, signal, socket, sys, time
from remote_cache import RedisRemoteCache, RedisRemoteCacheBackend, cache_stats
from remote_cache._caches import JsonCache
from remote_cache._breaker import CircuitBreaker
from remote_cache.testing import FaultInjectingBackend, FaultPlan, InMemoryBackend

report = {"handled": 0, "errors": []}
inside = False

def on_alarm(handler_call):
    def handler(signum, frame):
        global inside
        if inside:  # a signal landing in the handler itself: not what is tested
            return
        inside = True
        try:
            report["handled"] += 1
            handler_call()
        except BaseException as exc:
            report["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            inside = False
    signal.signal(signal.SIGALRM, handler)

def once(action):
    state = {"left": 1}
    def hook():
        if state["left"]:
            state["left"] -= 1
            action()
    return hook

alarm = lambda: signal.raise_signal(signal.SIGALRM)

def dead_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"redis://127.0.0.1:{port}"

def stat(name):
    s = cache_stats[name]
    return {f: getattr(s, f) for f in ("hit", "miss", "put", "exception", "skipped", "fail_open")}
"""


def run_child(body: str) -> dict[str, Any]:
    """Run ``body`` after the preamble in a new interpreter; its ``report``, printed as JSON."""
    code = PREAMBLE + textwrap.dedent(body) + "\nprint(json.dumps(report))\n"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,  # the package of this tree
            capture_output=True,
            text=True,
            timeout=LIMIT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child did not finish within {LIMIT} s: deadlocked")
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


class TestBreaker:
    """A call re-entering the breaker's lock is skipped at once and counted; reports are kept."""

    def test_put_from_a_handler_inside_record_failure_and_admit(self) -> None:
        report = run_child(
            """
            fire = {"left": 2}
            def clock():  # called inside the breaker's lock, by record_failure and admit
                if fire["left"]:
                    fire["left"] -= 1
                    alarm()
                return time.monotonic()
            breaker = CircuitBreaker(clock)
            backend = RedisRemoteCacheBackend(
                url=dead_url(), timeout=0.3, retry_after=0.0, breaker=breaker
            )
            cache = RedisRemoteCache("sig", backend=backend)
            on_alarm(lambda: cache.put("from-handler", {"v": 1}))
            for _ in range(3):
                assert cache.get("k") is None
            report["reentered"] = breaker.reentered
            report["failures"] = breaker.failures
            report["cache"] = stat("RedisRemoteCache")
            report["backend"] = stat("backend:RedisRemoteCacheBackend")
            """
        )
        assert report["handled"] == 2
        assert report["errors"] == []
        # The first put lands in the first get's record_failure, before the breaker is open:
        # it goes to the server, fails, and its report, refused, is applied when the get
        # leaves the lock (4 failures). The second lands in the second get's admit: skipped.
        assert report["reentered"] == 2
        assert report["failures"] == 4
        assert report["cache"] == {
            "hit": 0, "miss": 3, "put": 0, "exception": 0, "skipped": 0, "fail_open": 5,
        }  # fmt: skip
        assert report["backend"] == {
            "hit": 0, "miss": 0, "put": 0, "exception": 4, "skipped": 1, "fail_open": 0,
        }  # fmt: skip

    def test_report_from_a_handler_is_applied_when_the_frame_leaves(self) -> None:
        report = run_child(
            """
            armed = []
            def clock():  # called inside admit's lock once armed
                if armed and armed.pop():
                    alarm()
                return time.monotonic()
            breaker = CircuitBreaker(clock)
            breaker.record_failure()
            admitted = []
            on_alarm(lambda: admitted.append(breaker.record_success()))
            armed.append(True)
            report["probe"] = breaker.admit(0.0)
            report["deferred_return"] = admitted
            report["open_after"] = breaker.is_open
            """
        )
        assert report["handled"] == 1
        assert report["errors"] == []
        assert report["probe"] == 1
        assert report["deferred_return"] == [False]  # not applied yet when it returned...
        assert report["open_after"] is False  # ...but applied when admit left the lock

    def test_signal_storm_while_getting_from_a_dead_server(self) -> None:
        """The issue's case: SIGALRM every 2 ms, its handler puts, the main thread gets."""
        report = run_child(
            """
            backend = RedisRemoteCacheBackend(url=dead_url(), timeout=0.3, retry_after=0.0)
            cache = RedisRemoteCache("sig", backend=backend)
            on_alarm(lambda: cache.put("from-handler", {"v": 1}))
            signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
            started, gets = time.monotonic(), 0
            while time.monotonic() - started < 1.0:
                assert cache.get("k") is None
                gets += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
            report["gets"] = gets
            report["cache"] = stat("RedisRemoteCache")
            """
        )
        assert report["handled"] > 10
        assert report["errors"] == []
        cache = report["cache"]
        assert cache["miss"] == report["gets"]
        assert cache["fail_open"] == report["gets"] + report["handled"]


class TestOutageLog:
    """A failure noted by a handler while this thread notes one is logged, not waited for."""

    def test_handler_fails_while_the_outage_log_is_held(self) -> None:
        report = run_child(
            """
            import logging
            from remote_cache import _controller
            records = []
            class Keep(logging.Handler):
                def emit(self, record):
                    records.append(record.getMessage())
            logging.getLogger("remote_cache").addHandler(Keep())
            class Failing(dict):
                hook = staticmethod(once(alarm))
                def get(self, key, default=None):  # called with the outage log's lock held
                    self.hook()
                    return super().get(key, default)
            _controller._failing = Failing()
            down = FaultInjectingBackend(InMemoryBackend())
            down.down()
            class Graphs(JsonCache): pass
            class Autograd(JsonCache): pass
            graphs, autograd = Graphs(down), Autograd(down)
            on_alarm(lambda: autograd.put("k", 1))
            graphs.get("k")
            report["records"] = records
            failing = _controller._failing
            report["failing"] = {name: sorted(kinds) for name, kinds in failing.items()}
            """
        )
        assert report["handled"] == 1
        assert report["errors"] == []
        assert report["failing"] == {"Graphs": ["get"], "Autograd": ["put"]}
        assert len(report["records"]) == 2
        assert report["records"][0].startswith("Graphs: backend failed on get")
        assert report["records"][1].startswith("Autograd: backend failed on put")


class TestStats:
    """Counting from a handler never waits; a read re-entering a read raises at once."""

    def test_first_count_of_a_thread_while_it_reads(self) -> None:
        report = run_child(
            """
            cache = JsonCache(InMemoryBackend())
            cache_stats._fold_ended = once(alarm)  # runs while snapshot() holds the lock
            on_alarm(lambda: cache.put("k", 1))
            report["snapshot"] = sorted(cache_stats.snapshot())
            report["cache"] = stat("JsonCache")
            """
        )
        assert report["handled"] == 1
        assert report["errors"] == []
        assert report["cache"]["put"] == 1

    def test_read_from_a_handler_while_reading(self) -> None:
        report = run_child(
            """
            cache_stats.hit("x")
            cache_stats._fold_ended = once(alarm)
            on_alarm(lambda: cache_stats.snapshot())
            report["hits"] = cache_stats["x"].hit
            report["after"] = cache_stats["x"].hit  # the lock was left free
            """
        )
        assert report["handled"] == 1
        assert report["errors"] == [
            "ReenteredError: cache_stats read from a signal handler (or __del__) that "
            "interrupted a read"
        ]
        assert report["hits"] == report["after"] == 1


class TestFakes:
    """The testing backends, used under signals by users, never wait for their own thread."""

    def test_in_memory_put_many_while_putting(self) -> None:
        report = run_child(
            """
            from collections.abc import Mapping
            backend = InMemoryBackend()
            class Signalling(Mapping):  # read while put_many writes
                def __init__(self): self.data = {"a": b"1"}
                def __getitem__(self, key):
                    alarm()
                    return self.data[key]
                def __iter__(self): return iter(self.data)
                def __len__(self): return 1
            on_alarm(lambda: backend.put_many({"b": b"2"}))
            backend.put_many(Signalling())
            report["entries"] = {k: v.decode() for k, v in backend.entries.items()}
            """
        )
        assert report["handled"] == 1
        assert report["errors"] == []
        assert report["entries"] == {"a": "1", "b": "2"}

    def test_fault_injector_call_while_evaluating_plans(self) -> None:
        report = run_child(
            """
            injector = FaultInjectingBackend(InMemoryBackend())
            class Signalling(FaultPlan):
                def matches(self, operation):
                    alarm()
                    return False
            injector.add(Signalling(nth=1))
            cache = JsonCache(injector)
            got = []
            on_alarm(once(lambda: got.append(cache.get("k"))))
            cache.put("k", 1)
            report["got"] = got
            report["reentered"] = injector.reentered
            report["cache"] = stat("JsonCache")
            report["stored"] = cache.get("k")
            """
        )
        assert report["handled"] >= 1
        assert report["errors"] == []
        assert report["got"] == [None]
        assert report["reentered"] == 1
        assert report["cache"]["fail_open"] == 1
        assert report["stored"] == 1


class TestClientBuild:
    """A handler landing while its thread builds the shared Redis client fails open at once."""

    def test_handler_during_the_build_does_not_wait_for_it(self) -> None:
        report = run_child(
            """
            from remote_cache._redis import clients as _redis
            real_build = _redis.build_client
            timings = []
            def build(settings):  # runs while this thread holds the build lock
                started = time.monotonic()
                alarm()
                timings.append(time.monotonic() - started)
                return real_build(settings)
            _redis.build_client = build
            backend = RedisRemoteCacheBackend(url=dead_url(), timeout=2.0, retry_after=30.0)
            cache = RedisRemoteCache("sig", backend=backend)
            on_alarm(lambda: report.setdefault("inner", cache.get("from-handler")))
            assert cache.get("k") is None  # the outer call: refused by the dead server
            report["waited"] = timings[0]
            report["backend"] = stat("backend:RedisRemoteCacheBackend")
            report["breaker_open"] = backend.breaker.is_open
            """
        )
        assert report["handled"] == 1
        assert report["errors"] == []
        assert report["inner"] is None  # a miss, failed open
        assert report["waited"] < 0.5, "the handler waited for the frame it interrupted"
        # Both calls failed: the inner one on our own build lock, the outer on the server.
        assert report["backend"]["exception"] == 2
        assert report["breaker_open"]  # opened by the dead server, not by the re-entry


class TestFakeredis:
    """The harness's fakeredis servers refuse a handler of the thread inside them at once."""

    def test_handler_while_the_main_thread_is_inside_fakeredis(self) -> None:
        report = run_child(
            """
            import fakeredis
            from remote_cache.testing._fakeredis import ReentryRefusingLock, new_fake_server

            fire = {"left": 3}
            class AlarmInside(ReentryRefusingLock):
                def acquire(self, blocking=True, timeout=-1):
                    got = super().acquire(blocking, timeout)
                    if got and fire["left"] and not inside:
                        fire["left"] -= 1
                        alarm()  # the handler runs while this thread holds the lock
                    return got

            server = new_fake_server()
            server.lock = AlarmInside()
            backend = RedisRemoteCacheBackend(
                client=fakeredis.FakeRedis(server=server), retry_after=30
            )
            cache = RedisRemoteCache("sig", backend=backend)
            inner = []
            on_alarm(lambda: inner.append(cache.get("k")))
            started = time.monotonic()
            cache.put("k", {"v": 1})
            for _ in range(3):
                assert cache.get("k") == {"v": 1}
            report["seconds"] = time.monotonic() - started
            report["inner"] = inner
            report["breaker_open"] = backend.breaker.is_open
            report["cache"] = stat("RedisRemoteCache")
            """
        )
        assert report["handled"] == 3
        assert report["errors"] == []
        assert report["inner"] == [None, None, None]  # failed open, at once
        assert report["seconds"] < 5
        assert not report["breaker_open"]
        assert report["cache"]["hit"] == 3
        assert report["cache"]["miss"] == 3
