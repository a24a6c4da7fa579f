"""One reset for every process-wide state, and one way to hook os.fork (remote_cache._process)."""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from remote_cache import LocalCacheBackend, RedisRemoteCacheBackend, RemoteFxGraphCache, cache_stats
from remote_cache import _local as local_module
from remote_cache._breaker import breaker_for
from remote_cache._process import at_fork, reset_process_state
from remote_cache.exceptions import BackendUnavailableError
from remote_cache.testing import FaultInjectingBackend, FaultPlan, InMemoryBackend

PACKAGE = Path(__file__).resolve().parent.parent / "remote_cache"


def failing_cache() -> RemoteFxGraphCache:
    """A cache whose every call fails, as a down server's does."""
    down = FaultInjectingBackend(InMemoryBackend(), [FaultPlan(error=BackendUnavailableError)])
    return RemoteFxGraphCache("state", backend=down)


class TestReset:
    def test_counters_go_back_to_zero(self) -> None:
        RemoteFxGraphCache("state", backend=InMemoryBackend()).get("k")
        assert cache_stats["RemoteFxGraphCache"].miss == 1
        reset_process_state()
        assert "RemoteFxGraphCache" not in cache_stats.snapshot()

    def test_counters_kept_when_asked(self) -> None:
        RemoteFxGraphCache("state", backend=InMemoryBackend()).get("k")
        reset_process_state(counters=False)
        assert cache_stats["RemoteFxGraphCache"].miss == 1

    def test_breakers_close(self) -> None:
        breaker = breaker_for(("state-test", 1))
        breaker.record_failure()
        assert not breaker.allow(retry_after=60.0)
        reset_process_state(counters=False)
        assert breaker.allow(retry_after=60.0)

    def test_an_outage_in_progress_is_forgotten(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="remote_cache")
        failing_cache().get("k")
        failing_cache().get("k")
        assert len(caplog.records) == 1  # one line per outage
        reset_process_state(counters=False)
        failing_cache().get("k")
        assert len(caplog.records) == 2  # a new outage warns again

    def test_a_client_factory_is_forgotten(self) -> None:
        RedisRemoteCacheBackend.client_factory = lambda settings: None
        reset_process_state(counters=False)
        assert RedisRemoteCacheBackend.client_factory is None

    def test_sweep_times_are_forgotten(self, tmp_path: Path) -> None:
        LocalCacheBackend(tmp_path).put("k", b"v")
        assert local_module._last_sweep  # the first put sweeps its folder
        reset_process_state(counters=False)
        assert not local_module._last_sweep


class TestAtFork:
    def test_needs_a_handler(self) -> None:
        with pytest.raises(TypeError, match="at least one handler"):
            at_fork()

    def test_handlers_run_around_a_fork(self, tmp_path: Path) -> None:
        seen = tmp_path / "seen"
        marker = tmp_path / "armed"  # handlers stay registered: only this test's fork notes

        def noting(what: str) -> Callable[[], None]:
            def handler() -> None:
                if marker.exists():
                    with seen.open("a", encoding="utf-8") as file:
                        file.write(f"{what} {os.getpid()}\n")

            return handler

        marker.touch()
        at_fork(
            before=noting("before"),
            after_in_parent=noting("parent"),
            after_in_child=noting("child"),
        )
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child leaves at once
                os._exit(0)
            os.waitpid(pid, 0)
        finally:
            marker.unlink()
        lines = seen.read_text(encoding="utf-8").split("\n")[:-1]
        parent = os.getpid()
        assert sorted(line.split()[0] for line in lines) == ["before", "child", "parent"]
        assert f"before {parent}" in lines
        assert f"parent {parent}" in lines
        assert f"child {pid}" in lines


def test_no_other_module_hooks_fork_itself() -> None:
    """``at_fork`` is the one way: no module of ours calls ``os.register_at_fork`` but it."""
    callers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "register_at_fork":
                callers.append(path.relative_to(PACKAGE).as_posix())
    assert callers == ["_process.py"]
