"""Text from outside (a server's keys and replies) made safe to show on a terminal or in a log."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["printable"]

_CANDIDATES = re.compile(r"[\\\x00-\x1f\x7f-\U0010ffff]")
"""A backslash, a C0 control or DEL, or any non-ASCII character (judged by ``_escape``)."""

_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Controls (C0, C1), formats (bidi marks and overrides, zero-width characters, BOM, tags),
lone surrogates, private-use and unassigned code points, line and paragraph separators."""


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = _NAMED_ESCAPES.get(character)
    if named is not None:
        return named
    code = ord(character)
    if code > 0x7F and unicodedata.category(character) not in _HIDDEN_CATEGORIES:
        return character  # a letter, a mark, a symbol, a space of another script
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` safe to show on a terminal, on one line, each character told apart.

    Control characters (``\\r``, ``\\n``, ``\\t``, ``\\x1b``, C1), format characters (bidi
    marks and overrides, zero-width characters, the BOM, tag characters), U+2028/U+2029,
    lone surrogates and private-use or unassigned code points become escapes (``\\x1b``,
    ``\\u202e``), and a backslash is doubled, so an escape is never mistaken for text that
    spells one: text from a server (keys, cache ids, error replies) can neither steer the
    terminal, start a new line, nor pass for other text. Letters of any script are kept.
    """
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return _CANDIDATES.sub(_escape, text)
