"""The words of the fault language: what a fault does (``Action``) and when (``When``).

Each word is a frozen dataclass whose ``repr`` is the Python that builds it and whose
``to_data`` is its JSON (``_fault_json`` reads it back). ``faults`` builds faults and
schedules of these words and re-exports them: import them from there.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, ClassVar

from remote_cache import (
    BackendCommandError,
    BackendError,
    BackendUnavailableError,
)

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
