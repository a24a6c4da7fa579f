"""``RedisClusterServer``: a throw-away Redis Cluster on loopback (masters, and replicas).

The nodes and what they report are in ``_cluster_nodes``; this module creates the cluster,
fails masters over and puts the first layout back.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from types import TracebackType

from remote_cache.testing._cluster_nodes import ClusterNodes, _text
from remote_cache.testing._server_builds import RedisServerError

__all__ = ["RedisClusterServer"]


class RedisClusterServer(ClusterNodes):
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

    ``proxied=True`` puts each node behind an ``OutageProxy`` of its own (``proxies``, with
    ``proxy.node`` its index), whose port the node announces: a cluster client reaches every
    node through its proxy, and ``Fault(node=i)`` matches node ``i``'s. The cluster bus
    stays direct; proxied clusters have no replicas.

    Raises ``ValueError`` for fewer than 3 masters, a negative ``replicas``, or replicas
    with ``proxied``, and
    ``FileNotFoundError`` when ``redis-server`` or ``redis-cli`` is missing.
    """

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

        def check() -> str | None:
            if not any(_text(self._ask(i, "ROLE")[0]) == "master" for i in replicas):
                return f"no replica of node {dead} is a master yet"
            for index, node in enumerate(self.nodes):
                if not node.running:
                    continue
                owners = {self._index_of_port(owner) for *_, owner in self._slot_owners(index)}
                if dead in owners:
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

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
