"""Hiding secrets: ``redact_url`` (a URL or any text with its passwords as ``***``),
``url_secrets`` (every form a password may take in a message) and ``scrub``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

from remote_cache._settings.passwords import HIDDEN, query_secrets, user_secret
from remote_cache._settings.urls import InvalidUrlError, parse_url

__all__ = ["redact_url", "scrub", "url_secrets"]


def _is_valid(url: str) -> bool:
    """Whether ``parse_redis_url`` accepts ``url`` and its user part is beyond doubt.

    A ``unix://`` URL whose socket path holds an ``@`` (``unix:///:pw@/run/redis.sock``, a
    user part written one slash too late) is valid, but is read as any other text when
    hiding: what precedes the ``@`` may be a password.
    """
    try:
        parsed = parse_url(url)
    except InvalidUrlError:
        return False
    return not (parsed.is_unix and "@" in (parsed.path or ""))


def _hidden_spans(url: str) -> list[tuple[int, int]]:
    """Every part of ``url`` to hide, sorted, overlapping ones merged."""
    spans = [(secret.start, secret.end) for secret in query_secrets(url)]
    user = user_secret(url, valid=_is_valid(url))
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
        shown += [url[position:start], HIDDEN]
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
        user = user_secret(url, valid=valid)
        if user is not None:
            hidden = url[user[0] : user[1]]
            candidates += [hidden, hidden.partition(":")[2]]  # all of it, and past a user name
    for secret in query_secrets(url):
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
        text = text.replace(secret, HIDDEN)
    return text
