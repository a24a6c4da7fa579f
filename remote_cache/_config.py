"""Redis backend settings: arguments, then REMOTE_CACHE_*, then TORCHINDUCTOR_*."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from typing import Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from remote_cache.exceptions import ConfigurationError

__all__ = [
    "NEVER",
    "UNSET",
    "RedisSettings",
    "redact_url",
    "resolve_max_value_bytes",
    "resolve_redis_settings",
]

_V = TypeVar("_V")


class _Unset:
    """Type of ``UNSET``: an argument that was not passed (None may be a real value)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()
"""Marks an argument that was not passed, so that the environment decides."""

NEVER: Final = None
"""``retry_after=NEVER``: once the server failed, never try it again (upstream's behaviour)."""

DEFAULT_HOST: Final = "localhost"
DEFAULT_PORT: Final = 6379
DEFAULT_TIMEOUT: Final = 1.0
DEFAULT_RETRY_AFTER: Final = 30.0
URL_SCHEMES: Final = ("redis", "rediss", "unix")
_DEFAULT_RETRY_AFTER_OR_NEVER: float | None = DEFAULT_RETRY_AFTER


def redact_url(url: str) -> str:
    """Return ``url`` with any password (in the user part or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            if has_password:
                netloc = f"{user}:***@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
        # Rebuilt by hand: urlunsplit drops the empty authority of unix:///path.
        redacted = f"{parts.scheme}://{netloc}{parts.path}"
        if query:
            redacted += f"?{query}"
        if parts.fragment:
            redacted += f"#{parts.fragment}"
        return redacted
    except ValueError:
        return "<unparsable URL>"


@dataclasses.dataclass(frozen=True)
class RedisSettings:
    """Where and how the Redis backend connects; built by ``resolve_redis_settings``."""

    url: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    expire: int | None = None
    cluster: bool = False
    timeout: float = DEFAULT_TIMEOUT
    retry_after: float | None = DEFAULT_RETRY_AFTER

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={self._shown(f.name)!r}" for f in dataclasses.fields(self))
        return f"RedisSettings({fields})"

    def _shown(self, name: str) -> object:
        return self.redacted_url if name == "url" else getattr(self, name)

    @property
    def redacted_url(self) -> str | None:
        """The URL with its password replaced by ``***``."""
        return None if self.url is None else redact_url(self.url)

    def describe(self) -> str:
        """A human description of the server, never with a password."""
        where = self.redacted_url or f"redis://{self.host}:{self.port}"
        return f"{where} (cluster)" if self.cluster else where

    def server_identity(self) -> tuple[object, ...]:
        """What identifies one server (or cluster): settings that share it share a breaker."""
        return (self.url, self.host, self.port, self.cluster)


def _lookup(environ: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """Return ``(variable, value)`` of the first non-empty of REMOTE_CACHE_X, TORCHINDUCTOR_X."""
    for prefix in ("REMOTE_CACHE_", "TORCHINDUCTOR_"):
        name = prefix + suffix
        value = environ.get(name, "")
        if value.strip():
            return name, value.strip()
    return None


def _bad(name: str, value: str, expected: str) -> ConfigurationError:
    shown = redact_url(value) if name.endswith("URL") else value
    return ConfigurationError(
        f"{name}={shown!r} is not valid: expected {expected}", name=name, value=shown
    )


def _parse_url(name: str, value: str) -> str:
    try:
        scheme = urlsplit(value).scheme
    except ValueError:
        scheme = ""
    if scheme not in URL_SCHEMES:
        raise _bad(name, value, "a URL starting with redis://, rediss:// or unix://")
    return value


def _parse_port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise _bad(name, value, "a whole number from 1 to 65535")
    return port


def _parse_expire(name: str, value: str) -> int:
    try:
        expire = int(value)
    except ValueError:
        expire = 0
    if expire <= 0:
        raise _bad(name, value, "whole seconds greater than 0")
    return expire


def _parse_size(name: str, value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise _bad(name, value, "a whole number of bytes greater than 0")
    return size


def resolve_max_value_bytes(
    argument: int | _Unset | None = UNSET, *, environ: Mapping[str, str] | None = None
) -> int | None:
    """The largest encoded value a cache stores: the argument (None: no limit), else
    ``REMOTE_CACHE_MAX_VALUE_BYTES``, else no limit. ``ConfigurationError`` when invalid."""
    if argument is None:
        return None
    if argument is not UNSET:
        return _check_argument("max_value_bytes", argument, _parse_size)
    env = os.environ if environ is None else environ
    value = env.get("REMOTE_CACHE_MAX_VALUE_BYTES", "").strip()
    return _parse_size("REMOTE_CACHE_MAX_VALUE_BYTES", value) if value else None


def _parse_cluster(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise _bad(name, value, "one of 0, 1, true, false")


def _parse_seconds(name: str, value: str, *, allow_zero: bool) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise _bad(name, value, "seconds >= 0" if allow_zero else "seconds greater than 0")
    return seconds


def _parse_timeout(name: str, value: str) -> float:
    return _parse_seconds(name, value, allow_zero=False)


def _parse_retry_after(name: str, value: str) -> float | None:
    if value.lower() == "never":
        return None
    return _parse_seconds(name, value, allow_zero=True)


def _check_argument(name: str, value: object, parse: Callable[[str, str], _V]) -> _V:
    """Validate a constructor argument with the same rules as its variable."""
    if isinstance(value, bool) and parse is not _parse_cluster:
        raise ConfigurationError(
            f"Expected a number but got {name}={value!r} (type=bool)", name=name, value=value
        )
    if not isinstance(value, (str, int, float)):
        raise ConfigurationError(
            f"Expected str or number but got {name}={value!r} (type={type(value).__name__})",
            name=name,
            value=value,
        )
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return parse(name, text)


def _resolve(  # noqa: PLR0917 - private helper, called positionally in one place
    argument: object,
    argument_name: str,
    environ: Mapping[str, str],
    suffix: str,
    parse: Callable[[str, str], _V],
    default: _V,
) -> _V:
    if argument is not UNSET:
        return _check_argument(argument_name, argument, parse)
    found = _lookup(environ, suffix)
    if found is None:
        return default
    return parse(*found)


def resolve_redis_settings(
    *,
    url: str | _Unset | None = UNSET,
    host: str | _Unset = UNSET,
    port: int | _Unset = UNSET,
    expire: int | _Unset | None = UNSET,
    cluster: bool | _Unset = UNSET,
    timeout: float | _Unset = UNSET,
    retry_after: float | _Unset | None = UNSET,
    environ: Mapping[str, str] | None = None,
) -> RedisSettings:
    """Resolve each setting: the argument if passed, else the environment, else the default.

    An empty variable counts as unset; only the value that wins is validated. A URL (from an
    argument or either variable) wins over host and port, unless host or port is passed as an
    argument. Raises ``ConfigurationError`` naming the argument or variable for a bad value.
    """
    env = os.environ if environ is None else environ
    explicit_address = host is not UNSET or port is not UNSET
    resolved_url: str | None
    if url is not UNSET and url is not None:
        resolved_url = _check_argument("url", url, _parse_url)
    elif url is None or explicit_address:
        resolved_url = None
    else:
        found = _lookup(env, "REDIS_URL")
        resolved_url = _parse_url(*found) if found else None
    return RedisSettings(
        url=resolved_url,
        host=_resolve(host, "host", env, "REDIS_HOST", lambda _n, v: v, DEFAULT_HOST),
        port=_resolve(port, "port", env, "REDIS_PORT", _parse_port, DEFAULT_PORT),
        expire=(
            None
            if expire is None
            else _resolve(expire, "expire", env, "REDIS_EXPIRE", _parse_expire, None)
        ),
        cluster=_resolve(cluster, "cluster", env, "REDIS_CLUSTER", _parse_cluster, False),
        timeout=_resolve(timeout, "timeout", env, "REDIS_TIMEOUT", _parse_timeout, DEFAULT_TIMEOUT),
        retry_after=(
            NEVER
            if retry_after is None
            else _resolve(
                retry_after,
                "retry_after",
                env,
                "REDIS_RETRY_AFTER",
                _parse_retry_after,
                _DEFAULT_RETRY_AFTER_OR_NEVER,
            )
        ),
    )
