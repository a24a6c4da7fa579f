"""``RedisClusterServer``: a throw-away Redis Cluster of N masters on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from types import TracebackType
from typing import Any

from remote_cache.testing._processes import free_port
from remote_cache.testing._redis_server import (
    INSTALL_HINT,
    RedisServer,
    RedisServerError,
    find_redis_server,
)

__all__ = ["RedisClusterServer"]

# Redis Cluster's bus listens on the client port plus this.
BUS_PORT_OFFSET = 10_000


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_cluster_port(host: str, taken: set[int]) -> int:
    """A free port whose bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port(host)
        bus = port + BUS_PORT_OFFSET
        if port not in taken and bus <= 65_535 and _port_free(host, bus):
            return port
    raise RedisServerError("found no free port pair for a cluster node")


class RedisClusterServer:
    """Start ``masters`` cluster-enabled ``redis-server`` processes and join them in a cluster.

    Slots are spread over the masters by ``redis-cli --cluster create`` (no replicas). The
    cluster keeps serving the slots of live masters when one is down
    (``cluster-require-full-coverage no``), so a killed master costs only its own keys.
    ``kill(i)`` ends master ``i`` as a crash would; ``restart(i)`` brings it back with its
    slots (its data is gone: no persistence). Use it as a context manager, or call
    ``start()`` and ``stop()``; the processes are killed at interpreter exit regardless.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        binary: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        node_timeout_ms: int = 1000,
        startup_timeout: float = 30.0,
    ) -> None:
        if masters < 3:
            raise ValueError(f"Expected masters >= 3 (Redis Cluster's minimum) but got {masters}")
        self.binary = find_redis_server(binary)
        cli = shutil.which("redis-cli", path=os.path.dirname(self.binary)) or shutil.which(
            "redis-cli"
        )
        if cli is None:
            raise FileNotFoundError(f"'redis-cli' was not found: {INSTALL_HINT}")
        self.cli = cli
        self.host = host
        self.startup_timeout = startup_timeout
        config = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(node_timeout_ms),
            "cluster-require-full-coverage": "no",
        }
        ports: set[int] = set()
        self.nodes: list[RedisServer] = []
        for _ in range(masters):
            port = _free_cluster_port(host, ports)
            ports.add(port)
            self.nodes.append(RedisServer(binary=self.binary, host=host, port=port, config=config))

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the first master; cluster clients discover the rest."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        """The URL of each master."""
        return [node.url for node in self.nodes]

    @property
    def running(self) -> bool:
        """Whether every master's process is alive."""
        return all(node.running for node in self.nodes)

    def __repr__(self) -> str:
        ports = ",".join(str(node.port) for node in self.nodes)
        return f"<RedisClusterServer {self.host}:{ports} {len(self.nodes)} masters>"

    def start(self) -> RedisClusterServer:
        """Start every master, create the cluster and wait until it serves every slot."""
        fresh = not any((node.directory / "nodes.conf").exists() for node in self.nodes)
        for node in self.nodes:
            node.start()
        if fresh:
            addresses = [f"{node.host}:{node.port}" for node in self.nodes]
            result = subprocess.run(
                [self.cli, "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=self.startup_timeout, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                self.stop()
                raise RedisServerError(f"redis-cli --cluster create failed:\n{result.stdout}")
        self.wait_ready()
        return self

    def _cluster_info(self, node: RedisServer) -> dict[str, str]:
        client = node.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            raw = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def wait_ready(self) -> None:
        """Wait until every running master reports ``cluster_state:ok`` and every slot."""
        deadline = time.monotonic() + self.startup_timeout
        last: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                infos = [self._cluster_info(node) for node in self.nodes if node.running]
            except Exception:  # noqa: BLE001 - a node still starting: ask again
                infos = []
            if infos and all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_assigned") == "16384"
                and info.get("cluster_known_nodes") == str(len(self.nodes))
                for info in infos
            ):
                return
            last = infos[0] if infos else last
            time.sleep(0.05)
        raise RedisServerError(f"the cluster did not become ready: {last}")

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the master that serves ``key``."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)
        finally:
            client.close()
        ports = [n.port for n in self.nodes]
        return ports.index(int(node.port))

    def kill(self, index: int) -> None:
        """End master ``index`` at once (SIGKILL, as a crash would)."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start master ``index`` again on its port with its slots, and wait for the cluster."""
        self.nodes[index].restart()
        self.wait_ready()

    def stop(self) -> None:
        """Stop every master and remove their folders."""
        for node in self.nodes:
            node.stop()

    def flush(self) -> None:
        """Empty every running master (the cluster is ours: nobody else's data is on it)."""
        for node in self.nodes:
            if node.running:
                client = node.client()
                try:
                    client.flushall()
                finally:
                    client.close()

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def client(self, **options: Any) -> Any:
        """A redis-py ``RedisCluster`` client for this cluster (needs the ``redis`` package)."""
        from redis.cluster import RedisCluster

        options.setdefault("socket_timeout", 5.0)
        return RedisCluster(host=self.host, port=self.nodes[0].port, **options)
