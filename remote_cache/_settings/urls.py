"""Reading a Redis URL: ``RedisUrl``, the parser that says why a URL is not valid, the
query option checks it applies, and ``canonical_url``.

``parse_redis_url``, which turns the reason into a ``ConfigurationError`` with the password
hidden, is in ``values.py``: hiding needs ``redaction.py``, which needs this parser.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote, unquote_plus, urlsplit

from remote_cache._settings.options import ASCII_WHOLE, NOT_FOR_SCHEME, OPTION_CHECKS
from remote_cache._settings.passwords import (
    HIDDEN,
    authority_end,
    is_secret_name,
    query_secrets,
)

__all__ = [
    "HOST_PATTERN",
    "URL_SCHEMES",
    "InvalidUrlError",
    "RedisUrl",
    "canonical_url",
    "parse_url",
]

URL_SCHEMES: Final = ("redis", "rediss", "unix")
_USERINFO = re.compile(r"(?:[^/?#@\[\]%\x00-\x1f\x7f]|%[0-9A-Fa-f]{2})*")
HOST_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PERCENT_ENCODE = (
    "percent-encode / ? # @ [ ] % and control characters in a user name or password (%2F for /)"
)
_UNCLEAR_USER_PART = (
    "the user part, or what follows it, is not valid (an @ follows the first / ? or #, so "
    f"where the user part ends is unclear); {_PERCENT_ENCODE}"
)


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


class InvalidUrlError(ValueError):
    """Why a URL is not valid; the reason never quotes a piece that may be a password."""


def _shown_option_name(name: str, *, has_value: bool) -> str:
    """An unknown option's name, quoted unless it may hold a password (``password:s3cret``)."""
    if re.fullmatch(r"[A-Za-z0-9_.-]*", name) and (has_value or not is_secret_name(name)):
        return repr(name)
    return "(not shown: it may hold a password)"


def _options(query: str, scheme: str) -> dict[str, str]:
    """The query's options, decoded as redis-py decodes them; ``InvalidUrlError`` if not valid."""
    options: dict[str, str] = {}
    if not query:
        return options
    for field in query.split("&"):
        name, has_value, raw_value = field.partition("=")
        if "%" in name or "+" in name:
            raise InvalidUrlError(
                "a query option's name is percent-encoded or holds +: write option names "
                "as they are (password=..., db=...)"
            )
        value = unquote_plus(raw_value)
        if name not in OPTION_CHECKS or name in NOT_FOR_SCHEME[scheme]:
            known = ", ".join(n for n in OPTION_CHECKS if n not in NOT_FOR_SCHEME[scheme])
            shown_name = _shown_option_name(name, has_value=bool(has_value))
            raise InvalidUrlError(f"query option {shown_name} is not one of {known}")
        if name in options:
            raise InvalidUrlError(f"query option {name!r} is given twice")
        check, expected = OPTION_CHECKS[name]
        if not has_value or not check(value):
            shown = HIDDEN if "password" in name else repr(value)
            raise InvalidUrlError(f"query option {name}={shown}: expected {expected}")
        options[name] = value
    return options


def _parse_address(scheme: str, host_and_port: str, path: str) -> tuple[str, int | None, int]:
    """``(host, port, db)`` of a ``redis://`` or ``rediss://`` URL; ``InvalidUrlError`` if not."""
    if host_and_port.startswith("["):
        host, bracket, port_text = host_and_port.partition("]")
        host += bracket
        if port_text and not port_text.startswith(":"):
            raise InvalidUrlError(f"expected {scheme}://host:port/db")
        has_port, port_text = bool(port_text), port_text[1:]
    else:
        host, has_port_separator, port_text = host_and_port.partition(":")
        has_port = bool(has_port_separator)
    if not host:
        raise InvalidUrlError(f"the host is missing (expected {scheme}://host:port/db)")
    if not HOST_PATTERN.fullmatch(host):
        raise InvalidUrlError(f"the host {host!r} is not a host name or address")
    port: int | None = None
    if has_port:
        if not (ASCII_WHOLE.fullmatch(port_text) and 1 <= int(port_text) <= 65535):
            raise InvalidUrlError(f"the port {port_text!r} is not a whole number from 1 to 65535")
        port = int(port_text)
    db = 0
    if path[1:]:
        if not ASCII_WHOLE.fullmatch(path[1:]):
            raise InvalidUrlError(f"the database {path[1:]!r} is not a whole number >= 0")
        db = int(path[1:])
    return host.strip("[]"), port, db


def _parse_parts(scheme: str, userinfo: str | None, host_and_port: str, rest: str) -> RedisUrl:
    """The URL from its parts, split as RFC 3986 splits them; ``InvalidUrlError`` if not."""
    if "#" in rest:
        raise InvalidUrlError(f"it has a #fragment; {_PERCENT_ENCODE}")
    path, _, query = rest.partition("?")
    username = password = None
    if userinfo is not None:
        if not _USERINFO.fullmatch(userinfo):
            raise InvalidUrlError(f"the user part is not valid; {_PERCENT_ENCODE}")
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
            raise InvalidUrlError("expected unix:///path/to/redis.sock (an absolute path)")
    else:
        host, port, db = _parse_address(scheme, host_and_port, path)
    options = _options(query, scheme)
    for name, given in (("username", username), ("password", password)):
        if given is not None and name in options:  # redis-py would drop the query's silently
            raise InvalidUrlError(f"the {name} is given twice: in the user part and as ?{name}=")
    if "db" in options:
        db = int(options["db"])
    return RedisUrl(scheme, host, port, socket, db, username, password, options)


def parse_url(url: str) -> RedisUrl:
    """``parse_redis_url`` without the name: ``InvalidUrlError`` says why not."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()  # RFC 3986: a scheme is case-insensitive
    if not separator or scheme not in URL_SCHEMES:
        raise InvalidUrlError("it must start with redis://, rediss:// or unix://")
    if _CONTROL.search(url):
        raise InvalidUrlError(f"it holds a control character; {_PERCENT_ENCODE}")
    if any(set(url[secret.value_start : secret.end]) & set("&#") for secret in query_secrets(url)):
        raise InvalidUrlError("percent-encode & and # in a password in the query (%26, %23)")
    start = len(scheme) + 3
    end_of_authority = authority_end(url, start)
    userinfo, at, host_and_port = url[start:end_of_authority].rpartition("@")
    rest = url[end_of_authority:]
    try:
        parsed = _parse_parts(scheme, userinfo if at else None, host_and_port, rest)
    except InvalidUrlError:
        if "@" in rest:  # a raw / ? # in a password may have ended the user part early
            raise InvalidUrlError(_UNCLEAR_USER_PART) from None
        raise
    try:  # what redis-py will do with it: e.g. NFKC-normalised non-ASCII that hides a "/"
        urlsplit(url).port  # noqa: B018 - parsed for its ValueError
    except ValueError:
        raise InvalidUrlError(f"Python's URL parser refuses it; {_PERCENT_ENCODE}") from None
    return parsed


def canonical_url(url: str) -> str:
    """``url`` with its scheme in lower case (RFC 3986: the same URL), the rest untouched."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme.lower()}{separator}{rest}" if separator else url
