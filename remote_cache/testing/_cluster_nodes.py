"""The nodes of a throw-away Redis Cluster: their ports, and what each of them reports.

``ClusterNodes`` builds one ``RedisServer`` per node on a port whose bus port is free too,
and asks the nodes about the cluster: roles, slot maps, readiness, which node serves a key.
``RedisClusterServer`` (``_redis_cluster``) adds creating the cluster, failovers and restores.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

from remote_cache.testing._processes import free_port
from remote_cache.testing._proxy import OutageProxy
from remote_cache.testing._redis_server import RedisServer
from remote_cache.testing._server_builds import (
    INSTALL_HINT,
    RedisServerError,
    find_redis_server,
)

__all__ = ["ClusterNodes", "free_cluster_port"]

# Redis Cluster's bus listens on the client port plus this.
BUS_PORT_OFFSET = 10_000


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_cluster_port(host: str, taken: set[int]) -> int:
    """A free port whose bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port(host)
        bus = port + BUS_PORT_OFFSET
        if port not in taken and bus <= 65_535 and _port_free(host, bus):
            return port
    raise RedisServerError("found no free port pair for a cluster node")


class ClusterNodes:
    """The nodes of a cluster (``masters`` masters, ``replicas`` replicas each) and their state.

    Builds the nodes without starting them; ``RedisClusterServer`` documents the arguments
    and what it raises.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        replicas: int = 0,
        binary: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        node_timeout_ms: int = 1000,
        startup_timeout: float = 30.0,
        proxied: bool = False,
    ) -> None:
        if masters < 3:
            raise ValueError(f"Expected masters >= 3 (Redis Cluster's minimum) but got {masters}")
        if replicas < 0:
            raise ValueError(f"Expected replicas >= 0 but got {replicas}")
        if proxied and replicas:
            raise ValueError(
                "proxied=True takes no replicas: the replication stream would pass the proxies"
            )
        self.binary = find_redis_server(binary)
        cli = shutil.which("redis-cli", path=os.path.dirname(self.binary)) or shutil.which(
            "redis-cli"
        )
        if cli is None:
            raise FileNotFoundError(f"'redis-cli' was not found: {INSTALL_HINT}")
        self.cli = cli
        self.host = host
        self.masters = masters
        self.replicas = replicas
        self.node_timeout = node_timeout_ms / 1000
        self.startup_timeout = startup_timeout
        config = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(node_timeout_ms),
            "cluster-require-full-coverage": "no",
            # A replica takes over however long ago it last heard from its master, and
            # syncs at once rather than after the default 5 s wait for more replicas.
            "cluster-replica-validity-factor": "0",
            "repl-diskless-sync-delay": "0",
        }
        ports: set[int] = set()
        self._failing_over: dict[int, list[int]] = {}  # killed master -> its replicas
        self.nodes: list[RedisServer] = []
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port(host, ports)
            ports.add(port)
            self.nodes.append(RedisServer(binary=self.binary, host=host, port=port, config=config))
        self.proxies: list[OutageProxy] = []
        """With ``proxied``: an ``OutageProxy`` in front of each node (``nodes`` order), whose
        port that node announces, so that cluster clients reach it only through the proxy."""
        if proxied:
            self._put_behind_proxies()

    def _put_behind_proxies(self) -> None:
        for index, node in enumerate(self.nodes):
            proxy = OutageProxy(node.host, node.port)
            proxy.node = index  # Fault(node=index) matches it
            self.proxies.append(proxy)
            node.config["cluster-announce-port"] = str(proxy.port)
            node.config["cluster-announce-bus-port"] = str(node.port + BUS_PORT_OFFSET)

    def _index_of_port(self, port: int) -> int:
        """The index of the node a cluster reply names by ``port`` (its own, or its proxy's)."""
        for index, node in enumerate(self.nodes):
            if port == node.port or (self.proxies and port == self.proxies[index].port):
                return index
        raise RedisServerError(f"no node of this cluster has port {port}")

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the first running node (its proxy's, with ``proxied``);
        cluster clients discover the rest."""
        running = [index for index, node in enumerate(self.nodes) if node.running]
        first = (running or [0])[0]
        return self.proxies[first].url if self.proxies else self.nodes[first].url

    @property
    def urls(self) -> list[str]:
        """The URL of each node (``nodes`` order)."""
        return [node.url for node in self.nodes]

    @property
    def running(self) -> bool:
        """Whether every node's process is alive."""
        return all(node.running for node in self.nodes)

    def _ask(self, index: int, *command: Any) -> Any:
        """Run ``command`` on node ``index`` with a client of its own (closed after)."""
        client = self.nodes[index].client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def _info(self, index: int, *command: str) -> dict[str, str]:
        """The ``key:value`` lines of ``CLUSTER INFO`` or ``INFO replication`` on node ``index``."""
        raw = self._ask(index, *command)
        if isinstance(raw, dict):  # redis-py parses INFO into a dict
            return {str(key): str(value) for key, value in raw.items()}
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def _slot_owners(self, index: int) -> list[tuple[int, int, int]]:
        """``(first slot, last slot, master port)`` of every range, as node ``index`` sees it."""
        ranges = self._ask(index, "CLUSTER", "SLOTS")
        return sorted((int(first), int(last), int(master[1])) for first, last, master, *_ in ranges)

    def _agreed(self) -> str | None:
        """None when every running node reports the same full slot map and a healthy
        cluster that knows every node; else what is missing."""
        maps = set()
        for index, node in enumerate(self.nodes):
            if not node.running:
                continue
            info = self._info(index, "CLUSTER", "INFO")
            if info.get("cluster_state") != "ok":
                return f"node {index}: cluster_state {info.get('cluster_state')}"
            if info.get("cluster_slots_assigned") != "16384":
                return f"node {index}: {info.get('cluster_slots_assigned')} slots assigned"
            if info.get("cluster_known_nodes") != str(len(self.nodes)):
                return f"node {index}: knows {info.get('cluster_known_nodes')} nodes"
            maps.add(tuple(self._slot_owners(index)))
        if len(maps) != 1:
            return f"the running nodes disagree on the slot map ({len(maps)} versions)"
        return None

    def _wait_until(self, check: Callable[[], str | None], limit: float, what: str) -> None:
        """Poll ``check()`` until it returns None; raise ``RedisServerError`` after ``limit`` s."""
        deadline = time.monotonic() + limit
        last = "not asked yet"
        while time.monotonic() < deadline:
            try:
                problem = check()
            except Exception as exc:  # noqa: BLE001 - a node still starting: ask again
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return
            last = problem
            time.sleep(0.05)
        raise RedisServerError(f"{what} within {limit:.1f} s: {last}")

    def wait_ready(self) -> None:
        """Wait until every running node reports ``cluster_state:ok``, every slot, every
        node, and the same slot map as the others."""
        self._wait_until(self._agreed, self.startup_timeout, "the cluster did not become ready")

    def master_indexes(self) -> list[int]:
        """The indexes of the running nodes that are masters now (in ``nodes`` order)."""
        return [
            index
            for index, node in enumerate(self.nodes)
            if node.running and _text(self._ask(index, "ROLE")[0]) == "master"
        ]

    def replicas_of(self, index: int) -> list[int]:
        """The indexes of the running nodes that replicate node ``index`` now."""
        found = []
        for other, node in enumerate(self.nodes):
            if other == index or not node.running:
                continue
            role = self._ask(other, "ROLE")
            if _text(role[0]) == "slave" and self._index_of_port(int(role[2])) == index:
                found.append(other)
        return found

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the node that serves ``key`` now (its master)."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)
        finally:
            client.close()
        return self._index_of_port(int(node.port))

    def kill(self, index: int) -> None:
        """End node ``index`` at once (SIGKILL, as a crash would)."""
        self.nodes[index].kill()

    def stop(self) -> None:
        """Stop every node (and proxy) and remove their folders."""
        for node in self.nodes:
            node.stop()
        for proxy in self.proxies:
            proxy.close()

    def flush(self) -> None:
        """Empty every running master (the cluster is ours: nobody else's data is on it).

        Replicas follow their masters; they refuse writes of their own.
        """
        for index in self.master_indexes():
            self._ask(index, "FLUSHALL")

    def client(self, **options: Any) -> Any:
        """A redis-py ``RedisCluster`` client for this cluster (needs the ``redis`` package);
        with ``proxied``, it goes to the nodes directly, past their proxies and faults."""
        from redis.cluster import RedisCluster

        options.setdefault("socket_timeout", 5.0)
        if self.proxies:
            options.setdefault("address_remap", self._past_the_proxy)
        node = next((node for node in self.nodes if node.running), self.nodes[0])
        return RedisCluster(host=self.host, port=node.port, **options)

    def _past_the_proxy(self, address: tuple[str, int]) -> tuple[str, int]:
        """The node's own address for the address of its proxy (others unchanged)."""
        host, port = address
        for index, proxy in enumerate(self.proxies):
            if port == proxy.port:
                return self.nodes[index].host, self.nodes[index].port
        return host, port


def _text(value: object) -> str:
    """A reply element as text (redis-py gives bytes or str, depending on the protocol)."""
    return value.decode() if isinstance(value, bytes) else str(value)
