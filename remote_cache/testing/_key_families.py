"""The key families that broken backends make collide, as data: read by ``check_keys``
(every key of every family) and by the Hypothesis strategies (pairs from one family), so
that the properties and the state machine meet the same collisions on every seed."""

from __future__ import annotations

__all__ = ["LONGEST_KEY", "key_families"]

LONGEST_KEY = 1024
"""The longest key ``check_keys`` writes by default, in characters (up to 4 KiB of UTF-8)."""


def key_families(longest: int = LONGEST_KEY) -> list[tuple[str, list[str]]]:
    """Families of distinct keys that broken backends make collide, each with its name.

    Case folding, Unicode normalisation (NFC, NFD, NFKC), truncation (at 250 bytes and
    elsewhere, up to ``longest`` characters), non-ASCII mangling, stripped NUL, whitespace
    and separators, and cache prefixes (``pt2:<cache id>::``).
    """
    cut = "k" * 249
    return [
        (
            "case",
            [
                "cache-key",
                "CACHE-KEY",
                "Cache-Key",
                "straße",
                "STRASSE",
                "strasse",
                "ǆ",
                "ǅ",
                "Ǆ",
                "i",
                "I",
                "İ",
                "\u0131",
                "ABCDEF0123",
                "abcdef0123",
            ],
        ),
        (
            "Unicode normalisation",
            [
                "caf\u00e9",
                "cafe\u0301",
                "\u00c5",
                "\u212b",
                "A\u030a",
                "\ufb01le",
                "file",
                "\uff21",
                "A",
                "\ud55c",
                "\u1112\u1161\u11ab",
                "\u1e9b\u0323",
                "\u017f\u0323\u0307",
            ],
        ),
        (
            "length",
            [
                cut,
                f"{cut}a",
                f"{cut}b",
                f"{cut}ab",
                f"{cut}ac",
                "k" * 255 + "a",
                "k" * 255 + "b",
                "k" * 256,
                "é" * 125 + "a",
                "é" * 125 + "b",
                "k" * (longest - 1) + "a",
                "k" * (longest - 1) + "b",
                "é" * (longest - 1) + "a",
                "é" * (longest - 1) + "b",
                "🚀" * longest,
                "🚀" * (longest - 1) + "x",
            ],
        ),
        (
            "non-ASCII",
            [
                "xé",
                "xe",
                "x?",
                "x\ufffd",
                "x",
                "xü",
                "xu",
                "x日本",
                "x??",
                "x🚀",
                "x\ud800",
                "x\\ud800",
                "x\udc80",
                "x\\udc80",
                "x\\xed\\xa0\\x80",
                "x\ud800\udc00",
                "x\U00010000",
                "x\x80",
                "x\u00c3\u00a9",
            ],
        ),
        (
            "NUL, whitespace and separators",
            [
                "k",
                "k\x00",
                "k\x00\x00",
                "\x00k",
                "k ",
                " k",
                "k\n",
                "k\t",
                "k\r\n",
                "a/b",
                "a\\b",
                "a_b",
                "a:b",
                "a%2Fb",
                "..",
                ".",
                "a/../b",
                "b",
                "a b",
                "a+b",
            ],
        ),
        (
            "separators and escapes",
            [
                "a,b",
                "a;b",
                "a|b",
                "a,b,c",
                "a,",
                ",a",
                "a%2Cb",
                "a%2cb",
                "a%252Cb",
                "a%3Bb",
                "a%7Cb",
                "a%25b",
                "a%b",
                "a%%b",
                "%61",
                "a",
                "a\\,b",
                "a\\;b",
                "a\\\\b",
                "a&b",
                "a=b",
                "a?b",
                "a#b",
                "a%23b",
                "a\\u002cb",
            ],
        ),
        (
            "short checksums",
            [  # pairs, each colliding under one 32-bit checksum of its UTF-8
                "pt2:graphs::key-8599939",  # crc32
                "pt2:graphs::key-10020006",
                "pt2:graphs::key-120",  # adler32
                "pt2:graphs::key-201",
                "pt2:graphs::key-99314",  # md5, first 8 hex digits
                "pt2:graphs::key-114856",
                "pt2:graphs::key-2099",  # sha1, first 8 hex digits
                "pt2:graphs::key-10449",
                "pt2:graphs::key-58147",  # sha256, first 8 hex digits
                "pt2:graphs::key-72865",
                "pt2:graphs::key-16627",  # blake2b, 4-byte digest
                "pt2:graphs::key-99963",
            ],
        ),
        (
            "cache prefix",
            [
                "pt2:graphs::h:c1",
                "pt2:aot::h:c1",
                "pt2:graphs2::h:c1",
                "pt2:graphs::h:c2",
                "pt2:graphs:h:c1",
                "h:c1",
                "h",
            ],
        ),
    ]
