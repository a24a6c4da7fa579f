"""The query options redis-py's clients accept, what each must be, and readers of numbers
written in ASCII (a URL's port and database, a setting's seconds and sizes)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Final

__all__ = [
    "ASCII_WHOLE",
    "NOT_FOR_SCHEME",
    "OPTION_CHECKS",
    "ascii_number",
    "ascii_whole",
]

ASCII_WHOLE: Final = re.compile(r"[0-9]+")
_ASCII_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _is_bool(value: str) -> bool:
    return value.lower() in ("0", "1", "true", "false", "yes", "no")


def _is_whole(minimum: int) -> Callable[[str], bool]:
    return lambda value: bool(ASCII_WHOLE.fullmatch(value)) and int(value) >= minimum


def _is_seconds(value: str) -> bool:
    seconds = ascii_number(value)
    return seconds is not None and math.isfinite(seconds) and seconds > 0


def ascii_whole(value: str) -> int | None:
    """``value`` as a whole number written in ASCII digits, else None.

    ``int`` alone would also take ``'٣'`` (any Unicode digit), ``'1_0'``, ``' 5 '`` and ``'+5'``.
    """
    return int(value) if ASCII_WHOLE.fullmatch(value) else None


def ascii_number(value: str) -> float | None:
    """``value`` as a number written in ASCII (``2``, ``2.5``, ``.5``, ``1e-05``), else None.

    ``float`` alone would also take Unicode digits, ``'1_0'``, ``' 5 '``, ``'nan'`` and ``'inf'``.
    """
    return float(value) if _ASCII_DECIMAL.fullmatch(value) else None


def _is_text(_value: str) -> bool:
    return True


OPTION_CHECKS: Final[dict[str, tuple[Callable[[str], bool], str]]] = {
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

NOT_FOR_SCHEME: Final = {
    "redis": frozenset(name for name in OPTION_CHECKS if name.startswith("ssl_")),
    "rediss": frozenset[str](),
    "unix": frozenset(
        {"socket_keepalive", *(name for name in OPTION_CHECKS if name.startswith("ssl_"))}
    ),
}
"""The options each scheme refuses: TLS ones without TLS, keepalive on a unix socket."""
