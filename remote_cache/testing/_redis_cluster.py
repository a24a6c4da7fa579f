"""``RedisClusterServer``: a throw-away Redis Cluster on loopback (masters, and replicas)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
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
    """Start a throw-away Redis Cluster: ``masters`` masters, ``replicas`` replicas each.

    ``nodes`` holds every node, the masters first (``nodes[:masters]``), then their
    replicas; which node is a master changes with failovers (``master_indexes()``). Slots
    are spread over the masters by ``redis-cli --cluster create``. The cluster keeps
    serving the slots of live masters when one is down (``cluster-require-full-coverage
    no``), so a killed master without replicas costs only its own keys. ``kill(i)`` ends
    node ``i`` as a crash would; ``restart(i)`` brings it back (its data is gone: no
    persistence; a master that was failed over comes back as a replica of its successor).
    ``failover(i)`` kills master ``i`` and waits until one of its replicas serves its
    slots (``start_failover(i)`` and ``wait_for_failover(i)`` do it in two steps). Use it
    as a context manager, or call ``start()`` and ``stop()``; the processes are killed at
    interpreter exit regardless.

    Raises ``ValueError`` for fewer than 3 masters or a negative ``replicas``, and
    ``FileNotFoundError`` when ``redis-server`` or ``redis-cli`` is missing.
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
    ) -> None:
        if masters < 3:
            raise ValueError(f"Expected masters >= 3 (Redis Cluster's minimum) but got {masters}")
        if replicas < 0:
            raise ValueError(f"Expected replicas >= 0 but got {replicas}")
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
            port = _free_cluster_port(host, ports)
            ports.add(port)
            self.nodes.append(RedisServer(binary=self.binary, host=host, port=port, config=config))

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the first running node; cluster clients discover the rest."""
        running = [node for node in self.nodes if node.running]
        return (running or self.nodes)[0].url

    @property
    def urls(self) -> list[str]:
        """The URL of each node (``nodes`` order)."""
        return [node.url for node in self.nodes]

    @property
    def running(self) -> bool:
        """Whether every node's process is alive."""
        return all(node.running for node in self.nodes)

    def __repr__(self) -> str:
        ports = ",".join(str(node.port) for node in self.nodes)
        return (
            f"<RedisClusterServer {self.host}:{ports} {self.masters} masters, "
            f"{self.replicas} replica(s) each>"
        )

    def start(self) -> RedisClusterServer:
        """Start every node, create the cluster and wait until it serves every slot."""
        fresh = not any((node.directory / "nodes.conf").exists() for node in self.nodes)
        for node in self.nodes:
            node.start()
        if fresh:
            addresses = [f"{node.host}:{node.port}" for node in self.nodes]
            result = subprocess.run(
                [self.cli, "--cluster", "create", *addresses,
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=self.startup_timeout, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                self.stop()
                raise RedisServerError(f"redis-cli --cluster create failed:\n{result.stdout}")
        self.wait_ready()
        return self

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
        port = self.nodes[index].port
        found = []
        for other, node in enumerate(self.nodes):
            if other == index or not node.running:
                continue
            role = self._ask(other, "ROLE")
            if _text(role[0]) == "slave" and int(role[2]) == port:
                found.append(other)
        return found

    def _replicas_caught_up(self, index: int, replicas: list[int]) -> Callable[[], str | None]:
        """A check: every replica in ``replicas`` holds every write master ``index`` had."""
        offset = int(self._info(index, "INFO", "replication")["master_repl_offset"])

        def check() -> str | None:
            for replica in replicas:
                info = self._info(replica, "INFO", "replication")
                if info.get("master_link_status") != "up":
                    return f"node {replica}: master link {info.get('master_link_status')}"
                if int(info.get("slave_repl_offset", -1)) < offset:
                    return f"node {replica}: at offset {info.get('slave_repl_offset')} < {offset}"
            return None

        return check

    def _promoted(self, dead: int, replicas: list[int]) -> Callable[[], str | None]:
        """A check: a node of ``replicas`` is a master, and every running node agrees that
        node ``dead`` serves no slot any more."""
        port = self.nodes[dead].port

        def check() -> str | None:
            if not any(_text(self._ask(i, "ROLE")[0]) == "master" for i in replicas):
                return f"no replica of node {dead} is a master yet"
            for index, node in enumerate(self.nodes):
                if node.running and any(owner == port for *_, owner in self._slot_owners(index)):
                    return f"node {index} still sees node {dead} serving slots"
            return self._agreed()

        return check

    def failover(self, index: int, timeout: float | None = None) -> int:
        """Kill master ``index`` as a crash would, and wait until a replica took its slots.

        ``start_failover(index)``, then ``wait_for_failover(index)``: about
        ``2 * node_timeout_ms`` plus up to a second. Returns the index of the promoted node.
        ``restart(index)`` brings the old master back as a replica. Raises
        ``RedisServerError`` as those two do.
        """
        self.start_failover(index, timeout)
        return self.wait_for_failover(index, timeout)

    def start_failover(self, index: int, timeout: float | None = None) -> None:
        """Kill master ``index`` (SIGKILL) once its replicas hold every write it acknowledged.

        Returns right after the kill, so calls can run while the cluster fails over; then
        ``wait_for_failover(index)``. Raises ``RedisServerError`` when node ``index`` is not
        a running master with a running replica, or its replicas did not catch up within
        ``timeout`` seconds (default: ``startup_timeout``).
        """
        limit = self.startup_timeout if timeout is None else timeout
        if index not in self.master_indexes():
            raise RedisServerError(f"node {index} is not a running master")
        replicas = self.replicas_of(index)
        if not replicas:
            raise RedisServerError(f"master {index} has no running replica to take over")
        self._wait_until(
            self._replicas_caught_up(index, replicas), limit, "the replicas did not catch up"
        )
        self.kill(index)
        self._failing_over[index] = replicas

    def wait_for_failover(self, index: int, timeout: float | None = None) -> int:
        """Wait until a replica of the master ``start_failover(index)`` killed is a master and
        every running node agrees on the new slot map; the promoted node's index.

        Raises ``RedisServerError`` when no failover of ``index`` was started, or none
        ended within ``timeout`` seconds (default: ``startup_timeout``).
        """
        limit = self.startup_timeout if timeout is None else timeout
        replicas = self._failing_over.get(index)
        if replicas is None:
            raise RedisServerError(f"no failover of node {index} was started")
        self._wait_until(
            self._promoted(index, replicas), limit, f"no replica of node {index} took over"
        )
        del self._failing_over[index]
        return next(i for i in replicas if _text(self._ask(i, "ROLE")[0]) == "master")

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the node that serves ``key`` now (its master)."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)
        finally:
            client.close()
        ports = [n.port for n in self.nodes]
        return ports.index(int(node.port))

    def kill(self, index: int) -> None:
        """End node ``index`` at once (SIGKILL, as a crash would)."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start node ``index`` again on its port, and wait for the cluster to agree.

        A master nobody took over comes back with its slots; one whose replica was promoted
        comes back as that node's replica. Its data is gone either way (no persistence).
        """
        self.nodes[index].restart()
        self.wait_ready()

    def restore(self) -> None:
        """Bring the cluster back to its first layout: every node running, ``nodes[:masters]``
        the masters (a node that took over hands its slots back with ``CLUSTER FAILOVER``).

        Data stays as it is; raises ``RedisServerError`` when that does not happen within
        ``startup_timeout`` seconds.
        """
        for index, node in enumerate(self.nodes):
            if not node.running:
                self.nodes[index].restart()
        self._failing_over.clear()
        self.wait_ready()
        for index in range(self.masters):
            if _text(self._ask(index, "ROLE")[0]) != "master":
                self._take_slots_back(index)

    def _take_slots_back(self, index: int) -> None:
        """Make replica ``index`` the master of its master's slots again.

        A coordinated ``CLUSTER FAILOVER`` first (no write lost); one the master aborts (its
        replica was not yet known to be in sync) is asked again, then forced.
        """
        self._wait_until(self._link_up(index), self.startup_timeout, "no replica link")
        deadline = time.monotonic() + self.startup_timeout
        for option in ((), (), ("FORCE",), ("FORCE",), ("TAKEOVER",)):
            self._ask(index, "CLUSTER", "FAILOVER", *option)
            limit = min(max(3 * self.node_timeout, 1.0), deadline - time.monotonic())
            try:
                self._wait_until(self._master_again(index), limit, f"node {index} took no slots")
            except RedisServerError:
                if time.monotonic() >= deadline:
                    raise
                continue
            return
        raise RedisServerError(f"node {index} took no slots back")

    def _link_up(self, index: int) -> Callable[[], str | None]:
        """A check: replica ``index`` is in sync with its master."""

        def check() -> str | None:
            status = self._info(index, "INFO", "replication").get("master_link_status")
            return None if status == "up" else f"node {index}: master link {status}"

        return check

    def _master_again(self, index: int) -> Callable[[], str | None]:
        """A check: node ``index`` is a master and every running node agrees on the map."""

        def check() -> str | None:
            if _text(self._ask(index, "ROLE")[0]) != "master":
                return f"node {index} is not a master yet"
            return self._agreed()

        return check

    def stop(self) -> None:
        """Stop every node and remove their folders."""
        for node in self.nodes:
            node.stop()

    def flush(self) -> None:
        """Empty every running master (the cluster is ours: nobody else's data is on it).

        Replicas follow their masters; they refuse writes of their own.
        """
        for index in self.master_indexes():
            self._ask(index, "FLUSHALL")

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
        node = next((node for node in self.nodes if node.running), self.nodes[0])
        return RedisCluster(host=self.host, port=node.port, **options)


def _text(value: object) -> str:
    """A reply element as text (redis-py gives bytes or str, depending on the protocol)."""
    return value.decode() if isinstance(value, bytes) else str(value)
