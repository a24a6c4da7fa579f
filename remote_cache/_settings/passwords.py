"""Where the passwords are in a URL or in any text: what redaction hides and what the URL
parser checks. Nothing here parses a URL; the spans are found in the text as written."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Final
from urllib.parse import unquote, unquote_plus

from remote_cache._settings.options import OPTION_CHECKS

__all__ = [
    "HIDDEN",
    "QuerySecret",
    "after_scheme",
    "authority_end",
    "is_secret_name",
    "query_secrets",
    "user_secret",
]

HIDDEN: Final = "***"
_AMBIGUOUS = frozenset("/?#=&@")

_NEXT_OPTION = re.compile(rf"&(?:{'|'.join(OPTION_CHECKS)})=")
"""The start of the next known option written plainly: where a password in the query ends
in any text, so that a raw ``&`` or ``#`` in it is hidden too."""


def after_scheme(text: str) -> int:
    """Where the text after ``scheme://`` starts (0 when there is no ``://``)."""
    marker = text.find("://")
    return marker + 3 if marker >= 0 else 0


def authority_end(text: str, start: int) -> int:
    """Where the authority that starts at ``start`` ends: at the first ``/ ? #`` (RFC 3986)."""
    ends = [index for index in (text.find(mark, start) for mark in "/?#") if index >= 0]
    return min(ends, default=len(text))


def is_secret_name(raw_name: str) -> bool:
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
class QuerySecret:
    """A password option found in any text: what to hide, and where its value starts."""

    start: int
    """Where the hidden part starts: after ``password=``, or at the option's name when the
    name is not written plainly (it may be percent-encoded or hold the secret itself)."""
    value_start: int
    end: int
    field_end: int
    """The next ``&`` (or the end): where urllib's ``parse_qs`` ends the value."""


def query_secrets(text: str) -> list[QuerySecret]:
    """The password options in ``text`` (a URL or not), each recognised by its decoded name.

    A value runs to the next ``&`` that starts a known option written plainly, or to the end,
    so that a raw ``& #`` in a password is hidden too.
    """
    found: list[QuerySecret] = []
    for delimiter in re.finditer(r"[?&]", text):
        start = delimiter.end()
        field_end = text.find("&", start)
        field_end = len(text) if field_end < 0 else field_end
        raw_name, has_value, _ = text[start:field_end].partition("=")
        if not is_secret_name(raw_name):
            continue
        value_start = start + len(raw_name) + 1 if has_value else start
        shown_name = has_value and raw_name.lower() in OPTION_CHECKS
        next_option = _NEXT_OPTION.search(text, value_start)
        end = next_option.start() if next_option else len(text)
        found.append(QuerySecret(value_start if shown_name else start, value_start, end, field_end))
    return found


def user_secret(text: str, *, valid: bool) -> tuple[int, int] | None:
    """Where the password of the user part is in ``text``, or None when it has none.

    For a valid URL, the user part is what precedes the last ``@`` of the authority (RFC 3986,
    as urllib reads it). For any other text it is what precedes the last ``@`` anywhere, so
    that a raw ``/ ? # @`` in a password never shows; where the user name cannot be told apart
    from the password, the whole user part is hidden.
    """
    start = after_scheme(text)
    if valid:
        at = text.rfind("@", start, authority_end(text, start))
        colon = text.find(":", start, at) if at >= 0 else -1
        return (colon + 1, at) if colon >= 0 else None
    at = text.rfind("@", start)
    if at < 0:
        return None
    user, has_password, _ = text[start:at].partition(":")
    if not start or _AMBIGUOUS.intersection(user):
        return start, at  # the user cannot be told apart from a password: hide it all
    return (start + len(user) + 1, at) if has_password else None
