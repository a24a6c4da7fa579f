"""Checking one setting's value, given as an argument or a variable: each check returns the
value read, or raises a ``ConfigurationError`` that names the argument or variable and never
shows a password. ``parse_redis_url`` is the check of a URL."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final, TypeVar

from remote_cache._settings.options import ascii_number, ascii_whole
from remote_cache._settings.redaction import redact_url
from remote_cache._settings.urls import (
    HOST_PATTERN,
    InvalidUrlError,
    RedisUrl,
    canonical_url,
    parse_url,
)
from remote_cache.exceptions import ConfigurationError

__all__ = [
    "MAX_EXPIRE",
    "check_argument",
    "parse_cluster",
    "parse_expire",
    "parse_host",
    "parse_port",
    "parse_redis_url",
    "parse_retry_after",
    "parse_size",
    "parse_timeout",
    "parse_url_setting",
]

_V = TypeVar("_V")

MAX_EXPIRE: Final = (2**63 - 1) // 1000 - 4_102_444_800
"""The largest ``expire`` accepted, in seconds: Redis refuses ``SET ... EX n`` when ``n``
milliseconds added to the server's clock overflow a signed 64-bit integer; this leaves room
for clocks up to the year 2100."""


def parse_redis_url(url: str, *, name: str = "url") -> RedisUrl:
    """Parse and check a Redis URL; ``ConfigurationError`` naming ``name`` when it is not valid.

    Accepts ``redis://[[user]:password@]host[:port][/db][?option=value...]``, the same with
    ``rediss://`` (TLS), and ``unix://[[user]:password@]/path/to/socket[?option=value...]``,
    read as urllib (and so redis-py) reads them: the user part ends at the last ``@`` before
    the first ``/ ? #`` after ``://``, so an ``@`` in a query value is fine
    (``?client_name=build@ci``). A user name or password holding ``/ ? # @ [ ]`` or ``%``
    must be percent-encoded, and so must ``&`` and ``#`` in a ``?password=``; option names
    must be written as they are (never percent-encoded), and control characters anywhere
    percent-encoded. The scheme is read as RFC 3986 reads it, in any case (``REDIS://``);
    ``canonical_url`` writes it in lower case, as every redis-py release accepts it.
    The error message shows the URL with its password hidden, and never quotes a piece of
    a URL whose user part may have been cut short by a raw ``/ ? #`` in a password.
    """
    try:
        return parse_url(url)
    except InvalidUrlError as exc:
        raise _bad_url(name, url, str(exc)) from None


def _bad(name: str, value: str, expected: str) -> ConfigurationError:
    # Whatever the variable: a URL with a password put in the wrong one (a host, a port)
    # must not show its password in the message nor in ``.value``.
    shown = redact_url(value)
    return ConfigurationError(
        f"{name}={shown!r} is not valid: expected {expected}", name=name, value=shown
    )


def _bad_url(name: str, url: str, reason: str) -> ConfigurationError:
    shown = redact_url(url)
    return ConfigurationError(
        f"{name}={shown!r} is not a valid Redis URL: {reason}", name=name, value=shown
    )


def parse_url_setting(name: str, value: str) -> str:
    """The URL ``value`` checked (``parse_redis_url``), its scheme in lower case."""
    parse_redis_url(value, name=name)
    return canonical_url(value)


def parse_host(name: str, value: str) -> str:
    if not HOST_PATTERN.fullmatch(value) and not HOST_PATTERN.fullmatch(f"[{value}]"):
        raise _bad(name, value, "a host name or address (a URL goes in REMOTE_CACHE_REDIS_URL)")
    return value.strip("[]")


def parse_port(name: str, value: str) -> int:
    port = ascii_whole(value) or 0
    if not 1 <= port <= 65535:
        raise _bad(name, value, "a whole number from 1 to 65535")
    return port


def parse_expire(name: str, value: str) -> int:
    expire = ascii_whole(value) or 0
    if not 0 < expire <= MAX_EXPIRE:
        raise _bad(name, value, f"whole seconds from 1 to {MAX_EXPIRE} (Redis' limit)")
    return expire


def parse_size(name: str, value: str) -> int:
    size = ascii_whole(value) or 0
    if size <= 0:
        raise _bad(name, value, "a whole number of bytes greater than 0")
    return size


def parse_cluster(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise _bad(name, value, "one of 0, 1, true, false")


def _parse_seconds(name: str, value: str, *, allow_zero: bool) -> float:
    seconds = ascii_number(value)
    if seconds is None:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise _bad(name, value, "seconds >= 0" if allow_zero else "seconds greater than 0")
    return seconds


def parse_timeout(name: str, value: str) -> float:
    return _parse_seconds(name, value, allow_zero=False)


def parse_retry_after(name: str, value: str) -> float | None:
    if value.lower() == "never":
        return None
    return _parse_seconds(name, value, allow_zero=True)


def check_argument(name: str, value: object, parse: Callable[[str, str], _V]) -> _V:
    """Validate a constructor argument with the same rules as its variable."""
    if isinstance(value, bool) and parse is not parse_cluster:
        raise ConfigurationError(
            f"Expected a number but got {name}={value!r} (type=bool)", name=name, value=value
        )
    if not isinstance(value, (str, int, float)):
        shown = redact_url(repr(value))  # a list or bytes holding a URL keeps its password
        raise ConfigurationError(
            f"Expected str or number but got {name}={shown} (type={type(value).__name__})",
            name=name,
            value=shown,
        )
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return parse(name, text)
