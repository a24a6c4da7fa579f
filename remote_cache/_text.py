"""Text from outside (a server's keys and replies) made safe to show on a terminal or in a log."""

from __future__ import annotations

import re

__all__ = ["printable"]

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 (CR, LF, ESC, BEL, ...), DEL, C1 (CSI, OSC, NEL, ...)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates: a UTF-8 stream cannot even write them
)
_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = _NAMED_ESCAPES.get(character)
    if named is not None:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe to show on a terminal, on one line: control characters escaped visibly.

    C0 controls (``\\r``, ``\\n``, ``\\t``, ``\\x1b``, ...), DEL, C1 controls, the bidi
    marks and overrides, U+2028/U+2029 and lone surrogates become escapes (``\\x1b``,
    ``\\u202e``), so text from a server (keys, cache ids, error replies) can neither steer
    the terminal nor start a new line. Everything else, non-ASCII letters included, is kept.
    """
    return _UNSAFE.sub(_escape, text)
