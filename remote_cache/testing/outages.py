"""A catalogue of outages seen in real deployments, each one line of schedule.

Apply one by name::

    remote_cache_outage.apply(OUTAGES["memory-full"].schedule())

Each ``Outage`` says what a cache does under it (``reads``, ``writes``), which layers can
simulate it, and its faults. ``tests/testing/test_outages.py`` runs every entry on every layer
it names and checks both; docs/testing.md lists them.
"""

from __future__ import annotations

import dataclasses

from remote_cache import BackendUnavailableError
from remote_cache.testing.faults import (
    Calls,
    Corrupt,
    DropPut,
    During,
    Every,
    Fault,
    Hang,
    Latency,
    Nth,
    Raise,
    Refuse,
    Reply,
    Schedule,
    Stale,
    Truncate,
)

__all__ = ["OUTAGES", "Outage"]

EVERY_LAYER = ("in-process", "fakeredis", "proxy")


@dataclasses.dataclass(frozen=True)
class Outage:
    """An outage production has, as faults, and what a cache does under it.

    What a cache does is told by three calls made while the outage lasts, on an entry stored
    before it, by a process that connects during it (the outages that refuse new connections
    only leave a connection made before them working): ``reads`` (a get of the entry: "hit",
    "miss" or "corrupt"), ``writes``
    (whether an overwrite of it made during the outage is there once the outage is over:
    "stored" or "dropped") and ``rereads`` (a batch get of it after that overwrite: "new",
    "old" value, "miss" or "corrupt"). ``recovers_after``: seconds after which the outage
    ends by itself (None: when its faults are removed).
    """

    name: str
    seen: str
    faults: tuple[Fault, ...]
    reads: str
    writes: str
    rereads: str
    layers: tuple[str, ...] = EVERY_LAYER
    recovers_after: float | None = None

    def schedule(self, seed: int | None = None) -> Schedule:
        """A new ``Schedule`` of this outage's faults."""
        return Schedule(self.faults, seed=seed)


def _outage(
    name: str,
    seen: str,
    fault: Fault | tuple[Fault, ...],
    outcome: str,
    *,
    layers: tuple[str, ...] = EVERY_LAYER,
    recovers_after: float | None = None,
) -> Outage:
    """An ``Outage`` of ``fault`` (or faults); ``outcome`` is "reads, writes, rereads"."""
    reads, writes, rereads = outcome.split(", ")
    faults = fault if isinstance(fault, tuple) else (fault,)
    return Outage(name, seen, faults, reads, writes, rereads, layers, recovers_after)


ONE_KEY = "pt2:*::1:c1"
"""The backend key of the entry the catalogue's calls use (key "1" of any cache)."""

IN_PROCESS = ("in-process",)

_CATALOGUE = [
    _outage("failover-read-only", "a failover: the old master, still in use, is now a replica",
            Fault(Reply("READONLY"), on="put"), "hit, dropped, old"),
    _outage("restart-loading", "a restart with a large dataset: LOADING for its first 30 s",
            Fault(Reply("LOADING"), when=During(0, 30)), "miss, dropped, miss", recovers_after=30),
    _outage("memory-full", "memory full under maxmemory-policy noeviction: writes refused",
            Fault(Reply("OOM"), on="put"), "hit, dropped, old"),
    _outage("password-rotated", "a password set or rotated: a new connection is refused",
            Fault(Reply("NOAUTH")), "miss, dropped, miss"),
    _outage("wrong-password", "a deploy still on the password a rotation retired: new connections",
            Fault(Reply("WRONGPASS")), "miss, dropped, miss"),
    _outage("client-limit", "maxclients reached by a build farm: a new connection is refused",
            Fault(Reply("MAXCLIENTS")), "miss, dropped, miss"),
    _outage("resharding-moved", "the entry's slot moved in a resharding (a non-cluster client)",
            Fault(Reply("MOVED"), key=ONE_KEY), "miss, dropped, miss"),
    _outage("resharding-ask", "the entry's slot half migrated, the entry moved: ASK on its calls",
            Fault(Reply("ASK"), key=ONE_KEY), "miss, dropped, miss"),
    _outage("resharding-tryagain", "a batch spanning a slot in migration: TRYAGAIN",
            Fault(Reply("TRYAGAIN"), on="get_many"), "hit, stored, miss"),
    _outage("cluster-down", "the cluster lost a slot's master and its replicas",
            Fault(Reply("CLUSTERDOWN")), "miss, dropped, miss"),
    _outage("replica-link-down", "a replica cut from its master, replica-serve-stale-data no",
            (Fault(Reply("MASTERDOWN"), on="get"), Fault(Reply("READONLY"), on="put")),
            "miss, dropped, miss"),
    _outage("busy-script", "a Lua script past busy-reply-threshold: BUSY until it ends, 5 s on",
            Fault(Reply("BUSY"), when=During(0, 5)), "miss, dropped, miss", recovers_after=5),
    _outage("acl-too-narrow", "an ACL user allowed to read but not to write",
            Fault(Reply("NOPERM"), on="put"), "hit, dropped, old"),
    _outage("third-call-times-out", "a request lost in the network: the third call never answered",
            Fault(Hang(), when=Nth(3)), "hit, stored, miss"),
    _outage("stalled-server", "a stalled server (a fork for a snapshot, swap): no answer at all",
            Fault(Hang()), "miss, dropped, miss"),
    _outage("slow-server", "a server slower than the deadline: 2 s a reply",
            Fault(Latency(2)), "miss, stored, miss"),
    _outage("slow-network", "a congested link: 0.2 s more a reply, give or take 0.1",
            Fault(Latency(0.2, jitter=0.1)), "hit, stored, new"),
    _outage("hot-key-node-down", "the node serving one entry down, the others up",
            Fault(Hang(), key=ONE_KEY), "miss, dropped, miss"),
    _outage("port-closed", "a server restarting: connections refused for 5 s",
            Fault(Refuse(), when=During(0, 5)), "miss, dropped, miss", recovers_after=5),
    _outage("flapping-link", "a flapping link: every other call refused",
            Fault(Refuse(), when=Every(2)), "hit, dropped, old"),
    _outage("brief-blip", "a blip: the next two calls refused, then all is well",
            Fault(Refuse(), when=Calls(1, 3)), "miss, dropped, old"),
    _outage("dns-failure", "the server's name does not resolve",
            Fault(Raise(BackendUnavailableError)), "miss, dropped, miss", layers=IN_PROCESS),
    _outage("certificate-expired", "the server's TLS certificate expired: every handshake fails",
            Fault(Raise(BackendUnavailableError)), "miss, dropped, miss", layers=IN_PROCESS),
    _outage("corrupt-entry", "an entry damaged on disk or by a buggy writer",
            Fault(Corrupt(), on="get"), "corrupt, stored, corrupt", layers=IN_PROCESS),
    _outage("torn-write", "a writer killed halfway: the entry cut short",
            Fault(Truncate(), on="get"), "corrupt, stored, corrupt", layers=IN_PROCESS),
    _outage("lagging-replica", "reads from a replica that has not caught up with a write",
            Fault(Stale(), on="get"), "hit, stored, old", layers=IN_PROCESS),
    _outage("lying-store", "an overloaded store acknowledging writes it drops",
            Fault(DropPut()), "hit, dropped, old", layers=IN_PROCESS),
]  # fmt: skip

OUTAGES: dict[str, Outage] = {outage.name: outage for outage in _CATALOGUE}
"""Every outage of the catalogue, by name."""
