"""The set-ups behind the fixtures of real servers, and their handle types: a server of
our own or the user's (``remote_cache_redis``), and a cluster (``remote_cache_redis_cluster``)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from remote_cache.exceptions import MissingDependencyError
from remote_cache.testing._fixtures import redis_environment
from remote_cache.testing._namespace import KeyNamespace, NamespacedClient, unique_key_prefix
from remote_cache.testing._proxy import OutageProxy
from remote_cache.testing._redis_cluster import RedisClusterServer
from remote_cache.testing._redis_server import RedisServer
from remote_cache.testing.faults import Schedule

__all__ = [
    "RedisClusterFixture",
    "RedisFixture",
    "external_redis",
    "own_redis",
]


class RedisFixture:
    """Redis caches talk to a real server: ``url``; ``client`` reads it directly."""

    def __init__(self, url: str, client: Any, server: RedisServer | None) -> None:
        self.url = url
        self.client = client
        """A redis-py client of the server (on an external server: inside the test's namespace)."""
        self.server: RedisServer | None = server
        """The ``RedisServer`` the plugin started, or None with ``--remote-cache-redis-url``."""


def _require_redis(what: str) -> None:
    """Raise ``MissingDependencyError`` naming the extra when redis-py is missing."""
    try:
        import redis  # noqa: F401 - only to say what is missing
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs redis-py, which is not installed: pip install 'remote-cache[redis]' "
            "(or 'remote-cache[testing]')"
        ) from exc


class ServerBaseline:
    """The configuration and ACL of a server we own, to put back after each test."""

    def __init__(self, server: RedisServer) -> None:
        client = server.client(socket_timeout=5)
        try:
            self.config: dict[str, Any] = client.config_get("*")
            self.acl: list[Any] = client.acl_list()
        finally:
            client.close()

    def _differences(self, client: Any) -> dict[str, Any]:
        current = client.config_get("*")
        return {name: value for name, value in self.config.items() if current.get(name) != value}

    def restore(self, server: RedisServer) -> None:
        """Put the configuration and ACL back (``CONFIG SET``), or restart the server."""
        import redis

        if not server.running:
            server.start()
            return
        try:
            client = server.client(socket_timeout=5)
            try:
                if client.acl_list() == self.acl:
                    for name, value in self._differences(client).items():
                        with contextlib.suppress(redis.ResponseError):  # not settable
                            client.config_set(name, value)
                    if not self._differences(client):
                        return
            finally:
                client.close()
        except redis.RedisError:  # a password, a renamed command: it cannot be put back
            pass
        server.restart()


_baselines: weakref.WeakKeyDictionary[RedisServer, ServerBaseline] = weakref.WeakKeyDictionary()


def _empty(client: Any) -> None:
    """Empty a server of ours of what a test may have left: paused clients, keys, functions
    and scripts (``FLUSHALL`` keeps the last two)."""
    import redis

    for command in (
        ("CLIENT", "UNPAUSE"),
        ("FLUSHALL",),
        ("FUNCTION", "FLUSH"),
        ("SCRIPT", "FLUSH"),
    ):
        with contextlib.suppress(redis.ResponseError):  # a server too old for the command
            client.execute_command(*command)


@contextlib.contextmanager
def own_redis(server: RedisServer) -> Iterator[RedisFixture]:
    """Redis caches in the block talk to ``server`` (ours: emptied first, restored after)."""
    _require_redis("remote_cache_redis")
    if not server.running:  # a test killed it
        server.start()
    baseline = _baselines.get(server)
    if baseline is None:
        baseline = _baselines[server] = ServerBaseline(server)
    client = server.client()
    _empty(client)
    try:
        with redis_environment(server.url):
            yield RedisFixture(server.url, client, server)
    finally:
        client.close()
        baseline.restore(server)


@contextlib.contextmanager
def external_redis(url: str, prefix: str | None = None) -> Iterator[RedisFixture]:
    """Redis caches in the block use the server at ``url``, inside a key namespace.

    Every key the caches and ``.client`` use is put under ``prefix`` (unique per call by
    default), so blocks sharing one server never see each other's keys; on exit every key
    under the prefix is deleted. Nothing else on the server is read, written or flushed.
    """
    _require_redis("remote_cache_redis")
    import redis

    from remote_cache._redis import build_client

    namespace = KeyNamespace(redis.Redis.from_url(url), prefix or unique_key_prefix())
    try:
        with redis_environment(
            url,
            client_factory=lambda settings: NamespacedClient(build_client(settings), namespace),
        ):
            yield RedisFixture(url, NamespacedClient(namespace.client, namespace), None)
    finally:
        try:
            namespace.cleanup()
        finally:
            namespace.client.close()


class RedisClusterFixture:
    """Redis caches talk to a real Redis Cluster: ``url``; ``client`` is a cluster client."""

    def __init__(self, cluster: RedisClusterServer, client: Any) -> None:
        self.cluster = cluster
        self.url = cluster.url
        self.client = client
        self.proxies = cluster.proxies
        """With ``@pytest.mark.remote_cache_cluster(proxied=True)``: each node's
        ``OutageProxy`` (``nodes`` order); empty otherwise."""
        self._schedule: Schedule | None = None

    def apply(self, schedule: Schedule) -> Schedule:
        """Apply ``schedule`` at every node's proxy (``Fault(node=i)`` matches node ``i``'s
        only), its counts shared by the whole cluster; returns it. Needs ``proxied=True``."""
        if not self.proxies:
            raise RuntimeError(
                "apply() needs the nodes behind proxies: mark the test "
                "@pytest.mark.remote_cache_cluster(proxied=True)"
            )
        for proxy in self.proxies:
            proxy.apply(schedule)
        self._schedule = schedule
        return schedule

    @property
    def schedule(self) -> Schedule | None:
        """The ``Schedule`` applied, or None."""
        return self._schedule

    def restore(self) -> None:
        """End every fault of the proxies (the nodes killed are brought back after the test)."""
        for proxy in self.proxies:
            proxy.restore()
        self._schedule = None

    def proxy_for_key(self, key: str | bytes) -> OutageProxy:
        """The proxy of the master serving ``key`` (a backend key, as stored)."""
        if not self.proxies:
            raise RuntimeError(
                "proxy_for_key() needs @pytest.mark.remote_cache_cluster(proxied=True)"
            )
        return self.proxies[self.node_for_key(key)]

    def kill(self, index: int) -> None:
        """Kill master ``index`` (restarted after the test if the test does not)."""
        self.cluster.kill(index)

    def restart(self, index: int) -> None:
        """Start master ``index`` again, with its slots and without its data."""
        self.cluster.restart(index)

    def failover(self, index: int) -> int:
        """Kill master ``index`` and wait until its replica serves its slots; the replica's
        index. Needs ``@pytest.mark.remote_cache_cluster(replicas=1)`` (roles are put back
        after the test)."""
        if not self.cluster.replicas:
            raise RuntimeError(
                "failover() needs replicas: mark the test "
                "@pytest.mark.remote_cache_cluster(replicas=1)"
            )
        return self.cluster.failover(index)

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the master serving ``key`` (a backend key, as stored)."""
        return self.cluster.node_for_key(key)
