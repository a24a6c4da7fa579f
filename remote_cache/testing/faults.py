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
Every fault that fires is logged in ``Schedule.fired``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from remote_cache import (
    BackendCommandError,
    BackendError,
    BackendUnavailableError,
    _clock,
)
from remote_cache._guard import Guard

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

LAYERS = ("in-process", "fakeredis", "proxy")
"""Where a schedule can be applied: the backend injector, fakeredis, the TCP proxy."""

REPLIES: dict[str, tuple[str, bool]] = {  # (the reply, whether redis-py 8 drops the connection)
    "OOM": ("OOM command not allowed when used memory > 'maxmemory'.", False),
    "READONLY": ("READONLY You can't write against a read only replica.", False),
    "LOADING": ("LOADING Redis is loading the dataset in memory", True),
    "NOAUTH": ("NOAUTH Authentication required.", True),
    "WRONGPASS": ("WRONGPASS invalid username-password pair or user is disabled.", True),
    "MAXCLIENTS": ("ERR max number of clients reached", True),
    "MOVED": ("MOVED 3999 127.0.0.1:6381", False),
    "ASK": ("ASK 3999 127.0.0.1:6381", False),
    "TRYAGAIN": ("TRYAGAIN Multiple keys request during rehashing of slot", False),
    "CLUSTERDOWN": ("CLUSTERDOWN The cluster is down", True),
    "MASTERDOWN": (
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        True,
    ),
    "BUSY": (
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        False,
    ),
    "NOPERM": ("NOPERM User default has no permissions to run the 'set' command", False),
}
"""Error replies by name: the text a real server sends, and whether redis-py takes it for a
lost connection (then the Redis backend raises ``BackendUnavailableError`` and opens its
breaker) rather than a refused command (``BackendCommandError``: the server answered)."""

OPERATION_COMMANDS = {
    "get": ("GET", "MGET"),
    "get_many": ("MGET",),
    "put": ("SET", "MSET"),
    "put_many": ("SET", "MSET"),
}
"""The Redis commands an operation name in ``Fault(on=...)`` stands for. A server cannot tell
a put from a batch (a batch with an expiry is one ``SET ... EX`` per key), so "put" and
"put_many" both mean every write; "get" every read, "get_many" the batches (``MGET``)."""

CALL_COMMANDS = {"get": "GET", "get_many": "MGET", "put": "SET", "put_many": "MSET"}
"""The command each operation of the Redis backend sends (in-process calls match by it)."""


def _plain(value: Any) -> str:
    if isinstance(value, type):
        return value.__qualname__  # an exception class, as the test imports it
    return repr(value)


class _Term:
    """A word of the language: a frozen dataclass whose repr leaves out defaults."""

    kind: ClassVar[str]

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.default is dataclasses.MISSING:  # required: given by position
                parts.append(_plain(value))
            elif value != field.default:
                parts.append(f"{field.name}={_plain(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_data(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"type": name, field: value...}``."""
        data: dict[str, Any] = {"type": type(self).__name__}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.default is dataclasses.MISSING or value != field.default:
                data[field.name] = _to_json_value(value)
        return data


def _to_json_value(value: Any) -> Any:
    if isinstance(value, type) and issubclass(value, BaseException):
        if "<locals>" in value.__qualname__:
            raise ValueError(
                f"{value.__qualname__} is defined inside a function: JSON cannot name it "
                "(define the exception class at a module's top level)"
            )
        return f"{value.__module__}:{value.__qualname__}"
    if isinstance(value, tuple):
        return list(value)
    return value


def _check_seconds(name: str, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Expected {name} in seconds (a number) but got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = ">" if positive else ">="
        raise ValueError(f"Expected {name} {bound} 0 and finite but got {name}={value!r}")


def _check_count(name: str, value: Any, *, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} as a whole number but got {value!r}")
    if value < least:
        raise ValueError(f"Expected {name} >= {least} but got {name}={value!r}")


# -- what a fault does ---------------------------------------------------------------------


class Action(_Term):
    """What a fault does to a call it matches. ``layers``: where it can be simulated."""

    layers: ClassVar[tuple[str, ...]] = LAYERS


@dataclasses.dataclass(frozen=True, repr=False)
class Raise(Action):
    """Raise ``error`` (an exception class, called with a message) from the call."""

    error: type[BaseException]
    layers: ClassVar[tuple[str, ...]] = ("in-process",)

    def __post_init__(self) -> None:
        if not (isinstance(self.error, type) and issubclass(self.error, Exception)):
            raise TypeError(
                f"Expected an exception class (an Exception: a call raises it) but got "
                f"error={self.error!r}"
            )


@dataclasses.dataclass(frozen=True, repr=False)
class Reply(Action):
    """The server answers with an error reply: a name of ``REPLIES`` ("OOM", "READONLY"...)
    or the whole reply ("ERR something")."""

    error: str

    def __post_init__(self) -> None:
        if not isinstance(self.error, str) or not self.error.strip():
            raise TypeError(f"Expected a reply name or text but got error={self.error!r}")
        if "\r" in self.error or "\n" in self.error:
            raise ValueError(f"An error reply is one line, but got error={self.error!r}")

    @property
    def text(self) -> str:
        """The reply a server sends (without the leading ``-``)."""
        known = REPLIES.get(self.error)
        return known[0] if known is not None else self.error

    @property
    def drops_the_connection(self) -> bool:
        """Whether the Redis backend takes this reply for a lost connection (its breaker
        opens): as the installed redis-py parses it, else as ``REPLIES`` says."""
        return isinstance(self.error_for("get"), BackendUnavailableError)

    def error_for(self, operation: str, key: str | None = None) -> BackendError:
        """What the Redis backend raises when a standalone server answers ``operation`` so:
        the error the installed redis-py parses the reply into, translated as the backend
        translates it (without redis-py, ``REPLIES``'s verdict)."""
        return _reply_error(self.text, operation, key)


def _reply_error(text: str, operation: str, key: str | None) -> BackendError:
    message = f"simulated: the server replied -{text} ({operation})"
    try:
        from redis.connection import DefaultParser
    except ImportError:
        code = text.split(" ", 1)[0]
        transport = any(
            known == text or (code == name and code != "ERR")
            for name, (known, lost) in REPLIES.items()
            if lost
        )
        fallback: type[BackendError] = BackendUnavailableError if transport else BackendCommandError
        return fallback(message, backend="simulated", operation=operation, key=key)
    from remote_cache._redis.errors import translate_redis_error

    parsed = DefaultParser(socket_read_size=65536).parse_error(text)  # type: ignore[no-untyped-call]
    error = translate_redis_error(parsed, backend="simulated", operation=operation, key=key)
    kind = type(error) if error is not None else BackendCommandError
    return kind(message, backend="simulated", operation=operation, key=key)


@dataclasses.dataclass(frozen=True, repr=False)
class Hang(Action):
    """The server never answers: the call ends at its deadline, a timeout.

    As a fault's ``direction``: "both" and "upstream", the request never reaches the server
    (nothing is done); "downstream", the server does the work and its answer is lost.
    """


@dataclasses.dataclass(frozen=True, repr=False)
class Latency(Action):
    """The answer comes ``seconds`` late, give or take ``jitter`` (drawn from the seed).

    As a fault's ``direction``: "upstream" delays the request on its way (at the proxy, a put
    slower than the deadline is stored when it arrives, after the client gave up; in-process
    and on fakeredis, at once), "downstream" and "both" the answer.
    """

    seconds: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        _check_seconds("seconds", self.seconds)
        _check_seconds("jitter", self.jitter)

    def delay(self, rng: random.Random) -> float:
        """This call's delay: ``seconds`` moved by up to ``jitter`` either way, never below 0."""
        if not self.jitter:
            return float(self.seconds)
        return max(0.0, self.seconds + rng.uniform(-self.jitter, self.jitter))


@dataclasses.dataclass(frozen=True, repr=False)
class Drip(Action):
    """The bytes flow at ``bytes_per_second`` (a slow link): the reply's, or the request's
    with ``direction="upstream"``."""

    bytes_per_second: int
    layers: ClassVar[tuple[str, ...]] = ("proxy",)

    def __post_init__(self) -> None:
        _check_count("bytes_per_second", self.bytes_per_second)


@dataclasses.dataclass(frozen=True, repr=False)
class HalfReply(Action):
    """Part of the reply arrives, then the connection is reset; with
    ``direction="upstream"``, part of the request (the server never runs it)."""

    layers: ClassVar[tuple[str, ...]] = ("proxy",)


@dataclasses.dataclass(frozen=True, repr=False)
class Refuse(Action):
    """The connection is refused (nothing listens, or a firewall rejects it)."""


@dataclasses.dataclass(frozen=True, repr=False)
class Corrupt(Action):
    """A value read comes back damaged (its bytes changed), as a bad disk or a bug would."""

    layers: ClassVar[tuple[str, ...]] = ("in-process",)


@dataclasses.dataclass(frozen=True, repr=False)
class Truncate(Action):
    """A value read comes back cut short (half its bytes)."""

    layers: ClassVar[tuple[str, ...]] = ("in-process",)


@dataclasses.dataclass(frozen=True, repr=False)
class DropPut(Action):
    """A put is acknowledged and not stored (an overloaded or lying store)."""

    layers: ClassVar[tuple[str, ...]] = ("in-process",)


@dataclasses.dataclass(frozen=True, repr=False)
class Stale(Action):
    """A get returns the value stored before the last put of its key (a lagging replica)."""

    layers: ClassVar[tuple[str, ...]] = ("in-process",)


# -- when it does it -------------------------------------------------------------------------


class When(_Term):
    """Which of the calls a fault matches it fires on (counted per fault, from 1)."""

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        """Whether it fires on the ``n``-th matching call, ``seconds`` after the schedule was
        applied, ``sent`` bytes into the connection (the proxy's count; 0 elsewhere)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, repr=False)
class Always(When):
    """Every matching call."""

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return True


@dataclasses.dataclass(frozen=True, repr=False)
class Nth(When):
    """The ``n``-th matching call only."""

    n: int

    def __post_init__(self) -> None:
        _check_count("n", self.n)

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return n == self.n


@dataclasses.dataclass(frozen=True, repr=False)
class FirstN(When):
    """The first ``n`` matching calls."""

    n: int

    def __post_init__(self) -> None:
        _check_count("n", self.n)

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return n <= self.n


@dataclasses.dataclass(frozen=True, repr=False)
class Every(When):
    """Every ``k``-th matching call: the k-th, the 2k-th..."""

    k: int

    def __post_init__(self) -> None:
        _check_count("k", self.k)

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return n % self.k == 0


@dataclasses.dataclass(frozen=True, repr=False)
class Calls(When):
    """The matching calls numbered ``start`` up to, not including, ``stop``."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        _check_count("start", self.start)
        _check_count("stop", self.stop, least=self.start + 1)  # an empty window never fires

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return self.start <= n < self.stop


@dataclasses.dataclass(frozen=True, repr=False)
class Chance(When):
    """Each matching call with probability ``p``, drawn from the schedule's seed."""

    p: float

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, int | float):
            raise TypeError(f"Expected a probability (a number) but got p={self.p!r}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"Expected 0 <= p <= 1 but got p={self.p!r}")

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return rng.random() < self.p


@dataclasses.dataclass(frozen=True, repr=False)
class During(When):
    """Matching calls made from ``start`` up to ``stop`` seconds after the schedule was
    applied, by the process's clock (``remote_cache_clock`` moves it)."""

    start: float
    stop: float

    def __post_init__(self) -> None:
        _check_seconds("start", self.start)
        _check_seconds("stop", self.stop)
        if self.stop < self.start:
            raise ValueError(f"Expected start <= stop but got During({self.start}, {self.stop})")

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return self.start <= seconds < self.stop


@dataclasses.dataclass(frozen=True, repr=False)
class AfterBytes(When):
    """Once ``n`` bytes have passed on the connection (the proxy counts them)."""

    n: int

    def __post_init__(self) -> None:
        _check_count("n", self.n, least=0)

    def fires(self, n: int, rng: random.Random, seconds: float, sent: int) -> bool:
        return sent >= self.n


# -- a fault, a schedule -------------------------------------------------------------------

DIRECTIONS = ("both", "upstream", "downstream")
"""A byte fault's direction: both ways, towards the server, towards the client."""

DIRECTED = (Hang, Latency, Drip, HalfReply)
"""The actions a link does to bytes, which take a ``direction``; the others are answers."""


@dataclasses.dataclass(frozen=True, repr=False)
class Fault(_Term):
    """``does`` to the calls it matches, ``when`` they come.

    It matches a call whose Redis command is named by ``on``: "get" (every read), "put"
    (every write), "get_many" (batch reads), or commands ("GET", "SET", "MGET", "MSET"...;
    see ``OPERATION_COMMANDS``); None: any. And whose key matches the
    glob ``key`` (the backend's key, ``pt2:<cache id>::<key>:c1``), whose cache id matches
    ``cache`` (a glob), on cluster node ``node`` (the proxy's ``node``). ``direction``
    ("upstream": the request, "downstream": the answer) narrows what ``Hang``, ``Latency``,
    ``Drip`` and ``HalfReply`` act on; see each.
    """

    does: Action
    on: str | tuple[str, ...] | None = None
    key: str | None = None
    cache: str | None = None
    node: int | None = None
    direction: str = "both"
    when: When = Always()

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


_TERMS: dict[str, type[_Term]] = {}


def _register(*classes: type[_Term]) -> None:
    for cls in classes:
        _TERMS[cls.__name__] = cls


_seed: int | None = None
_started: list[Schedule] = []
_NOTHING: list[tuple[Fault, random.Random]] = []
"""What ``decide`` returns when no fault fires (never changed)."""
_MEMO_SIZE = 4096
"""Single-key calls whose matching faults a schedule remembers (then it forgets them all)."""


def current_seed() -> int:
    """The seed a schedule made without one takes: the test's (``--remote-cache-seed``, or
    drawn for each test by the pytest plugin), else 0 outside a test."""
    return 0 if _seed is None else _seed


def begin_test(seed: int | None) -> None:
    """Start a test: its seed for new schedules (None: 0), and no schedule started yet."""
    global _seed  # noqa: PLW0603 - the running test's, set by the pytest plugin
    _seed = seed
    _started.clear()


def started_schedules() -> list[Schedule]:
    """The schedules started since ``begin_test`` (each once, in order)."""
    unique: list[Schedule] = []
    for schedule in _started:
        if all(schedule is not seen for seen in unique):
            unique.append(schedule)
    return unique


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
        self._matching: dict[tuple[str, str], tuple[int, ...]] = {}
        self._reset()

    def start(self) -> None:
        """Begin again: counts, draws, the log and the clock (``During``) from zero.

        A layer starts the schedules it applies; the pytest plugin reports the schedules
        started during a test that failed (``started_schedules``).
        """
        if _seed is not None:  # inside a test of the plugin's
            _started.append(self)
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
        self, command: str, keys: Sequence[str], *, sent: int = 0, node: int | None = None
    ) -> list[tuple[Fault, random.Random]]:
        """The faults that fire on a call sending Redis ``command`` (``CALL_COMMANDS`` names
        the in-process operations') on ``keys``, each with its random stream; logged. ``sent``:
        the bytes the connection has relayed (``AfterBytes``); ``node``: the cluster node
        the call goes to (a fault with ``node=`` matches only that one).

        ``ReenteredError`` for a call made while this thread is deciding (a signal handler).
        """
        if len(keys) == 1 and node is None:
            return self.decide_key(command, keys[0], sent=sent)
        matching = self._match(command, keys, node)
        return self._fire(matching, command, keys, sent) if matching else []

    def decide_key(
        self, command: str, key: str, *, sent: int = 0
    ) -> list[tuple[Fault, random.Random]]:
        """``decide`` for a call on one key, on no node: which faults match that command and
        key is remembered, so that a call no fault matches costs a dictionary lookup."""
        memo_key = (command, key)
        matching = self._matching.get(memo_key)
        if matching is None:
            matching = self._match(command, (key,), None)
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

    def _match(self, command: str, keys: Sequence[str], node: int | None) -> tuple[int, ...]:
        """The indexes of the faults whose command, keys and node match a call's."""
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
            if faults[index].node in (None, node) and faults[index].matches_keys(keys)
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


def _fault_data(fault: Fault) -> dict[str, Any]:
    data = fault.to_data()
    data["does"] = fault.does.to_data()
    if "when" in data:
        data["when"] = fault.when.to_data()
    return data


def _term_from_data(data: Any, expected: type[_Term]) -> Any:
    """Rebuild a term from its ``to_data``; ``ValueError`` naming the problem."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(
            f"Expected {{'type': ..., ...}} for a {expected.__name__} but got {data!r}"
        )
    cls = _TERMS.get(data["type"])
    if cls is None or not issubclass(cls, expected):
        raise ValueError(f"unknown {expected.__name__} type {data['type']!r}")
    fields = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    arguments: dict[str, Any] = {}
    for name, given in data.items():
        if name == "type":
            continue
        if name not in fields:
            raise ValueError(f"{cls.__name__} has no field {name!r}")
        arguments[name] = _field_from_data(cls, name, given)
    try:
        return cls(**arguments)
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: {exc}") from exc


def _field_from_data(cls: type[_Term], name: str, given: Any) -> Any:
    """One field's value from JSON: terms rebuilt, exception classes imported, lists as tuples."""
    if name == "does":
        return _term_from_data(given, Action)
    if name == "when":
        return _term_from_data(given, When)
    if name == "error" and cls is Raise:
        return _exception_class(given)
    if name == "on" and isinstance(given, list):
        return tuple(given)
    return given


def _exception_class(path: Any) -> type[BaseException]:
    """The exception class named ``module.Name`` (builtins by their name alone)."""
    import builtins
    import importlib

    if not isinstance(path, str) or not path:
        raise ValueError(f"Expected an exception class's name (module:Class) but got {path!r}")
    if ":" in path:  # module:Qualified.Name, as to_json writes it
        module_name, _, qualname = path.partition(":")
    else:  # module.Name, or a builtin's bare name
        module_name, _, qualname = path.rpartition(".")
    try:
        found: Any = importlib.import_module(module_name) if module_name else builtins
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"no exception class {path!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"{path!r} is not an exception class")
    return found


_register(
    Raise, Reply, Hang, Latency, Drip, HalfReply, Refuse, Corrupt, Truncate, DropPut, Stale,
    Always, Nth, FirstN, Every, Calls, Chance, During, AfterBytes, Fault,
)  # fmt: skip
