"""Redis backend settings: arguments, then REMOTE_CACHE_*, then TORCHINDUCTOR_*."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar
from urllib.parse import unquote, unquote_plus, urlsplit

from remote_cache.exceptions import ConfigurationError

__all__ = [
    "MAX_EXPIRE",
    "NEVER",
    "UNSET",
    "RedisSettings",
    "RedisUrl",
    "parse_redis_url",
    "redact_url",
    "resolve_max_value_bytes",
    "resolve_redis_settings",
    "url_secrets",
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


MAX_EXPIRE: Final = (2**63 - 1) // 1000 - 4_102_444_800
"""The largest ``expire`` accepted, in seconds: Redis refuses ``SET ... EX n`` when ``n``
milliseconds added to the server's clock overflow a signed 64-bit integer; this leaves room
for clocks up to the year 2100."""

_HIDDEN: Final = "***"
_USERINFO = re.compile(r"(?:[^/?#@\[\]%\x00-\x1f\x7f]|%[0-9A-Fa-f]{2})*")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
_AMBIGUOUS = frozenset("/?#=&")
_PERCENT_ENCODE = (
    "percent-encode / ? # @ [ ] % and control characters in a user name or password (%2F for /)"
)


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``(prefix, userinfo or None, rest)``: the user part is what precedes the last ``@``.

    Works on any text, valid URL or not, so that redaction never depends on a parse that a
    password holding ``/ # ? @`` can fool (``urlsplit`` cuts the authority at the first of them).
    """
    marker = url.find("://")
    prefix_end = marker + 3 if marker >= 0 else 0
    at = url.rfind("@", prefix_end)
    if at < 0:
        return url[:prefix_end], None, url[prefix_end:]
    return url[:prefix_end], url[prefix_end:at], url[at + 1 :]


def _hidden_userinfo(prefix: str, userinfo: str) -> tuple[str, str | None]:
    """``(what to show of the user part, the secret in it)``."""
    user, has_password, password = userinfo.partition(":")
    if not prefix or _AMBIGUOUS.intersection(user):
        return _HIDDEN, userinfo  # the user cannot be told apart from a password: hide it all
    if has_password:
        return f"{user}:{_HIDDEN}", password
    return user, None


def redact_url(url: str) -> str:
    """Return ``url`` with any password (in the user part or the query) replaced by ``***``.

    Robust to any text, a valid URL or not: where the user name cannot be told apart from
    the password, both are hidden, so the result may hide more than the password, never less.
    """
    prefix, userinfo, rest = _split_userinfo(_QUERY_SECRET.sub(rf"\1{_HIDDEN}", url))
    if userinfo is None:
        return prefix + rest
    shown, _ = _hidden_userinfo(prefix, userinfo)
    return f"{prefix}{shown}@{rest}"


def url_secrets(url: str) -> list[str]:
    """Every form of the passwords in ``url`` (as written and decoded), longest first.

    For scrubbing messages that may quote them (a client library's error, say): robust to
    ``/ # ? @ %`` in a password, percent-encoded or not. Empty when there is no password.
    """
    found: set[str] = set()
    prefix, userinfo, _ = _split_userinfo(url)
    candidates = [match[2] for match in _QUERY_SECRET.finditer(url)]
    if userinfo is not None:
        candidates.append(_hidden_userinfo(prefix, userinfo)[1] or "")
    for candidate in candidates:
        found.update((candidate, unquote(candidate), unquote_plus(candidate)))
    found.discard("")
    return sorted(found, key=len, reverse=True)


@dataclasses.dataclass(frozen=True)
class RedisUrl:
    """A parsed and validated ``redis://``, ``rediss://`` or ``unix://`` URL.

    ``username`` and ``password`` are decoded; ``options`` are the query's (decoded), each
    checked. The repr never shows the password.
    """

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    """The socket file of a ``unix://`` URL."""
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    options: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def is_unix(self) -> bool:
        """Whether the server is reached through a unix socket."""
        return self.scheme == "unix"


def _is_bool(value: str) -> bool:
    return value.lower() in ("0", "1", "true", "false", "yes", "no")


def _is_whole(minimum: int) -> Callable[[str], bool]:
    return lambda value: value.isascii() and value.isdigit() and int(value) >= minimum


def _is_seconds(value: str) -> bool:
    try:
        seconds = float(value)
    except ValueError:
        return False
    return math.isfinite(seconds) and seconds > 0


def _is_text(_value: str) -> bool:
    return True


_OPTION_CHECKS: Final[dict[str, tuple[Callable[[str], bool], str]]] = {
    "db": (_is_whole(0), "a whole number >= 0"),
    "socket_timeout": (_is_seconds, "seconds greater than 0"),
    "socket_connect_timeout": (_is_seconds, "seconds greater than 0"),
    "socket_keepalive": (_is_bool, "one of 0, 1, true, false, yes, no"),
    "retry_on_timeout": (_is_bool, "one of 0, 1, true, false, yes, no"),
    "max_connections": (_is_whole(1), "a whole number >= 1"),
    "health_check_interval": (_is_whole(0), "a whole number >= 0"),
    "protocol": (lambda value: value in ("2", "3"), "2 or 3"),
    "client_name": (_is_text, "text"),
    "username": (_is_text, "text"),
    "password": (_is_text, "text"),
    "ssl_cert_reqs": (
        lambda value: value in ("none", "optional", "required"),
        "none, optional or required",
    ),
    "ssl_check_hostname": (_is_bool, "one of 0, 1, true, false, yes, no"),
    "ssl_ca_certs": (_is_text, "a file"),
    "ssl_ca_path": (_is_text, "a folder"),
    "ssl_certfile": (_is_text, "a file"),
    "ssl_keyfile": (_is_text, "a file"),
    "ssl_password": (_is_text, "text"),
}
"""The query options redis-py's clients accept, and what each must be."""

_QUERY_SECRET = re.compile(
    rf"([?&](?:ssl_)?password=)(.*?)(?=&(?:{'|'.join(_OPTION_CHECKS)})=|\Z)",
    re.IGNORECASE | re.DOTALL,
)
"""A password in the query: up to the next known option, so a raw ``&`` or ``#`` in it is
hidden too."""

_NOT_FOR_SCHEME: Final = {
    "redis": frozenset(name for name in _OPTION_CHECKS if name.startswith("ssl_")),
    "rediss": frozenset[str](),
    "unix": frozenset(
        {"socket_keepalive", *(name for name in _OPTION_CHECKS if name.startswith("ssl_"))}
    ),
}


def _options(query: str, scheme: str) -> tuple[dict[str, str], str | None]:
    """The query's options, or the reason it is not valid."""
    options: dict[str, str] = {}
    if not query:
        return options, None
    for field in query.split("&"):
        raw_name, has_value, raw_value = field.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if name not in _OPTION_CHECKS or name in _NOT_FOR_SCHEME[scheme]:
            known = ", ".join(n for n in _OPTION_CHECKS if n not in _NOT_FOR_SCHEME[scheme])
            return options, f"query option {name!r} is not one of {known}"
        if name in options:
            return options, f"query option {name!r} is given twice"
        check, expected = _OPTION_CHECKS[name]
        if not has_value or not check(value):
            shown = _HIDDEN if "password" in name else repr(value)
            return options, f"query option {name}={shown}: expected {expected}"
        options[name] = value
    return options, None


def _parse_address(scheme: str, address: str) -> tuple[str | None, int | None, str | None, int]:
    """``(host, port, path, db)`` from what follows the user part; ``ValueError`` says why not."""
    if scheme == "unix":
        path = unquote(address)
        if not address.startswith("/") or len(path) < 2 or "\x00" in path:
            raise ValueError("expected unix:///path/to/redis.sock (an absolute path)")
        return None, None, path, 0
    authority, slash, path = address.partition("/")
    if authority.startswith("["):
        host, bracket, port_text = authority.partition("]")
        host += bracket
        if port_text and not port_text.startswith(":"):
            raise ValueError(f"expected {scheme}://host:port/db")
        has_port, port_text = bool(port_text), port_text[1:]
    else:
        host, has_port_separator, port_text = authority.partition(":")
        has_port = bool(has_port_separator)
    if not host:
        raise ValueError(f"the host is missing (expected {scheme}://host:port/db)")
    if not _HOST.fullmatch(host):
        raise ValueError(f"the host {host!r} is not a host name or address")
    port: int | None = None
    if has_port:
        if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
            raise ValueError(f"the port {port_text!r} is not a whole number from 1 to 65535")
        port = int(port_text)
    db = 0
    if slash and path:
        if not (path.isascii() and path.isdigit()):
            raise ValueError(f"the database {path!r} is not a whole number >= 0")
        db = int(path)
    return host.strip("[]"), port, None, db


def parse_redis_url(url: str, *, name: str = "url") -> RedisUrl:
    """Parse and check a Redis URL; ``ConfigurationError`` naming ``name`` when it is not valid.

    Accepts ``redis://[[user]:password@]host[:port][/db][?option=value...]``, the same with
    ``rediss://`` (TLS), and ``unix://[[user]:password@]/path/to/socket[?option=value...]``.
    A password holding ``/ ? # @ [ ]`` or ``%`` must be percent-encoded. The error message
    shows the URL with its password hidden.
    """
    scheme, separator, _ = url.partition("://")
    if not separator or scheme not in URL_SCHEMES:
        raise _bad_url(name, url, "it must start with redis://, rediss:// or unix://")
    if any(set(match[2]) & set("&#") for match in _QUERY_SECRET.finditer(url)):
        raise _bad_url(name, url, "percent-encode & and # in a password in the query (%26, %23)")
    _, userinfo, rest = _split_userinfo(url)
    if "#" in rest:
        raise _bad_url(name, url, f"it has a #fragment; {_PERCENT_ENCODE}")
    address, _, query = rest.partition("?")
    username = password = None
    if userinfo is not None:
        if not _USERINFO.fullmatch(userinfo):
            raise _bad_url(name, url, f"the user part is not valid; {_PERCENT_ENCODE}")
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    try:
        host, port, path, db = _parse_address(scheme, address)
    except ValueError as exc:
        raise _bad_url(name, url, str(exc)) from None
    options, problem = _options(query, scheme)
    if problem is not None:
        raise _bad_url(name, url, problem)
    if "db" in options:
        db = int(options["db"])
    try:  # what redis-py will do with it: e.g. NFKC-normalised non-ASCII that hides a "/"
        urlsplit(url).port  # noqa: B018 - parsed for its ValueError
    except ValueError:
        raise _bad_url(name, url, f"Python's URL parser refuses it; {_PERCENT_ENCODE}") from None
    return RedisUrl(scheme, host, port, path, db, username, password, options)


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


def _bad(name: str, value: str, expected: str) -> ConfigurationError:
    shown = redact_url(value) if "url" in name.lower() else value
    return ConfigurationError(
        f"{name}={shown!r} is not valid: expected {expected}", name=name, value=shown
    )


def _bad_url(name: str, url: str, reason: str) -> ConfigurationError:
    shown = redact_url(url)
    return ConfigurationError(
        f"{name}={shown!r} is not a valid Redis URL: {reason}", name=name, value=shown
    )


def _parse_url(name: str, value: str) -> str:
    parse_redis_url(value, name=name)
    return value


def _parse_host(name: str, value: str) -> str:
    if not _HOST.fullmatch(value) and not _HOST.fullmatch(f"[{value}]"):
        raise _bad(name, value, "a host name or address (a URL goes in REMOTE_CACHE_REDIS_URL)")
    return value.strip("[]")


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
    if not 0 < expire <= MAX_EXPIRE:
        raise _bad(name, value, f"whole seconds from 1 to {MAX_EXPIRE} (Redis' limit)")
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
    settings = RedisSettings(
        url=resolved_url,
        host=_resolve(host, "host", env, "REDIS_HOST", _parse_host, DEFAULT_HOST),
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
    if settings.cluster and settings.url is not None and settings.url.startswith("unix:"):
        raise ConfigurationError(
            f"cluster=True needs a redis:// or rediss:// URL, not {redact_url(settings.url)!r}",
            name="cluster",
            value=True,
        )
    return settings
