"""Redis backend settings: arguments, then REMOTE_CACHE_*, then TORCHINDUCTOR_*.

Holds ``RedisSettings``, the defaults, the ``UNSET`` sentinel, the lookup of the variables
and ``resolve_redis_settings`` / ``resolve_max_value_bytes``; each value is checked by
``values.py``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from remote_cache._settings.redaction import redact_url
from remote_cache._settings.values import (
    check_argument,
    parse_cluster,
    parse_expire,
    parse_host,
    parse_port,
    parse_retry_after,
    parse_size,
    parse_timeout,
    parse_url_setting,
)
from remote_cache.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_TIMEOUT",
    "NEVER",
    "UNSET",
    "RedisSettings",
    "Unset",
    "resolve_max_value_bytes",
    "resolve_redis_settings",
]

_V = TypeVar("_V")


class Unset:
    """Type of ``UNSET``: an argument that was not passed (None may be a real value)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset()
"""Marks an argument that was not passed, so that the environment decides."""

NEVER: Final = None
"""``retry_after=NEVER``: once the server failed, never try it again (upstream's behaviour)."""

DEFAULT_HOST: Final = "localhost"
DEFAULT_PORT: Final = 6379
DEFAULT_TIMEOUT: Final = 1.0
DEFAULT_RETRY_AFTER: Final = 30.0
_DEFAULT_RETRY_AFTER_OR_NEVER: float | None = DEFAULT_RETRY_AFTER


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
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = self.redacted_url or f"redis://{host}:{self.port}"
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


def resolve_max_value_bytes(
    argument: int | Unset | None = UNSET, *, environ: Mapping[str, str] | None = None
) -> int | None:
    """The largest encoded value a cache stores: the argument (None: no limit), else
    ``REMOTE_CACHE_MAX_VALUE_BYTES``, else no limit. ``ConfigurationError`` when invalid."""
    if argument is None:
        return None
    if argument is not UNSET:
        return check_argument("max_value_bytes", argument, parse_size)
    env = os.environ if environ is None else environ
    value = env.get("REMOTE_CACHE_MAX_VALUE_BYTES", "").strip()
    return parse_size("REMOTE_CACHE_MAX_VALUE_BYTES", value) if value else None


def _resolve(  # noqa: PLR0917 - private helper, called positionally in one place
    argument: object,
    argument_name: str,
    environ: Mapping[str, str],
    suffix: str,
    parse: Callable[[str, str], _V],
    default: _V,
) -> _V:
    if argument is not UNSET:
        return check_argument(argument_name, argument, parse)
    found = _lookup(environ, suffix)
    if found is None:
        return default
    return parse(*found)


def resolve_redis_settings(
    *,
    url: str | Unset | None = UNSET,
    host: str | Unset = UNSET,
    port: int | Unset = UNSET,
    expire: int | Unset | None = UNSET,
    cluster: bool | Unset = UNSET,
    timeout: float | Unset = UNSET,
    retry_after: float | Unset | None = UNSET,
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
        resolved_url = check_argument("url", url, parse_url_setting)
    elif url is None or explicit_address:
        resolved_url = None
    else:
        found = _lookup(env, "REDIS_URL")
        resolved_url = parse_url_setting(*found) if found else None
    settings = RedisSettings(
        url=resolved_url,
        host=_resolve(host, "host", env, "REDIS_HOST", parse_host, DEFAULT_HOST),
        port=_resolve(port, "port", env, "REDIS_PORT", parse_port, DEFAULT_PORT),
        expire=(
            None
            if expire is None
            else _resolve(expire, "expire", env, "REDIS_EXPIRE", parse_expire, None)
        ),
        cluster=_resolve(cluster, "cluster", env, "REDIS_CLUSTER", parse_cluster, False),
        timeout=_resolve(timeout, "timeout", env, "REDIS_TIMEOUT", parse_timeout, DEFAULT_TIMEOUT),
        retry_after=(
            NEVER
            if retry_after is None
            else _resolve(
                retry_after,
                "retry_after",
                env,
                "REDIS_RETRY_AFTER",
                parse_retry_after,
                _DEFAULT_RETRY_AFTER_OR_NEVER,
            )
        ),
    )
    if settings.cluster and settings.url is not None and settings.url.startswith("unix:"):
        raise ConfigurationError(
            f"cluster=True needs a redis:// or rediss:// URL, not {redact_url(settings.url)!r}",
            name="cluster",
            value=True,
        )
    return settings
