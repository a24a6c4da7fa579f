"""Forked children record, read and dump stats whatever the parent's threads were doing."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

import remote_cache._stats as stats_module
from remote_cache import cache_stats, dump_cache_stats

CHILDREN = 20
CHILD_SECONDS = 10.0  # a child needs milliseconds; a deadlocked one would never answer


@pytest.fixture
def hammering() -> Iterator[None]:
    """Threads that take the stats lock all the time: snapshots, and new threads' first counts."""
    stop = threading.Event()

    def snapshots() -> None:
        while not stop.is_set():
            cache_stats.snapshot()

    def short_lived_threads() -> None:
        while not stop.is_set():
            thread = threading.Thread(target=cache_stats.hit, args=("hammer",))
            thread.start()
            thread.join()

    def records() -> None:
        while not stop.is_set():
            cache_stats.miss("hammer")

    workers = [
        threading.Thread(target=target, daemon=True)
        for target in (snapshots, snapshots, short_lived_threads, records)
    ]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def run_child(work: Callable[[], dict[str, object]]) -> dict[str, object] | None:
    """Fork a child that runs ``work`` and reports its result; None when it did not answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        readable, _, _ = select.select([read_end], [], [], CHILD_SECONDS)
        if not readable:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        with os.fdopen(read_end, closefd=False) as pipe:
            text = pipe.read()
        assert os.waitpid(pid, 0)[1] == 0
        return json.loads(text)  # type: ignore[no-any-return]
    finally:
        os.close(read_end)


def child_work() -> dict[str, object]:
    """What a child does: count, read twice, and run the exit dump."""
    cache_stats.hit("child", 3)
    first = cache_stats.snapshot()
    dump_cache_stats()
    second = cache_stats.snapshot()
    return {
        "child": first["child"].hit,
        "stable": first == second,
        "shards": cache_stats._shard_count(),
    }


# Python 3.12+ warns when a process with threads forks; the children here only count,
# read and exit, which is what the test is about.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
class TestForkWhileThreadsRecord:
    """A child forked while other threads hold the stats lock can always count and exit."""

    @pytest.mark.usefixtures("hammering")
    def test_children_count_read_and_dump(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="remote_cache")
        reports = [run_child(child_work) for _ in range(CHILDREN)]
        hung = sum(report is None for report in reports)
        assert hung == 0, f"{hung} of {CHILDREN} children never answered"
        for report in reports:
            assert report == {"child": 3, "stable": True, "shards": 1}
        # The parent is untouched: it still records and reads.
        cache_stats.hit("parent")
        assert cache_stats["parent"].hit == 1
        assert cache_stats["child"].hit == 0

    def test_lock_held_for_good_by_another_thread(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The fork waits a bounded time for the lock; the child gets a free one anyway."""
        monkeypatch.setattr(stats_module, "_FORK_WAIT_SECONDS", 0.2)
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with cache_stats._lock:
                holding.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert holding.wait(timeout=10)
            report = run_child(child_work)
        finally:
            release.set()
            holder.join()
        assert report == {"child": 3, "stable": True, "shards": 1}
        cache_stats.hit("parent")
        assert cache_stats["parent"].hit == 1

    def test_children_that_exit_normally_run_the_exit_dump(self, pytester: pytest.Pytester) -> None:
        script = pytester.makepyfile(
            f"""
            import logging, os, select, signal, sys, threading
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            from remote_cache import cache_stats

            stop = threading.Event()
            def snapshots():
                while not stop.is_set():
                    cache_stats.snapshot()
            def short_lived_threads():
                while not stop.is_set():
                    thread = threading.Thread(target=cache_stats.hit, args=("hammer",))
                    thread.start()
                    thread.join()
            workers = [threading.Thread(target=t, daemon=True)
                       for t in (snapshots, snapshots, short_lived_threads)]
            for worker in workers:
                worker.start()
            hung = finished = 0
            for _ in range({CHILDREN}):
                read_end, write_end = os.pipe()
                pid = os.fork()
                if pid == 0:  # exits through sys.exit: atexit runs dump_cache_stats
                    os.close(read_end)
                    cache_stats.hit("child")
                    sys.exit(0)
                os.close(write_end)
                # the pipe closes when the child is gone, whatever it did
                if select.select([read_end], [], [], {CHILD_SECONDS})[0]:
                    finished += os.waitpid(pid, 0)[1] == 0
                else:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    hung += 1
                os.close(read_end)
            stop.set()
            for worker in workers:
                worker.join()
            print(f"finished={{finished}} hung={{hung}}")
            """
        )
        result = pytester.run(sys.executable, script, timeout=CHILDREN * CHILD_SECONDS + 60)
        assert result.ret == 0
        assert f"finished={CHILDREN} hung=0" in result.stdout.lines
        dumped = [line for line in result.stderr.lines if line.startswith("  child: ")]
        assert dumped == ["  child: {hit: 1, miss: 0, put: 0, exception: 0}"] * CHILDREN
