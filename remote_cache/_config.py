"""Redis backend settings: arguments, then REMOTE_CACHE_*, then TORCHINDUCTOR_*."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
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
    "scrub",
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_AMBIGUOUS = frozenset("/?#=&@")
_PERCENT_ENCODE = (
    "percent-encode / ? # @ [ ] % and control characters in a user name or password (%2F for /)"
)
_UNCLEAR_USER_PART = (
    "the user part, or what follows it, is not valid (an @ follows the first / ? or #, so "
    f"where the user part ends is unclear); {_PERCENT_ENCODE}"
)
_ASCII_WHOLE = re.compile(r"[0-9]+")
_ASCII_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _after_scheme(text: str) -> int:
    """Where the text after ``scheme://`` starts (0 when there is no ``://``)."""
    marker = text.find("://")
    return marker + 3 if marker >= 0 else 0


def _authority_end(text: str, start: int) -> int:
    """Where the authority that starts at ``start`` ends: at the first ``/ ? #`` (RFC 3986)."""
    ends = [index for index in (text.find(mark, start) for mark in "/?#") if index >= 0]
    return min(ends, default=len(text))


def _is_secret_name(raw_name: str) -> bool:
    """Whether a query option's name, as written, may name a password once decoded.

    Decodes as urllib and redis-py would (tabs and newlines dropped, ``+`` as a space,
    percent-escapes; and once more), folds case and compatibility forms and drops every
    character that is not a letter, digit or ``_``: generous, so it may hide more, never less.
    """
    name = re.sub(r"[\t\r\n]", "", raw_name)
    once = unquote_plus(name)
    for form in (name, once, unquote(once)):
        folded = unicodedata.normalize("NFKC", form).casefold()
        if "password" in re.sub(r"\W", "", folded):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class _QuerySecret:
    """A password option found in any text: what to hide, and where its value starts."""

    start: int
    """Where the hidden part starts: after ``password=``, or at the option's name when the
    name is not written plainly (it may be percent-encoded or hold the secret itself)."""
    value_start: int
    end: int
    field_end: int
    """The next ``&`` (or the end): where urllib's ``parse_qs`` ends the value."""


def _query_secrets(text: str) -> list[_QuerySecret]:
    """The password options in ``text`` (a URL or not), each recognised by its decoded name.

    A value runs to the next ``&`` that starts a known option written plainly, or to the end,
    so that a raw ``& #`` in a password is hidden too.
    """
    found: list[_QuerySecret] = []
    for delimiter in re.finditer(r"[?&]", text):
        start = delimiter.end()
        field_end = text.find("&", start)
        field_end = len(text) if field_end < 0 else field_end
        raw_name, has_value, _ = text[start:field_end].partition("=")
        if not _is_secret_name(raw_name):
            continue
        value_start = start + len(raw_name) + 1 if has_value else start
        shown_name = has_value and raw_name.lower() in _OPTION_CHECKS
        next_option = _NEXT_OPTION.search(text, value_start)
        end = next_option.start() if next_option else len(text)
        found.append(
            _QuerySecret(value_start if shown_name else start, value_start, end, field_end)
        )
    return found


def _user_secret(text: str, *, valid: bool) -> tuple[int, int] | None:
    """Where the password of the user part is in ``text``, or None when it has none.

    For a valid URL, the user part is what precedes the last ``@`` of the authority (RFC 3986,
    as urllib reads it). For any other text it is what precedes the last ``@`` anywhere, so
    that a raw ``/ ? # @`` in a password never shows; where the user name cannot be told apart
    from the password, the whole user part is hidden.
    """
    start = _after_scheme(text)
    if valid:
        at = text.rfind("@", start, _authority_end(text, start))
        colon = text.find(":", start, at) if at >= 0 else -1
        return (colon + 1, at) if colon >= 0 else None
    at = text.rfind("@", start)
    if at < 0:
        return None
    user, has_password, _ = text[start:at].partition(":")
    if not start or _AMBIGUOUS.intersection(user):
        return start, at  # the user cannot be told apart from a password: hide it all
    return (start + len(user) + 1, at) if has_password else None


def _is_valid(url: str) -> bool:
    """Whether ``parse_redis_url`` accepts ``url`` and its user part is beyond doubt.

    A ``unix://`` URL whose socket path holds an ``@`` (``unix:///:pw@/run/redis.sock``, a
    user part written one slash too late) is valid, but is read as any other text when
    hiding: what precedes the ``@`` may be a password.
    """
    try:
        parsed = _parse(url)
    except _InvalidUrlError:
        return False
    return not (parsed.is_unix and "@" in (parsed.path or ""))


def _hidden_spans(url: str) -> list[tuple[int, int]]:
    """Every part of ``url`` to hide, sorted, overlapping ones merged."""
    spans = [(secret.start, secret.end) for secret in _query_secrets(url)]
    user = _user_secret(url, valid=_is_valid(url))
    if user is not None:
        spans.append(user)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def redact_url(url: str) -> str:
    """Return ``url`` with any password (in the user part or the query) replaced by ``***``.

    Robust to any text, a valid URL or not. A query option is recognised by its name decoded
    as redis-py decodes it (``%70assword``, ``ssl%5Fpassword``), whatever its case. A valid URL
    is read as urllib reads it (``redis://h/?client_name=build@ci`` is shown as is); in any
    other text, everything up to the last ``@`` is taken as the user part, and where the user
    name cannot be told apart from the password both are hidden: the result may hide more
    than the password, never less.
    """
    shown: list[str] = []
    position = 0
    for start, end in _hidden_spans(url):
        shown += [url[position:start], _HIDDEN]
        position = end
    shown.append(url[position:])
    return "".join(shown)


def _decoded_forms(secret: str) -> set[str]:
    """``secret`` as written and as each client may decode it (redis-py before 5.1 decodes a
    query value twice: ``parse_qs``, then ``unquote``; urllib drops tabs and newlines)."""
    forms = {secret, re.sub(r"[\t\r\n]", "", secret)}
    for form in list(forms):
        once, plain = unquote_plus(form), unquote(form)
        forms |= {once, plain, unquote(once), unquote(plain)}
    return forms


def url_secrets(url: str) -> list[str]:
    """Every form of the passwords in ``url`` (as written and decoded), longest first.

    For scrubbing messages that may quote them (a client library's error, say): robust to
    ``/ # ? @ %`` in a password, percent-encoded or not, and to option names percent-encoded;
    each is given as written, decoded once and decoded twice. Empty when there is no password.
    """
    candidates = [url[start:end] for start, end in _hidden_spans(url)]
    # A valid URL is read as urllib reads it; other text, both ways (the user part up to the
    # last @ of the authority, or of the whole text).
    for valid in (True,) if _is_valid(url) else (True, False):
        user = _user_secret(url, valid=valid)
        if user is not None:
            hidden = url[user[0] : user[1]]
            candidates += [hidden, hidden.partition(":")[2]]  # all of it, and past a user name
    for secret in _query_secrets(url):
        candidates += [
            url[secret.value_start : secret.end],
            url[secret.value_start : secret.field_end],
        ]
    found: set[str] = set()
    for candidate in candidates:
        found |= _decoded_forms(candidate)
    found.discard("")
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` (``url_secrets``: longest first) as ``***``."""
    for secret in secrets:
        text = text.replace(secret, _HIDDEN)
    return text


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
    return lambda value: bool(_ASCII_WHOLE.fullmatch(value)) and int(value) >= minimum


def _is_seconds(value: str) -> bool:
    seconds = _ascii_number(value)
    return seconds is not None and math.isfinite(seconds) and seconds > 0


def _ascii_whole(value: str) -> int | None:
    """``value`` as a whole number written in ASCII digits, else None.

    ``int`` alone would also take ``'٣'`` (any Unicode digit), ``'1_0'``, ``' 5 '`` and ``'+5'``.
    """
    return int(value) if _ASCII_WHOLE.fullmatch(value) else None


def _ascii_number(value: str) -> float | None:
    """``value`` as a number written in ASCII (``2``, ``2.5``, ``.5``, ``1e-05``), else None.

    ``float`` alone would also take Unicode digits, ``'1_0'``, ``' 5 '``, ``'nan'`` and ``'inf'``.
    """
    return float(value) if _ASCII_DECIMAL.fullmatch(value) else None


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

_NEXT_OPTION = re.compile(rf"&(?:{'|'.join(_OPTION_CHECKS)})=")
"""The start of the next known option written plainly: where a password in the query ends
in any text, so that a raw ``&`` or ``#`` in it is hidden too."""

_NOT_FOR_SCHEME: Final = {
    "redis": frozenset(name for name in _OPTION_CHECKS if name.startswith("ssl_")),
    "rediss": frozenset[str](),
    "unix": frozenset(
        {"socket_keepalive", *(name for name in _OPTION_CHECKS if name.startswith("ssl_"))}
    ),
}


class _InvalidUrlError(ValueError):
    """Why a URL is not valid; the reason never quotes a piece that may be a password."""


def _shown_option_name(name: str, *, has_value: bool) -> str:
    """An unknown option's name, quoted unless it may hold a password (``password:s3cret``)."""
    if re.fullmatch(r"[A-Za-z0-9_.-]*", name) and (has_value or not _is_secret_name(name)):
        return repr(name)
    return "(not shown: it may hold a password)"


def _options(query: str, scheme: str) -> dict[str, str]:
    """The query's options, decoded as redis-py decodes them; ``_InvalidUrlError`` if not valid."""
    options: dict[str, str] = {}
    if not query:
        return options
    for field in query.split("&"):
        name, has_value, raw_value = field.partition("=")
        if "%" in name or "+" in name:
            raise _InvalidUrlError(
                "a query option's name is percent-encoded or holds +: write option names "
                "as they are (password=..., db=...)"
            )
        value = unquote_plus(raw_value)
        if name not in _OPTION_CHECKS or name in _NOT_FOR_SCHEME[scheme]:
            known = ", ".join(n for n in _OPTION_CHECKS if n not in _NOT_FOR_SCHEME[scheme])
            shown_name = _shown_option_name(name, has_value=bool(has_value))
            raise _InvalidUrlError(f"query option {shown_name} is not one of {known}")
        if name in options:
            raise _InvalidUrlError(f"query option {name!r} is given twice")
        check, expected = _OPTION_CHECKS[name]
        if not has_value or not check(value):
            shown = _HIDDEN if "password" in name else repr(value)
            raise _InvalidUrlError(f"query option {name}={shown}: expected {expected}")
        options[name] = value
    return options


def _parse_address(scheme: str, host_and_port: str, path: str) -> tuple[str, int | None, int]:
    """``(host, port, db)`` of a ``redis://`` or ``rediss://`` URL; ``_InvalidUrlError`` if not."""
    if host_and_port.startswith("["):
        host, bracket, port_text = host_and_port.partition("]")
        host += bracket
        if port_text and not port_text.startswith(":"):
            raise _InvalidUrlError(f"expected {scheme}://host:port/db")
        has_port, port_text = bool(port_text), port_text[1:]
    else:
        host, has_port_separator, port_text = host_and_port.partition(":")
        has_port = bool(has_port_separator)
    if not host:
        raise _InvalidUrlError(f"the host is missing (expected {scheme}://host:port/db)")
    if not _HOST.fullmatch(host):
        raise _InvalidUrlError(f"the host {host!r} is not a host name or address")
    port: int | None = None
    if has_port:
        if not (_ASCII_WHOLE.fullmatch(port_text) and 1 <= int(port_text) <= 65535):
            raise _InvalidUrlError(f"the port {port_text!r} is not a whole number from 1 to 65535")
        port = int(port_text)
    db = 0
    if path[1:]:
        if not _ASCII_WHOLE.fullmatch(path[1:]):
            raise _InvalidUrlError(f"the database {path[1:]!r} is not a whole number >= 0")
        db = int(path[1:])
    return host.strip("[]"), port, db


def _parse_parts(scheme: str, userinfo: str | None, host_and_port: str, rest: str) -> RedisUrl:
    """The URL from its parts, split as RFC 3986 splits them; ``_InvalidUrlError`` if not."""
    if "#" in rest:
        raise _InvalidUrlError(f"it has a #fragment; {_PERCENT_ENCODE}")
    path, _, query = rest.partition("?")
    username = password = None
    if userinfo is not None:
        if not _USERINFO.fullmatch(userinfo):
            raise _InvalidUrlError(f"the user part is not valid; {_PERCENT_ENCODE}")
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = (unquote(secret) if has_password else None) or None
    host: str | None = None
    port: int | None = None
    socket: str | None = None
    db = 0
    if scheme == "unix":
        socket = unquote(path)
        if host_and_port or not path.startswith("/") or len(socket) < 2 or "\x00" in socket:
            raise _InvalidUrlError("expected unix:///path/to/redis.sock (an absolute path)")
    else:
        host, port, db = _parse_address(scheme, host_and_port, path)
    options = _options(query, scheme)
    for name, given in (("username", username), ("password", password)):
        if given is not None and name in options:  # redis-py would drop the query's silently
            raise _InvalidUrlError(f"the {name} is given twice: in the user part and as ?{name}=")
    if "db" in options:
        db = int(options["db"])
    return RedisUrl(scheme, host, port, socket, db, username, password, options)


def _parse(url: str) -> RedisUrl:
    """``parse_redis_url`` without the name: ``_InvalidUrlError`` says why not."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()  # RFC 3986: a scheme is case-insensitive
    if not separator or scheme not in URL_SCHEMES:
        raise _InvalidUrlError("it must start with redis://, rediss:// or unix://")
    if _CONTROL.search(url):
        raise _InvalidUrlError(f"it holds a control character; {_PERCENT_ENCODE}")
    if any(set(url[secret.value_start : secret.end]) & set("&#") for secret in _query_secrets(url)):
        raise _InvalidUrlError("percent-encode & and # in a password in the query (%26, %23)")
    start = len(scheme) + 3
    authority_end = _authority_end(url, start)
    userinfo, at, host_and_port = url[start:authority_end].rpartition("@")
    rest = url[authority_end:]
    try:
        parsed = _parse_parts(scheme, userinfo if at else None, host_and_port, rest)
    except _InvalidUrlError:
        if "@" in rest:  # a raw / ? # in a password may have ended the user part early
            raise _InvalidUrlError(_UNCLEAR_USER_PART) from None
        raise
    try:  # what redis-py will do with it: e.g. NFKC-normalised non-ASCII that hides a "/"
        urlsplit(url).port  # noqa: B018 - parsed for its ValueError
    except ValueError:
        raise _InvalidUrlError(f"Python's URL parser refuses it; {_PERCENT_ENCODE}") from None
    return parsed


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
        return _parse(url)
    except _InvalidUrlError as exc:
        raise _bad_url(name, url, str(exc)) from None


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


def canonical_url(url: str) -> str:
    """``url`` with its scheme in lower case (RFC 3986: the same URL), the rest untouched."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme.lower()}{separator}{rest}" if separator else url


def _parse_url(name: str, value: str) -> str:
    parse_redis_url(value, name=name)
    return canonical_url(value)


def _parse_host(name: str, value: str) -> str:
    if not _HOST.fullmatch(value) and not _HOST.fullmatch(f"[{value}]"):
        raise _bad(name, value, "a host name or address (a URL goes in REMOTE_CACHE_REDIS_URL)")
    return value.strip("[]")


def _parse_port(name: str, value: str) -> int:
    port = _ascii_whole(value) or 0
    if not 1 <= port <= 65535:
        raise _bad(name, value, "a whole number from 1 to 65535")
    return port


def _parse_expire(name: str, value: str) -> int:
    expire = _ascii_whole(value) or 0
    if not 0 < expire <= MAX_EXPIRE:
        raise _bad(name, value, f"whole seconds from 1 to {MAX_EXPIRE} (Redis' limit)")
    return expire


def _parse_size(name: str, value: str) -> int:
    size = _ascii_whole(value) or 0
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
    seconds = _ascii_number(value)
    if seconds is None:
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
        shown = redact_url(repr(value))  # a list or bytes holding a URL keeps its password
        raise ConfigurationError(
            f"Expected str or number but got {name}={shown} (type={type(value).__name__})",
            name=name,
            value=shown,
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
