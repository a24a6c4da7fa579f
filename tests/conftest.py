"""Shared fixtures of our own suite: a clean process state per test, and real servers."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from remote_cache import RemoteCache
from remote_cache._process import reset_process_state
from remote_cache.testing._redis_server import RedisServer

UNMEASURED = (
    # Properties and schedules repeated hundreds of times: the measured tests reach the same
    # lines, and under a tracer these would cost as much again (make test: under 8 minutes).
    "tests/test_profiles.py::",
    "tests/test_serde_properties.py::",
    "tests/attack/",
    "tests/testing/test_stateful.py::TestDifferential::",
    "tests/testing/test_stateful.py::TestPlantedDefects::test_serde_dropping_non_ascii",
    "tests/testing/test_stateful.py::TestPlantedDefects::test_backend_dropping_empty_values",
    "tests/testing/test_proxy_stress.py::",
    "tests/testing/test_faults.py::TestLanguage::",
    "tests/testing/test_faults.py::TestEveryLayerAgrees::",
    "tests/testing/test_faults.py::TestTheProxyAgrees::",
    "tests/testing/test_outages.py::TestCatalogue::test_the_layers_agree",
    # The suite on more backends: the in-memory run measures the suite itself, and each
    # backend's own tests measure the backend.
    "tests/testing/test_conformance.py::TestRedisOverFakeredisConforms::",
    "tests/testing/test_conformance.py::TestLocalConforms::",
    "tests/testing/test_conformance.py::TestRealRedisConforms::",
    "tests/test_redis_cluster.py::TestConformanceOnTheCluster::",
    # The same failing check run twice, to compare the reports.
    "tests/testing/test_cli.py::TestCheckEmbedded::test_property_failure_is_reported_and_repeatable",
)
"""Tests whose body coverage does not measure (their fixtures it does): pytest_runtest_call."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of ``UNMEASURED``."""
    for item in items:
        if item.nodeid.startswith(UNMEASURED):
            item.add_marker(pytest.mark.unmeasured)


def _running_coverage() -> Any:
    """The coverage.py measurement of this process, or None when there is none."""
    try:
        import coverage
    except ImportError:
        return None
    return coverage.Coverage.current()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run a test marked ``unmeasured`` with coverage paused (it resumes after, even on failure)."""
    measuring = _running_coverage() if item.get_closest_marker("unmeasured") else None
    if measuring is not None:
        measuring.stop()
    try:
        return (yield)
    finally:
        if measuring is not None:
            measuring.start()


def _overrides() -> dict[type[RemoteCache[Any]], object]:
    """Each cache class defined so far, and the ``backend_override_cls`` in its own body."""
    from remote_cache.testing._override import all_cache_classes

    return {cls: vars(cls).get("backend_override_cls", _MISSING) for cls in all_cache_classes()}


_MISSING = object()


@pytest.fixture
def no_leaked_overrides() -> Iterator[None]:
    """Fail the test that leaves a backend override behind (it would change later tests).

    Set up before ``monkeypatch`` (see ``clean_process_state``), so that it ends after
    ``monkeypatch`` has undone what it set.
    """
    before = _overrides()
    yield
    leaked = [
        cls
        for cls, value in before.items()
        if vars(cls).get("backend_override_cls", _MISSING) is not value
    ]
    for cls in leaked:  # put back, so that one leak fails one test, not every later one
        if before[cls] is _MISSING:
            delattr(cls, "backend_override_cls")
        else:
            setattr(cls, "backend_override_cls", before[cls])  # noqa: B010 - any class
    assert not leaked, f"the test left backend overrides on {[c.__name__ for c in leaked]}"


@pytest.fixture(autouse=True)
def clean_process_state(
    no_leaked_overrides: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Each test starts with no counters, closed breakers and no REMOTE_CACHE_* settings.

    Under coverage (make test), a process the test starts is measured only when the test is
    marked ``measured_children``: measuring a child costs as much again as running it, and most
    children run code the suite also runs in-process (coverage.py starts in a child only when
    ``COVERAGE_PROCESS_CONFIG`` is set).
    """
    import os

    if request.node.get_closest_marker("measured_children") is None:
        monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)

    for name in list(os.environ):
        if name.startswith(("REMOTE_CACHE_", "TORCHINDUCTOR_REDIS")):
            monkeypatch.delenv(name)
    reset_process_state()
    yield
    reset_process_state(counters=False)


@pytest.fixture
def caplog_rc(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog capturing the ``remote_cache`` logger at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="remote_cache")
    return caplog


@pytest.fixture(scope="session")
def redis_server_session() -> Iterator[RedisServer]:
    """One real redis-server for the session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> RedisServer:
    """The session's server, emptied before each test (we started it, so flushing is ours)."""
    if not redis_server_session.running:
        redis_server_session.start()
    redis_server_session.client().flushall()
    return redis_server_session


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A server of the test's own, which it may kill and restart."""
    with RedisServer() as server:
        yield server


class BlackHole:
    """A loopback listener that completes TCP handshakes and never reads nor answers."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port: int = self.socket.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.socket.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except OSError:
                continue
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self.socket.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    """A server that accepts connections and never answers."""
    hole = BlackHole()
    yield hole
    hole.close()
