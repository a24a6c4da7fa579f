"""Faults as data: what a fault matches, what it does and when; a schedule is a list of them.

A fault reads as a sentence::

    Fault(Reply("OOM"), on="put")                  # memory full, on writes only
    Fault(Reply("READONLY"), on="put")             # a replica after a failover
    Fault(Reply("LOADING"), when=During(0, 5))     # a restart loading its data, 5 s
    Fault(Hang(), when=Nth(3))                     # the third call never answers
    Fault(Latency(0.2, jitter=0.1), key="pt2:fx-graph-v1::*")
    Fault(Corrupt(), on="get", when=Chance(0.1))   # one read in ten comes back damaged

``Schedule([...], seed=7)`` holds several; its ``repr`` is Python that rebuilds it, and
``to_json``/``from_json`` carry it through a file or a command line. The seed makes every
drawn choice (``Chance``, a latency's jitter) repeat. A layer applies a schedule: the
in-process injector (``FaultInjectingBackend(inner, schedule=...)``, the
``remote_cache_outage`` fixture) and fakeredis (``remote_cache_fakeredis``), each as the
cache would meet that fault from a real server; ``Fault.layers`` says where each can act.
Every fault that fires is logged in ``Schedule.fired``. The words are in ``_fault_terms``
(re-exported here); ``Fault`` and ``Schedule`` stay together, a little over 400 lines, since
a schedule's ``decide`` is its faults' matching, counted and drawn.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from remote_cache import _clock
from remote_cache._guard import Guard
from remote_cache.testing._fault_json import _fault_data, _register, _term_from_data
from remote_cache.testing._fault_seeds import (
    begin_test,
    current_seed,
    note_started,
    started_schedules,
)
from remote_cache.testing._fault_terms import (
    LAYERS,
    OPERATION_COMMANDS,
    REPLIES,
    Action,
    AfterBytes,
    Always,
    Calls,
    Chance,
    Corrupt,
    Drip,
    DropPut,
    During,
    Every,
    FirstN,
    HalfReply,
    Hang,
    Latency,
    Nth,
    Raise,
    Refuse,
    Reply,
    Stale,
    Truncate,
    When,
    _check_count,
    _Term,
)

__all__ = [
    "LAYERS",
    "REPLIES",
    "Action",
    "AfterBytes",
    "Always",
    "Calls",
    "Chance",
    "Corrupt",
    "Drip",
    "DropPut",
    "During",
    "Every",
    "Fault",
    "Fired",
    "FirstN",
    "HalfReply",
    "Hang",
    "Latency",
    "Nth",
    "Raise",
    "Refuse",
    "Reply",
    "Schedule",
    "Stale",
    "Truncate",
    "When",
    "begin_test",
    "current_seed",
    "started_schedules",
]

# -- a fault, a schedule -------------------------------------------------------------------

DIRECTIONS = ("both", "upstream", "downstream")
"""A byte fault's direction: both ways, towards the server, towards the client."""

CONNECTIONS = ("any", "new")
"""Which connections a fault's calls are made on: any, or those opened after it was applied."""

DIRECTED = (Hang, Latency, Drip, HalfReply)
"""The actions a link does to bytes, which take a ``direction``; the others are answers."""


@dataclasses.dataclass(frozen=True, repr=False)
class Fault(_Term):
    """``does`` to the calls it matches, ``when`` they come.

    It matches a call whose Redis command is named by ``on``: "get" (every read), "put"
    (every write), "get_many" (batch reads), or commands ("GET", "SET", "MGET", "MSET"...;
    see ``OPERATION_COMMANDS``); None: any. And whose key matches the
    glob ``key`` (the backend's key, ``pt2:<cache id>::<key>:c1``), whose cache id matches
    ``cache`` (a glob), on cluster node ``node`` (the proxy's ``node``), made on any
    connection or, with ``connections="new"``, only on connections opened after the schedule
    was applied (a server refusing new connections: its client limit, a changed password).
    ``direction`` ("upstream": the request, "downstream": the answer) narrows what ``Hang``,
    ``Latency``, ``Drip`` and ``HalfReply`` act on; see each.
    """

    does: Action
    on: str | tuple[str, ...] | None = None
    key: str | None = None
    cache: str | None = None
    node: int | None = None
    direction: str = "both"
    connections: str = "any"
    when: When = Always()  # noqa: RUF009 - a frozen dataclass: one instance is safe to share

    def __post_init__(self) -> None:
        if not isinstance(self.does, Action):
            raise TypeError(f"Expected an action (Reply, Hang, Latency...) but got {self.does!r}")
        if not isinstance(self.when, When):
            raise TypeError(f"Expected when= Always(), Nth(n)... but got {self.when!r}")
        if isinstance(self.on, list):
            object.__setattr__(self, "on", tuple(self.on))
        self._check_names()
        for name in ("key", "cache"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Expected {name}= a glob (str) but got {value!r}")
            if value == "":
                raise ValueError(f"{name}='' matches no call: give a glob, or None for any")
        if self.node is not None:
            _check_count("node", self.node, least=0)
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Expected direction in {DIRECTIONS} but got {self.direction!r}")
        if self.connections not in CONNECTIONS:
            raise ValueError(f"Expected connections in {CONNECTIONS} but got {self.connections!r}")
        if self.direction != "both" and not isinstance(self.does, DIRECTED):
            raise ValueError(
                f"direction={self.direction!r} applies to what a link does to bytes (Hang, "
                f"Latency, Drip, HalfReply); {self.does!r} is the server's answer, which has none"
            )

    def _check_names(self) -> None:
        """``on``'s names: operations in lower case, Redis commands in capitals, at least one."""
        if self.on is not None and not self._names():
            raise ValueError("on=() matches no call: give names, or None for every call")
        for name in self._names():
            if not name or not isinstance(name, str):
                raise TypeError(f"Expected on= operation or command names but got {self.on!r}")
            if not (name.islower() or name.isupper()):
                raise ValueError(
                    f"on={name!r}: an operation in lower case ({list(OPERATION_COMMANDS)}) "
                    "or a Redis command in capitals (GET, SET...)"
                )
            if name.islower() and name not in OPERATION_COMMANDS:
                raise ValueError(
                    f"unknown operation {name!r}: expected one of {list(OPERATION_COMMANDS)}, "
                    "or a Redis command in capitals (GET, SET, MGET...)"
                )

    def _names(self) -> tuple[str, ...]:
        if self.on is None:
            return ()
        return (self.on,) if isinstance(self.on, str) else tuple(self.on)

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers that can simulate this fault."""
        layers = self.does.layers
        if isinstance(self.when, AfterBytes) or self.node is not None:
            layers = tuple(layer for layer in layers if layer == "proxy")
        if self.connections == "new":  # in-process calls have no connections to tell apart
            layers = tuple(layer for layer in layers if layer != "in-process")
        return layers

    @property
    def loses_answer(self) -> bool:
        """Whether the call is done and its answer lost (``Hang`` with "downstream")."""
        return self.direction == "downstream" and isinstance(self.does, Hang)

    def commands(self) -> frozenset[str] | None:
        """The Redis commands this fault matches (None: any)."""
        return self._commands

    @functools.cached_property
    def _commands(self) -> frozenset[str] | None:
        if self.on is None:
            return None
        found: set[str] = set()
        for name in self._names():
            found.update(OPERATION_COMMANDS.get(name, (name.upper(),)))
        return frozenset(found)

    @functools.cached_property
    def _key_glob(self) -> Callable[[str], object] | None:
        return None if self.key is None else re.compile(fnmatch.translate(self.key)).match

    @functools.cached_property
    def _cache_glob(self) -> Callable[[str], object] | None:
        return None if self.cache is None else re.compile(fnmatch.translate(self.cache)).match

    def matches(self, command: str, keys: Sequence[str]) -> bool:
        """Whether a call sending Redis ``command`` on ``keys`` matches."""
        commands = self._commands
        if commands is not None and command not in commands:
            return False
        return self.matches_keys(keys)

    def matches_keys(self, keys: Sequence[str]) -> bool:
        """Whether ``keys`` (a call's) match the ``key`` and ``cache`` globs."""
        key_glob = self._key_glob
        if key_glob is not None and not any(key_glob(k) for k in keys):
            return False
        cache_glob = self._cache_glob
        if cache_glob is not None:
            ids = (_cache_id(k) for k in keys)
            return any(i is not None and cache_glob(i) for i in ids)
        return True


def _cache_id(key: str) -> str | None:
    """The cache id of a backend key ``pt2:<id>::<key>:c1`` (None for another shape)."""
    if not key.startswith("pt2:") or "::" not in key:
        return None
    return key[4 : key.index("::")]


@dataclasses.dataclass(frozen=True)
class Fired:
    """A fault that fired: which (its index in the schedule), on which matching call (from
    1), on what, and when (seconds after the schedule was applied, by the process's clock)."""

    fault: int
    call: int
    command: str
    keys: tuple[str, ...]
    seconds: float

    def __str__(self) -> str:
        keys = " ".join(self.keys[:3]) + (" ..." if len(self.keys) > 3 else "")
        return (
            f"fault {self.fault} fired on its matching call {self.call}: "
            f"{self.command} {keys} at +{self.seconds:.3f}s"
        )


_NOTHING: list[tuple[Fault, random.Random]] = []
"""What ``decide`` returns when no fault fires (never changed)."""
_MEMO_SIZE = 4096
"""Single-key calls whose matching faults a schedule remembers (then it forgets them all)."""


class Schedule:
    """Faults applied together, and the seed of every choice they draw (None: the test's).

    A fault is counted, and draws, only on the calls it matches: adding a fault for puts
    leaves which gets another one fires on unchanged.

    ``repr(schedule)`` is Python that rebuilds it; ``to_json()`` and ``from_json()`` carry it
    as text. Applied to a layer (``start()``), it counts each fault's matching calls, draws
    from ``random.Random(seed)`` (one stream per fault, so adding a fault leaves the others'
    draws alone) and logs every firing in ``fired``. Thread-safe.
    """

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int | None = None) -> None:
        self.faults: tuple[Fault, ...] = tuple(faults)
        for fault in self.faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"Expected Fault(...) items but got {fault!r}")
        if seed is None:
            seed = current_seed()
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Expected seed as a whole number but got {seed!r}")
        self.seed = seed
        """What every draw comes from; None when made: the test's seed (``current_seed``)."""
        self.fired: list[Fired] = []
        """Every firing so far, in order."""
        self._lock = Guard()  # a signal handler's call while this thread decides: refused
        self._calls: list[int] = []
        self._rngs: list[random.Random] = []
        self._started = 0.0
        self._candidates: dict[str, tuple[int, ...]] = {}  # command -> faults that may match
        self._matching: dict[tuple[str | bool, ...], tuple[int, ...]] = {}
        self._reset()

    def start(self) -> None:
        """Begin again: counts, draws, the log and the clock (``During``) from zero.

        A layer starts the schedules it applies; the pytest plugin reports the schedules
        started during a test that failed (``started_schedules``).
        """
        note_started(self)
        self._reset()

    def _reset(self) -> None:
        with self._lock:
            self._calls = [0] * len(self.faults)
            self._rngs = [random.Random(f"{self.seed}:{i}") for i in range(len(self.faults))]
            self._started = _clock.monotonic()
            self.fired = []

    def check_layer(self, layer: str) -> None:
        """Raise ``ValueError`` naming each fault that ``layer`` cannot simulate."""
        unable = [
            f"fault {index} {fault!r} (it needs: {', '.join(fault.layers) or 'no layer'})"
            for index, fault in enumerate(self.faults)
            if layer not in fault.layers
        ]
        if unable:
            raise ValueError(f"the {layer} layer cannot simulate " + "; ".join(unable))

    def decide(
        self,
        command: str,
        keys: Sequence[str],
        *,
        sent: int = 0,
        node: int | None = None,
        new_connection: bool = False,
    ) -> list[tuple[Fault, random.Random]]:
        """The faults that fire on a call sending Redis ``command`` (``CALL_COMMANDS`` names
        the in-process operations') on ``keys``, each with its random stream; logged. ``sent``:
        the bytes the connection has relayed (``AfterBytes``); ``node``: the cluster node
        the call goes to (a fault with ``node=`` matches only that one); ``new_connection``:
        whether the call's connection was opened after the schedule was applied (a fault
        with ``connections="new"`` matches only such calls).

        ``ReenteredError`` for a call made while this thread is deciding (a signal handler).
        """
        if len(keys) == 1 and node is None:
            return self.decide_key(command, keys[0], sent=sent, new_connection=new_connection)
        matching = self._match(command, keys, node, new_connection)
        return self._fire(matching, command, keys, sent) if matching else []

    def decide_key(
        self, command: str, key: str, *, sent: int = 0, new_connection: bool = False
    ) -> list[tuple[Fault, random.Random]]:
        """``decide`` for a call on one key, on no node: which faults match that command and
        key is remembered, so that a call no fault matches costs a dictionary lookup."""
        memo_key = (command, key, True) if new_connection else (command, key)
        matching = self._matching.get(memo_key)
        if matching is None:
            matching = self._match(command, (key,), None, new_connection)
            if len(self._matching) >= _MEMO_SIZE:
                self._matching.clear()
            self._matching[memo_key] = matching
        if not matching:  # the common case: decided without the lock or the clock
            return _NOTHING
        return self._fire(matching, command, (key,), sent)

    def _fire(
        self, matching: tuple[int, ...], command: str, keys: Sequence[str], sent: int
    ) -> list[tuple[Fault, random.Random]]:
        """Count the call for each matching fault; those whose ``when`` says so fire."""
        faults = self.faults
        firing: list[tuple[Fault, random.Random]] = []
        with self._lock:
            seconds = _clock.monotonic() - self._started
            for index in matching:
                fault = faults[index]
                self._calls[index] += 1
                n, rng = self._calls[index], self._rngs[index]
                if fault.when.fires(n, rng, seconds, sent):
                    self.fired.append(Fired(index, n, command, tuple(keys), seconds))
                    firing.append((fault, rng))
        return firing

    def _match(
        self, command: str, keys: Sequence[str], node: int | None, new_connection: bool
    ) -> tuple[int, ...]:
        """The indexes of the faults whose command, keys, node and connection match a call's."""
        candidates = self._candidates.get(command)
        if candidates is None:
            candidates = self._candidates[command] = tuple(
                index
                for index, fault in enumerate(self.faults)
                if (commands := fault.commands()) is None or command in commands
            )
        faults = self.faults
        return tuple(
            index
            for index in candidates
            if faults[index].node in (None, node)
            and (new_connection or faults[index].connections == "any")
            and faults[index].matches_keys(keys)
        )

    def report(self) -> str:
        """The schedule, its seed and the faults that fired, for a failure's report."""
        lines = [f"schedule: {self!r}"]
        lines += [f"  {fired}" for fired in self.fired] or ["  no fault fired"]
        return "\n".join(lines)

    # -- as data --------------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        """A JSON-ready dict of the schedule."""
        return {"seed": self.seed, "faults": [_fault_data(fault) for fault in self.faults]}

    def to_json(self) -> str:
        """The schedule as JSON text (``from_json`` reads it back)."""
        return json.dumps(self.to_data(), sort_keys=True)

    @classmethod
    def from_data(cls, data: Any) -> Schedule:
        """The schedule ``to_data`` gave; ``ValueError`` naming what is wrong otherwise."""
        if not isinstance(data, dict) or not isinstance(data.get("faults", []), list):
            raise ValueError(f"Expected {{'seed': int, 'faults': [...]}} but got {data!r}")
        faults = [_term_from_data(item, Fault) for item in data.get("faults", [])]
        try:
            return cls(faults, seed=data.get("seed", 0))
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        """The schedule ``to_json`` wrote."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a schedule: {exc}") from exc
        return cls.from_data(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (self.faults, self.seed) == (other.faults, other.seed)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Schedule({list(self.faults)!r}, seed={self.seed!r})"


_register(
    Raise, Reply, Hang, Latency, Drip, HalfReply, Refuse, Corrupt, Truncate, DropPut, Stale,
    Always, Nth, FirstN, Every, Calls, Chance, During, AfterBytes, Fault,
)  # fmt: skip
