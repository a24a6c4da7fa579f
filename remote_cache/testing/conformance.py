"""``check_backend``: the backend contract and property suite for any backend, pytest-free.

``check_backend(make_backend)`` runs everything; the parts are public too, and
``BackendConformance`` turns them into test methods for pytest or unittest.

Deterministic probes come first (values up to ``LARGEST_VALUE`` bytes, key families that
collide when a backend folds case, normalises Unicode, truncates or mangles keys, batches,
overwrites), then concurrent writers (threads, and processes for backends that declare
``shared_between_processes``), then the Hypothesis properties. A violation raises
``AssertionError`` naming the backend, the check, the first failing operation, the key
(shortened when long), what was expected and what came back, and how to replay it.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import functools
import gzip
import json
import logging
import lzma
import multiprocessing
import multiprocessing.connection
import pickle
import random
import sys
import threading
import time
import types
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from hypothesis import given, seed
from hypothesis import strategies as st

from remote_cache import RemoteCacheBackend, RemoteCacheJsonSerde, RemoteCacheSerde
from remote_cache._serde import JsonDataTy
from remote_cache.exceptions import BackendError, ValueTooLargeError
from remote_cache.testing._hypothesis_settings import pick_seed, replayable, suite_settings
from remote_cache.testing._override import isolated_cache_stats
from remote_cache.testing.stateful import run_cache_machine
from remote_cache.testing.strategies import cache_keys, colliding_keys, json_data

__all__ = [
    "LARGEST_VALUE",
    "LONGEST_KEY",
    "MIN_VALUE_LIMIT",
    "BackendConformance",
    "check_backend",
    "check_batches",
    "check_concurrency",
    "check_contract",
    "check_json_serde",
    "check_keys",
    "check_model",
    "check_overwrites",
    "check_stats",
    "check_values",
    "key_families",
]

BackendFactory = Callable[[], RemoteCacheBackend[Any]]
_R = TypeVar("_R")

LARGEST_VALUE = 4 * 1024 * 1024
"""The largest value ``check_values`` writes by default, in bytes (4 MiB)."""

LONGEST_KEY = 1024
"""The longest key ``check_keys`` writes by default, in characters (up to 4 KiB of UTF-8)."""

MIN_VALUE_LIMIT = 64 * 1024
"""The smallest ``max_value_bytes`` a backend may declare: the caches write values this big."""

_MIB = 1024 * 1024
_VALUES = [b"", b"\x00", b"v", bytes(range(256)), b"x" * 1024, b"y" * 1025, b"z" * 200_000]


# -- failure messages -------------------------------------------------------------------------


def _utf8(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def _short(key: object) -> str:
    """``key`` as ``repr``, shortened when long, with its length."""
    if not isinstance(key, str):
        return repr(key)
    # Decomposed text looks like its composed twin: escape it so the two read differently.
    show = ascii if unicodedata.normalize("NFC", key) != key else repr
    if len(key) <= 40:
        return show(key)
    return f"{show(key[:20])}…{show(key[-8:])} ({len(key):,} characters, {len(_utf8(key)):,} bytes)"


def _preview(data: bytes) -> str:
    return repr(data) if len(data) <= 24 else f"{data[:16]!r}…{data[-4:]!r}"


def _describe(value: object) -> str:
    """A value as a failure message shows it: its type when not bytes, its size, its start."""
    if value is None:
        return "None (a miss)"
    if isinstance(value, bytes):
        return f"{len(value):,} bytes {_preview(value)}"
    if isinstance(value, (bytearray, memoryview)):
        raw = bytes(value)
        return f"a {type(value).__name__} (not bytes) of {len(raw):,} bytes {_preview(raw)}"
    if isinstance(value, str):
        return f"a str (not bytes) of {len(value):,} characters {value[:24]!r}"
    if isinstance(value, dict):
        items = list(value.items())
        shown = ", ".join(f"{_short(k)}: {_describe(v)}" for k, v in items[:6])
        more = f", … {len(items) - 6} more" if len(items) > 6 else ""
        return f"{{{shown}{more}}}"
    return f"a {type(value).__name__} {value!r:.60}"


def _name(backend: object) -> str:
    return type(backend).__name__ if isinstance(backend, RemoteCacheBackend) else repr(backend)


def _violation(
    backend: object,
    check: str,
    operation: str,
    *,
    expected: str,
    actual: str,
    replay: str,
    key: str | None = None,
    note: str | None = None,
) -> AssertionError:
    """The failure message every check raises: what, where, expected, actual, how to replay."""
    lines = [f"{_name(backend)}: {check}: {operation}"]
    if key is not None:
        lines.append(f"  key:      {_short(key)}")
    lines.append(f"  expected: {expected}")
    lines.append(f"  actual:   {actual}")
    if note:
        lines.append(f"  {note}")
    lines.append(f"  replay:   {replay}")
    return AssertionError("\n".join(lines))


def _fail(backend: RemoteCacheBackend[Any], message: str) -> None:
    raise AssertionError(f"{type(backend).__name__}: {message}")


def _crash(backend: object, during: str, exc: Exception) -> AssertionError:
    """A backend that raises on valid input violates the contract; say where."""
    return AssertionError(f"{_name(backend)}: {during} raised {type(exc).__name__}: {exc}")


def _call(
    backend: RemoteCacheBackend[Any], during: str, method: Callable[..., _R], *args: Any
) -> _R:
    try:
        return method(*args)
    except Exception as exc:
        raise _crash(backend, during, exc) from exc


def _is(got: object, expected: bytes | None) -> bool:
    """``got`` is exactly ``expected``: None for None, else ``bytes`` (not a subclass) equal."""
    if expected is None:
        return got is None
    return type(got) is bytes and got == expected


class _Probe:
    """One backend under a deterministic check: calls that name the check when they crash."""

    def __init__(self, backend: RemoteCacheBackend[Any], check: str, replay: str) -> None:
        self.backend = backend
        self.check = check
        self.replay = replay
        self.written: dict[bytes, str] = {}
        """Each value written, to the key it was written under: names collisions."""

    def call(self, operation: str, method: Callable[..., _R], *args: Any) -> _R:
        try:
            return method(*args)
        except ValueTooLargeError as exc:
            limit = getattr(self.backend, "max_value_bytes", None)
            raise _violation(
                self.backend,
                self.check,
                f"{operation} raised ValueTooLargeError: {exc}",
                expected="the value stored: the backend declares max_value_bytes="
                + ("None (no limit)" if limit is None else f"{limit:,}"),
                actual="refused",
                note="declare the real limit in max_value_bytes (see docs/backends.md)",
                replay=self.replay,
            ) from exc
        except Exception as exc:
            raise AssertionError(
                f"{_name(self.backend)}: {self.check}: {operation} raised "
                f"{type(exc).__name__}: {exc}\n  replay:   {self.replay}"
            ) from exc

    def put(self, key: str, value: bytes) -> None:
        self.call(f"put({_short(key)}, {len(value):,} bytes)", self.backend.put, key, value)
        self.written[value] = key

    def put_many(self, mapping: Mapping[str, bytes]) -> None:
        self.call(f"put_many({len(mapping)} keys)", self.backend.put_many, mapping)
        for key, value in mapping.items():
            self.written[value] = key

    def _note(self, key: str, got: object, note: str | None) -> str | None:
        if isinstance(got, (bytes, bytearray)) and bytes(got) in self.written:
            other = self.written[bytes(got)]
            if other != key:
                return (
                    f"that is the value written under {_short(other)}: the backend does not "
                    f"keep these keys apart{f' ({note})' if note else ''}"
                )
        return note

    def expect(
        self,
        operation: str,
        key: str,
        got: object,
        expected: bytes | None,
        *,
        note: str | None = None,
    ) -> None:
        if not _is(got, expected):
            raise _violation(
                self.backend,
                self.check,
                operation,
                key=key,
                expected=_describe(expected),
                actual=_describe(got),
                note=self._note(key, got, note),
                replay=self.replay,
            )

    def get(self, key: str, expected: bytes | None, *, after: str = "", note: str = "") -> None:
        operation = f"{after}get({_short(key)})"
        got = self.call(operation, self.backend.get, key)
        self.expect(operation, key, got, expected, note=note or None)

    def get_many(
        self, keys: Sequence[str], expected: Mapping[str, bytes], *, after: str = "", note: str = ""
    ) -> None:
        shown = ", ".join(_short(k) for k in keys[:3]) + (", …" if len(keys) > 3 else "")
        operation = f"{after}get_many([{shown}]) ({len(keys)} keys)"
        found = self.call(operation, self.backend.get_many, keys)
        if not isinstance(found, dict):
            raise _violation(
                self.backend,
                self.check,
                operation,
                expected=f"a dict of the {len(expected)} stored keys",
                actual=_describe(found),
                replay=self.replay,
            )
        for key in keys:
            if key not in expected and key in found:
                raise _violation(
                    self.backend,
                    self.check,
                    operation,
                    key=key,
                    expected="the key left out (it is not stored)",
                    actual=f"the key present with {_describe(found[key])}",
                    note=self._note(key, found[key], note or None),
                    replay=self.replay,
                )
            if key in expected:
                got = found.get(key)
                self.expect(operation, key, got, expected[key], note=note or None)
        extra = [key for key in found if key not in keys]
        if extra:
            raise _violation(
                self.backend,
                self.check,
                operation,
                key=extra[0],
                expected="only keys that were asked for",
                actual=f"a key never asked for, with {_describe(found[extra[0]])}",
                replay=self.replay,
            )


def _deterministic(check: str) -> str:
    return f"{check}(make_backend) (deterministic: the same calls every run)"


def _declared(backend: RemoteCacheBackend[Any], check: str) -> int | None:
    """The backend's ``max_value_bytes``, validated."""
    limit = getattr(backend, "max_value_bytes", None)
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < MIN_VALUE_LIMIT:
        raise AssertionError(
            f"{_name(backend)}: {check}: declares max_value_bytes={limit!r}; it must be None "
            f"or an int of at least {MIN_VALUE_LIMIT:,} (the caches write values that big)"
        )
    return limit


def _pattern(size: int, salt: int = 0) -> bytes:
    """``size`` pseudo-random bytes, different for each size and salt (truncations show)."""
    return random.Random(size * 7919 + salt).randbytes(size)


# -- the contract ---------------------------------------------------------------------------


def check_contract(make_backend: BackendFactory) -> None:
    """Absent keys, falsy and large values, overwrites, batches and isolation, each once."""
    backend = make_backend()
    try:
        _contract(backend, make_backend)
    except AssertionError:
        raise
    except Exception as exc:
        raise _crash(backend, "the contract check", exc) from exc


def _contract(backend: RemoteCacheBackend[Any], make_backend: BackendFactory) -> None:
    probe = _Probe(backend, "check_contract", _deterministic("check_contract"))
    absent = backend.get("absent-key")
    probe.expect("get('absent-key') of a key never written", "absent-key", absent, None)
    for index, value in enumerate(_VALUES):
        key = f"value-{index}"
        backend.put(key, value)
        probe.written[value] = key
        got = backend.get(key)
        if not _is(got, value):
            raise _violation(
                backend,
                "check_contract",
                f"wrote {len(value)} bytes under {key!r}, then get({key!r})",
                key=key,
                expected=_describe(value),
                actual=_describe(got),
                replay=probe.replay,
            )
    backend.put("overwritten", b"first")
    backend.put("overwritten", b"second")
    got = backend.get("overwritten")
    if not _is(got, b"second"):
        raise _violation(
            backend,
            "check_contract",
            "put('overwritten', b'first'), put('overwritten', b'second'), then get: "
            "the second write to a key did not replace the first",
            key="overwritten",
            expected=_describe(b"second"),
            actual=_describe(got),
            replay=probe.replay,
        )
    probe.put_many({"batch-a": b"", "batch-b": b"b"})
    found = backend.get_many(["batch-a", "batch-b", "batch-absent", "batch-a"])
    if not isinstance(found, dict) or set(found) != {"batch-a", "batch-b"}:
        raise _violation(
            backend,
            "check_contract",
            "get_many(['batch-a', 'batch-b', 'batch-absent', 'batch-a']) after "
            "put_many({'batch-a': b'', 'batch-b': b'b'})",
            expected="{'batch-a': b'', 'batch-b': b'b'}, the two stored keys only",
            actual=_describe(found),
            replay=probe.replay,
        )
    probe.expect("get_many([... 'batch-a' ...])", "batch-a", found["batch-a"], b"")
    probe.expect("get_many([... 'batch-b' ...])", "batch-b", found["batch-b"], b"b")
    other = make_backend()  # after the writes: factories may empty a shared server
    seen = other.get("value-2")
    if seen is not None:
        raise _violation(
            backend,
            "check_contract",
            "a second backend from the factory, get('value-2'), written by the first",
            key="value-2",
            expected="None: each backend from the factory starts empty and isolated",
            actual=_describe(seen),
            note="backends from one factory share a store (a class-level or module-level dict?)",
            replay=probe.replay,
        )


# -- values -------------------------------------------------------------------------------------


def _value_sizes(largest: int, limit: int | None) -> list[int]:
    sizes = {0, 1, 2, 255, 256, 1023, 1024, 1025, 65_535, 65_536, 65_537}
    sizes |= {_MIB - 1, _MIB, _MIB + 1, 2 * _MIB, largest}
    if limit is not None:
        sizes |= {limit - 1, limit, limit + 1}
    return sorted(size for size in sizes if 0 <= size <= max(largest, 0))


_SPECIAL_VALUES = [
    b"\x00",
    b"\x00\x00",
    b"a\x00",
    b"a\x00\x00\x00",
    b"\x00a",
    b"a ",
    b" a",
    b"a\n",
    b"a\r\n",
    b"\r\n",
    b"\xff\xfe\xfd",
    b"\xc3\xa9",
    bytes(range(256)),
    bytes(range(255, -1, -1)),
    b"\x00" * 1000,
]

# Values that look compressed, pickled or JSON: a backend that sniffs headers to decide how
# to decode (rather than recording what it did) returns them changed.
_HEADER_VALUES = [
    zlib.compress(b'{"already": "compressed by the caller"}'),
    zlib.compress(b"level 1", 1),
    zlib.compress(b"level 9", 9),
    b"x\x9c",
    b"x\xdanot a stream",
    gzip.compress(b"gzipped by the caller", mtime=0),
    bz2.compress(b"bz2 by the caller"),
    lzma.compress(b"xz by the caller"),
    b"\x28\xb5\x2f\xfd" + b"zstd frame magic",
    b"\x04\x22\x4d\x18" + b"lz4 frame magic",
    b"\xff\x06\x00\x00sNaPpY",
    pickle.dumps({"pickled": [1, 2]}, protocol=0),
    pickle.dumps({"pickled": [1, 2]}, protocol=5),
    b'{"a": 1}',
    b'"a json string"',
    b"null",
    b"[]",
    b"\xef\xbb\xbf{}",
    b"\x1f\x8b",
    b"PK\x03\x04",
    b"\x89PNG\r\n\x1a\n",
    b"\x80\x05N.",
]
_SPECIAL_VALUES += _HEADER_VALUES


def check_values(
    make_backend: BackendFactory, *, largest: int = LARGEST_VALUE, longest: int = LONGEST_KEY
) -> None:
    """Values of every size up to ``largest`` bytes (4 MiB), NUL and whitespace edges, read back.

    Each value must come back as ``bytes`` (not ``str``, ``bytearray`` or a view), equal,
    right after its put and again after all the others. A backend declaring
    ``max_value_bytes`` must store every size up to it and refuse each size above it with
    ``ValueTooLargeError``, leaving nothing under the key (probed when the limit is at most
    ``largest``). Values with compressed, pickled and JSON headers come back unchanged, and
    the largest value allowed (the declared limit, else ``largest``) is also written under
    a key of ``longest`` characters (4 KiB of UTF-8): a limit must hold whatever the key.
    """
    check = "check_values"
    backend = make_backend()
    limit = _declared(backend, check)
    longer = "" if longest == LONGEST_KEY else f", longest={longest}"
    replay = f"check_values(make_backend, largest={largest}{longer}) (deterministic)"
    probe = _Probe(backend, check, replay)
    kept: dict[str, bytes] = {}
    for index, value in enumerate(_SPECIAL_VALUES):
        key = f"special-{index}"
        probe.put(key, value)
        probe.get(key, value, after=f"put({key!r}, {_describe(value)}), then ")
        kept[key] = value
    for size in _value_sizes(largest, limit):
        key = f"size-{size}"
        value = _pattern(size)
        if limit is not None and size > limit:
            _expect_refusal(probe, key, value, limit)
            continue
        probe.put(key, value)
        probe.get(key, value, after=f"put({key!r}, {size:,} bytes), then ")
        kept[key] = value
    long_key = "size-limit-" + "\U0001f680" * max(longest - 11, 1)
    biggest = largest if limit is None else min(limit, largest)
    value = _pattern(biggest, 2)
    probe.put(long_key, value)
    probe.get(
        long_key,
        value,
        after=f"put of the largest value allowed ({biggest:,} bytes) under a key of "
        f"{len(_utf8(long_key)):,} bytes, then ",
        note="a limit that counts the key too must be declared for the longest key",
    )
    kept[long_key] = value
    for key, value in kept.items():
        probe.get(key, value, after="after every value was written, ")
    batch = {f"batch-{size}": _pattern(size, 1) for size in (0, 1025, _MIB + 1) if size <= largest}
    batch = {
        key: value
        for key, value in batch.items()
        if limit is None or len(value) <= limit  # refusals are probed above
    }
    probe.put_many(batch)
    probe.get_many(list(batch), batch, after="put_many of sizes 0, 1,025 and 1 MiB + 1, then ")


def _expect_refusal(probe: _Probe, key: str, value: bytes, limit: int) -> None:
    backend = probe.backend
    size = len(value)
    calls: list[tuple[str, Callable[[], None]]] = [
        (f"put({key!r}, {size:,} bytes)", functools.partial(backend.put, key, value)),
        (
            f"put_many({{{key!r}: {size:,} bytes}})",
            functools.partial(backend.put_many, {key: value}),
        ),
    ]
    for operation, call in calls:
        try:
            call()
        except ValueTooLargeError:
            pass
        except Exception as exc:
            raise _violation(
                backend,
                probe.check,
                operation,
                key=key,
                expected=f"ValueTooLargeError: over the declared max_value_bytes={limit:,}",
                actual=f"{type(exc).__name__}: {exc}",
                replay=probe.replay,
            ) from exc
        else:
            raise _violation(
                backend,
                probe.check,
                operation,
                key=key,
                expected=f"ValueTooLargeError: over the declared max_value_bytes={limit:,}",
                actual="accepted silently",
                note="above its declared limit a backend must refuse loudly, never drop",
                replay=probe.replay,
            )
        probe.get(key, None, after=f"a refused {operation}, then ", note="nothing may be written")


# -- keys -----------------------------------------------------------------------------------------


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


_FAMILY_NOTES = {
    "case": "keys differing only in case (a case-insensitive store?)",
    "Unicode normalisation": "keys differing only in Unicode normalisation (NFC, NFD, NFKC)",
    "length": "keys differing only after a common prefix (are long keys truncated?)",
    "non-ASCII": "keys differing only in non-ASCII characters (mangled when encoded?)",
    "NUL, whitespace and separators": "keys differing in NUL, whitespace or separators",
    "cache prefix": "keys differing only in the cache prefix pt2:<cache id>::, so caches with "
    "different ids would read each other's entries (is the prefix stripped?)",
}


def check_keys(make_backend: BackendFactory, *, longest: int = LONGEST_KEY) -> None:
    """Every key of ``key_families(longest)`` holds its own value, by ``get`` and ``get_many``.

    Catches backends that fold case, normalise Unicode, truncate long keys, mangle
    non-ASCII, strip NUL or whitespace, or drop the cache prefix: the message names the two
    keys that collide. Keys up to ``longest`` characters (1 KiB) are written, each by
    ``put``, then each family by one ``put_many`` into a second backend from the factory.
    """
    check = "check_keys"
    backend = make_backend()
    probe = _Probe(backend, check, f"check_keys(make_backend, longest={longest}) (deterministic)")
    seen: dict[str, str] = {}
    families = key_families(longest)
    for family, keys in families:
        for key in keys:
            if key in seen:
                continue
            seen[key] = family
            value = f"{len(seen)}:{family}:".encode() + _utf8(key)[:40]
            probe.put(key, value)
    values = {key: value for value, key in probe.written.items()}
    for family, keys in families:
        note = _FAMILY_NOTES[family]
        for key in keys:
            probe.get(key, values[key], after=f"put of {len(seen)} distinct keys, then ", note=note)
        probe.get_many(keys, {key: values[key] for key in keys}, note=note)
    absent = [f"{key}-absent" for key in ("cache-key", "k" * longest)]
    probe.get_many(absent, {}, after="keys never written: ")
    # Each family again, by one put_many into a fresh backend: batches keep keys apart too.
    probe = _Probe(make_backend(), check, probe.replay)
    for family, keys in families:
        note = _FAMILY_NOTES[family] + ", in one put_many"
        batch: dict[str, bytes] = {}
        for key in dict.fromkeys(keys):
            batch[key] = f"{len(batch)}:{family}:batch:".encode() + _utf8(key)[:40]
        probe.put_many(batch)
        after = f"put_many of the {len(batch)} keys of the {family} family, then "
        probe.get_many(list(batch), batch, after=after, note=note)
        for key, value in batch.items():
            probe.get(key, value, after=after, note=note)


# -- batches and overwrites -----------------------------------------------------------------------


def check_batches(make_backend: BackendFactory) -> None:
    """``get_many`` returns exactly the stored keys asked for, each with its own value.

    Misses are left out (never ``None``), duplicates and absent keys are mixed in, order is
    shuffled, and batches of 1,200 keys (beyond SQLite's 999 parameters) are read whole.
    """
    check = "check_batches"
    probe = _Probe(make_backend(), check, _deterministic(check))
    stored = {f"batch-{i}": f"value {i}".encode() for i in range(8)}
    stored["batch-empty"] = b""
    probe.put_many(stored)
    probe.get_many([], {})
    probe.get_many(["batch-absent"], {})
    asked = ["batch-3", "batch-absent-1", "batch-0", "batch-empty", "batch-7", "batch-absent-2"]
    asked += ["batch-3", "batch-5"]
    probe.get_many(asked, {key: stored[key] for key in asked if key in stored})
    probe.get_many(["batch-1"], {"batch-1": stored["batch-1"]})
    probe.put_many({"batch-1": b"new 1", "batch-new": b"new"})
    probe.get_many(
        ["batch-new", "batch-1", "batch-2"],
        {"batch-new": b"new", "batch-1": b"new 1", "batch-2": stored["batch-2"]},
        after="put_many over a stored key, then ",
    )
    big = {f"many-{i:04d}": i.to_bytes(2, "big") * 3 for i in range(1_200)}
    probe.put_many(big)
    keys = [*big, "many-absent"]
    random.Random(0).shuffle(keys)
    probe.get_many(keys, big, after="put_many of 1,200 keys, then ")


def check_overwrites(make_backend: BackendFactory) -> None:
    """Each read after an overwrite sees the new value: no stale reads, whatever was read before.

    Reads before the overwrite (by ``get`` and ``get_many``) prime any read cache a
    backend keeps; the next read must not return the old value.
    """
    check = "check_overwrites"
    probe = _Probe(make_backend(), check, _deterministic(check))
    probe.put("ow", b"first")
    probe.get("ow", b"first")
    probe.put("ow", b"second")
    probe.get("ow", b"second", after="put(b'first'), get, put(b'second'), then ")
    probe.get("ow", b"second", after="a second read after the overwrite: ")
    probe.get_many(["ow"], {"ow": b"second"})
    probe.put_many({"ow": b"third"})
    probe.get_many(["ow"], {"ow": b"third"}, after="get_many, put_many(b'third'), then ")
    probe.get("ow", b"third", after="put_many(b'third'), then ")
    probe.put("ow", b"")
    probe.get("ow", b"", after="an overwrite with b'', then ")
    probe.put("ow", b"fourth")
    probe.get("ow", b"fourth", after="an overwrite of b'' with b'fourth', then ")
    probe.get("ow-absent", None)
    probe.put("ow-absent", b"now stored")
    probe.get("ow-absent", b"now stored", after="a miss, a put, then ")


# -- concurrency --------------------------------------------------------------------------------

# While the concurrent checks run, the interpreter switches threads every 10 µs instead of
# every 5 ms, so that unlocked check-then-act sequences interleave on every run, not by luck.
_SWITCH_INTERVAL = 1e-5
_STALE = (b"stale: the value before the overwrite", b"stale: the value after it")
_BARRIER_TIMEOUT = 120.0


@contextlib.contextmanager
def _fast_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _writer_keys(seed_value: int, name: str, worker: int, count: int) -> dict[str, bytes]:
    rng = random.Random(seed_value * 1000 + worker)
    return {
        f"{name}-{worker}-{i}": f"{worker}:{i}:".encode() + rng.randbytes(rng.randrange(1, 64))
        for i in range(count)
    }


def _torn_values(seed_value: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed_value)
    return rng.randbytes(256 * 1024), rng.randbytes(256 * 1024 + 1)


def _pool_values(seed_value: int, name: str) -> dict[str, bytes]:
    """Keys stored before the workers start, read by all of them in different orders."""
    rng = random.Random(seed_value * 7 + 3)
    return {f"{name}-pool-{i}": f"pool {i}:".encode() + rng.randbytes(40) for i in range(5)}


def _same_values(seed_value: int, workers: int) -> list[bytes]:
    """One value per worker, all written under one key at once (several ranks, one graph)."""
    rng = random.Random(seed_value * 11 + 5)
    return [f"writer {w}:".encode() + rng.randbytes(256 * 1024 + w) for w in range(workers)]


@dataclasses.dataclass(frozen=True)
class _Problem:
    """What one worker saw go wrong, in the fields of a failure message."""

    worker: str
    operation: str
    key: str | None
    expected: str
    actual: str
    note: str | None = None
    stalled: bool = False
    """True when the worker only stopped because another one failed or never arrived."""


class _Stop(Exception):
    def __init__(self, problem: _Problem) -> None:
        super().__init__(problem.operation)
        self.problem = problem


@dataclasses.dataclass
class _Race:
    """What the concurrent workers share: the values to write and read, and the signals."""

    torn: tuple[bytes, bytes]
    pool: dict[str, bytes]
    same: list[bytes]
    rounds: int
    reads: int
    barrier: Any
    done: Any
    other_processes: bool
    known: dict[bytes, str] = dataclasses.field(default_factory=dict)
    """Every value written in the run, to its key: names a reply meant for another key."""

    @classmethod
    def begin(
        cls,
        seed: int,
        tag: str,
        workers: int,
        rounds: int,
        signals: Any,
        *,
        other_processes: bool,
    ) -> _Race:
        """A race of ``workers``, its values drawn from ``seed`` and ``tag``; ``signals`` makes
        the barrier and the event (the ``threading`` module, or a multiprocessing context)."""
        return cls(
            _torn_values(seed),
            _pool_values(seed, tag),
            _same_values(seed, workers),
            rounds,
            rounds * 4,
            signals.Barrier(workers),
            signals.Event(),
            other_processes=other_processes,
        )

    def learn(self, plans: list[dict[str, bytes]]) -> None:
        """Record the values written in the run, to name the key a wrong reply belongs to."""
        for key, value in (
            *zip(["torn", "torn"], self.torn, strict=True),
            *self.pool.items(),
            *(("same", value) for value in self.same),
            *(("stale", value) for value in _STALE),
            *(item for plan in plans for item in plan.items()),
        ):
            self.known[value] = key

    def work(self, backend: RemoteCacheBackend[Any], worker: int, keys: dict[str, bytes]) -> Any:
        """Run one worker's part; return its ``_Problem``, or None when all went well."""
        label = f"{'process' if self.other_processes else 'thread'} {worker}"
        try:
            self._work(_Worker(backend, label, self.other_processes, self.known), worker, keys)
        except _Stop as stop:
            self.done.set()
            if not stop.problem.stalled:
                self.barrier.abort()
            return stop.problem
        return None

    def _wait(self, step: _Worker, phase: str) -> None:
        try:
            self.barrier.wait(_BARRIER_TIMEOUT)
        except threading.BrokenBarrierError:
            raise _Stop(
                _Problem(step.label, f"waiting for the others {phase}", None, "", "", stalled=True)
            ) from None

    def _work(self, step: _Worker, worker: int, keys: dict[str, bytes]) -> None:
        items = list(keys.items())
        half = len(items) // 2
        # 1. Distinct keys at once, by put and put_many.
        self._wait(step, "before writing")
        for key, value in items[:half]:
            step.put(key, value)
        step.put_many(dict(items[half:]))
        # 2. One worker overwrites a large value; the others read it, their own keys and the
        #    shared pool, each in its own order: a reply meant for another key shows.
        if worker == 0:
            try:
                for round_number in range(self.rounds):
                    step.put("torn", self.torn[(round_number + 1) % 2])
            finally:
                self.done.set()
        else:
            pool = list(self.pool.items())
            count = 0
            while count < self.reads or not self.done.is_set():
                step.read_torn(self.torn)
                own_key, own_value = items[count % len(items)]
                step.get(own_key, own_value, own=True)
                pool_key, pool_value = pool[(count * worker + worker) % len(pool)]
                step.get(pool_key, pool_value)
                if count % 8 == 0:
                    step.get_many({own_key: own_value, pool_key: pool_value})
                count += 1
        # 3. Every worker writes one key at once, several times (several ranks compiling
        #    one graph): no crash, and the value left is one of those written, whole.
        for _ in range(max(self.rounds // 8, 4)):
            self._wait(step, "before writing one key together")
            step.put("same", self.same[worker], tolerate_backend_errors=True)
        self._wait(step, "after writing one key together")
        step.read_same(self.same)
        # 4. A read primes any read cache; another worker (in another process) overwrites;
        #    the next read must see the new value.
        step.get("stale", _STALE[0], after="before another worker overwrote it, ")
        self._wait(step, "before the overwrite")
        if worker == 0:
            step.put("stale", _STALE[1])
        self._wait(step, "after the overwrite")
        step.get("stale", _STALE[1], after="after another worker overwrote it, ", stale=True)


class _Worker:
    """One worker's calls: each failure becomes a ``_Problem`` naming the call and the key."""

    def __init__(
        self,
        backend: RemoteCacheBackend[Any],
        label: str,
        other_process: bool,
        known: dict[bytes, str],
    ) -> None:
        self.backend = backend
        self.label = label
        self.other_process = other_process
        self.known = known

    def _other_key(self, key: str, got: object) -> str | None:
        """A note when ``got`` is the value of another key: a reply meant for another call."""
        other = self.known.get(got) if isinstance(got, bytes) else None
        if other is None or other == key:
            return None
        return (
            f"that is the value of {_short(other)}: a reply meant for another call (one "
            "connection shared by threads, its replies read outside the lock?) or a read "
            "cache updated without a lock"
        )

    def _stop(
        self, operation: str, key: str | None, expected: str, actual: str, note: str | None
    ) -> None:
        raise _Stop(_Problem(self.label, operation, key, expected, actual, note))

    def _call(self, operation: str, key: str, method: Callable[..., _R], *args: Any) -> _R:
        try:
            return method(*args)
        except Exception as exc:
            raise self._crashed(operation, key, exc) from exc

    def _crashed(self, operation: str, key: str, exc: Exception) -> _Stop:
        note = None
        if self.other_process and isinstance(exc, (OSError, EOFError)):
            note = (
                "a connection or file opened before the fork is shared with the parent: "
                "reopen it when os.getpid() changes (as redis-py does), or make the "
                "backend picklable so the suite starts fresh interpreters"
            )
        expected = "the call to succeed"
        if operation.startswith("put("):
            expected += " (or raise a BackendError, which the caches fail open on)"
        return _Stop(
            _Problem(self.label, operation, key, expected, f"raised {_exception(exc)}", note)
        )

    def put(self, key: str, value: bytes, *, tolerate_backend_errors: bool = False) -> None:
        operation = f"put({_short(key)}, {len(value):,} bytes)"
        try:
            self.backend.put(key, value)
        except BackendError as exc:
            if not tolerate_backend_errors:
                raise self._crashed(operation, key, exc) from exc
        except Exception as exc:
            raise self._crashed(operation, key, exc) from exc

    def put_many(self, mapping: dict[str, bytes]) -> None:
        first = next(iter(mapping))
        self._call(f"put_many({len(mapping)} keys)", first, self.backend.put_many, mapping)

    def get(
        self, key: str, expected: bytes, *, after: str = "", stale: bool = False, own: bool = False
    ) -> None:
        operation = f"{after}get({_short(key)})"
        got = self._call(operation, key, self.backend.get, key)
        if not _is(got, expected):
            note = _miss_note(self.other_process) if got is None else self._other_key(key, got)
            if own and got is None:
                note = (
                    "a miss for a key this worker wrote itself: a concurrent write of another "
                    "key lost it (an unlocked read-modify-write of a shared file or record?)"
                )
            if stale and got is not None and _is(got, _STALE[0]):
                note = (
                    "a stale read: this backend still returns the value it read before "
                    "(a read cache that other "
                    + ("processes'" if self.other_process else "threads'")
                    + " writes do not invalidate?)"
                )
            self._stop(operation, key, _describe(expected), _describe(got), note)

    def get_many(self, expected: dict[str, bytes]) -> None:
        keys = [*expected, "absent-key"]
        operation = f"get_many([{', '.join(_short(key) for key in keys)}])"
        found = self._call(operation, keys[0], self.backend.get_many, keys)
        if not isinstance(found, dict):
            self._stop(operation, None, _describe(expected), _describe(found), None)
        for key in keys:
            got = found.get(key)
            want = expected.get(key)
            if key in expected and not _is(got, want):
                note = _miss_note(self.other_process) if got is None else self._other_key(key, got)
                self._stop(operation, key, _describe(want), _describe(got), note)
            if key not in expected and key in found:
                note = self._other_key(key, got)
                self._stop(operation, key, "the key left out (never stored)", _describe(got), note)

    def read_torn(self, torn: tuple[bytes, bytes]) -> None:
        got = self._call("get('torn')", "torn", self.backend.get, "torn")
        if not (_is(got, torn[0]) or _is(got, torn[1])):
            note: str | None = self._other_key("torn", got)
            if got is None:
                note = _miss_note(self.other_process)
            elif note is None:
                note = (
                    "a reader saw neither value whole: a partly written value (write a "
                    "temporary file, then rename) or a reply meant for another call"
                )
            self._stop(
                "get('torn') while another worker overwrote it",
                "torn",
                f"one of the two values written, whole ({len(torn[0]):,} or "
                f"{len(torn[1]):,} bytes)",
                _describe(got),
                note,
            )

    def read_same(self, values: list[bytes]) -> None:
        got = self._call("get('same')", "same", self.backend.get, "same")
        if not any(_is(got, value) for value in values):
            self._stop(
                "get('same') after every worker wrote it at once",
                "same",
                f"one of the {len(values)} values written, whole",
                _describe(got),
                "concurrent writers of one key mixed or lost their values (a temporary "
                "file with a fixed name, shared by the writers?)",
            )


def _exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _miss_note(other_process: bool) -> str:
    if other_process:
        return (
            "a miss for a key stored before the worker started: this process's backend does "
            "not see the other's entries (not shared at all? keys named by hash(), which "
            "differs between interpreters?)"
        )
    return "a miss for a key that was stored before this read"


def _in_thread(
    race: _Race,
    backend: RemoteCacheBackend[Any],
    worker: int,
    keys: dict[str, bytes],
    problems: list[_Problem],
) -> None:
    problem = race.work(backend, worker, keys)
    if problem is not None:
        problems.append(problem)


def _in_process(
    race: _Race,
    worker: int,
    keys: dict[str, bytes],
    connection: Any,
    *,
    backend: RemoteCacheBackend[Any] | None,
    pickled: bytes | None,
) -> None:
    """A child's part: build its backend (unpickled, or inherited by fork), then work."""
    sys.setswitchinterval(_SWITCH_INTERVAL)
    logging.getLogger("remote_cache").setLevel(logging.ERROR)
    if pickled is not None:
        try:
            backend = pickle.loads(pickled)
        except Exception as exc:  # noqa: BLE001 - the parent falls back to fork
            connection.send(("unpicklable", _exception(exc)))
            connection.close()
            return
    connection.send(("started", None))
    assert backend is not None
    connection.send(("done", race.work(backend, worker, keys)))
    connection.close()


@dataclasses.dataclass
class _Outcome:
    """What a concurrent run is checked for afterwards."""

    check: str
    workers: str
    replay: str
    expected: dict[str, bytes]
    processes: bool = False

    def verify(self, backend: RemoteCacheBackend[Any], problems: list[_Problem]) -> None:
        """Raise on a worker's problem first, then on any write lost."""
        real = [problem for problem in problems if not problem.stalled]
        if real or problems:
            problem = (real or problems)[0]
            if problem.stalled:
                raise _violation(
                    backend,
                    self.check,
                    f"{self.workers}: {problem.worker}: {problem.operation}",
                    expected=f"every worker to finish within {_BARRIER_TIMEOUT:.0f} s",
                    actual="one never did (a deadlock, or a call that hangs?)",
                    note="a connection opened before the fork, shared by both processes, can "
                    "leave one waiting for a reply the other took: reopen it when os.getpid() "
                    "changes"
                    if "fork" in self.workers
                    else None,
                    replay=self.replay,
                )
            raise _violation(
                backend,
                self.check,
                f"{self.workers} at once; {problem.worker}: {problem.operation}",
                key=problem.key,
                expected=problem.expected,
                actual=problem.actual,
                note=problem.note,
                replay=self.replay,
            )
        probe = _Probe(backend, self.check, self.replay)
        lost = []
        for key, value in self.expected.items():
            got = probe.call(f"get({_short(key)})", backend.get, key)
            if not _is(got, value):
                lost.append((key, got, value))
        if lost:
            key, got, value = lost[0]
            if len(lost) == len(self.expected) and self.processes:
                note = (
                    f"all {len(lost)} writes made in the other processes lost: their "
                    "backends share no entries with this one (not shared at all? a folder or "
                    "prefix chosen per process, or keys named by hash()?)"
                )
            elif len(lost) == len(self.expected):
                note = f"all {len(lost)} concurrent writes lost"
            else:
                note = (
                    f"{len(lost)} of {len(self.expected)} concurrent writes lost (an unlocked "
                    "read-modify-write of a shared file or record?)"
                )
            raise _violation(
                backend,
                self.check,
                f"after {self.workers} put distinct keys at once, get({_short(key)})",
                key=key,
                expected=_describe(value),
                actual=_describe(got),
                note=note,
                replay=self.replay,
            )


@contextlib.contextmanager
def _main_not_rerun(method: str) -> Iterator[None]:
    """Spawned children would run the caller's main script again (an unguarded
    ``check_backend(...)`` there starts the suite over): hide it while they start. A backend
    class defined in that script then cannot be unpickled, and the check falls back to fork."""
    if method != "spawn":
        yield
        return
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@contextlib.contextmanager
def _fork_allowed() -> Iterator[None]:
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork in a process with threads (pytest-xdist's, say); the
        # children only run the backend's own calls and exit.
        warnings.filterwarnings("ignore", message=r".*fork\(\)", category=DeprecationWarning)
        yield


def _plans(seed_value: int, name: str, workers: int, count: int) -> list[dict[str, bytes]]:
    return [_writer_keys(seed_value, name, worker, count) for worker in range(workers)]


def _prepare(
    backend: RemoteCacheBackend[Any], probe: _Probe, race: _Race, same_start: bytes
) -> None:
    """Store what the workers read before they start, and read it once (priming caches)."""
    probe.put("torn", race.torn[0])
    for key, value in race.pool.items():
        probe.put(key, value)
    probe.put("same", same_start)
    probe.put("stale", _STALE[0])
    probe.get("stale", _STALE[0], after="put('stale', …), then ")


def check_concurrency(
    make_backend: BackendFactory,
    *,
    threads: int = 4,
    processes: int = 2,
    keys_per_writer: int = 48,
    rounds: int = 64,
    random_seed: int | None = None,
) -> str:
    """Concurrent writers lose nothing, and readers see whole values meant for them.

    ``threads`` threads share one backend. At once, they: write ``keys_per_writer``
    distinct keys each (by ``put`` and ``put_many``); then one overwrites a 256 KiB value
    ``rounds`` times while the others read it, their own keys and keys shared by all (each
    read must return the value of the key asked for, whole); then all write one key
    together (no crash; one of the values is left whole); then one overwrites a key the
    others have read, and they must see the new value. Afterwards every key must read back.
    Threads switch every 10 µs meanwhile (restored after), so races show on every run.

    When the backend declares ``shared_between_processes``, the same runs with
    ``processes`` processes, each with a backend alike to this one: the backend pickled and
    unpickled in a fresh interpreter (the ``spawn`` start method: its own hash seed, its
    own connections), or, when it cannot be pickled, this backend inherited by ``fork``.
    Values come from ``random_seed``. Returns a one-line note of what ran (how the
    processes were started, and why).
    """
    check = "check_concurrency"
    seed_value = pick_seed(random_seed)
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    backend = make_backend()
    race = _Race.begin(seed_value, "conc", threads, rounds, threading, other_processes=False)
    _prepare(backend, _Probe(backend, check, replay), race, b"same: the first value")
    plans = _plans(seed_value, "conc", threads, keys_per_writer)
    race.learn(plans)
    problems: list[_Problem] = []
    workers = [
        threading.Thread(
            target=_in_thread, args=(race, backend, worker, plan, problems), daemon=True
        )
        for worker, plan in enumerate(plans)
    ]
    with _fast_switching():
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    expected = {key: value for plan in plans for key, value in plan.items()}
    _Outcome(check, f"{threads} threads", replay, expected).verify(backend, problems)
    note = f"{threads} threads"
    if getattr(backend, "shared_between_processes", False):
        note += ", " + _check_processes(
            backend,
            check=check,
            processes=processes,
            keys_per_writer=keys_per_writer,
            rounds=rounds,
            seed_value=seed_value,
        )
    return note


def _start_method(backend: RemoteCacheBackend[Any]) -> tuple[str, bytes | None, str]:
    """How to start the processes: spawn with the pickled backend, else fork; and why."""
    methods = multiprocessing.get_all_start_methods()
    try:
        pickled = pickle.dumps(backend)
    except Exception as exc:
        why = f"the backend cannot be pickled ({_exception(exc)})"
        if "fork" in methods:
            return "fork", None, why
        raise AssertionError(
            f"{_name(backend)}: check_concurrency: {why}, and this platform cannot fork: "
            "make the backend picklable to check it in other processes"
        ) from exc
    return "spawn", pickled, "the backend pickled into fresh interpreters"


def _check_processes(
    backend: RemoteCacheBackend[Any],
    *,
    check: str,
    processes: int,
    keys_per_writer: int,
    rounds: int,
    seed_value: int,
) -> str:
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    method, pickled, why = _start_method(backend)
    plans = _plans(seed_value + 1, "proc", processes, keys_per_writer)
    problems: list[_Problem] | None = None
    if method == "spawn":
        problems = _run_processes(
            backend,
            method="spawn",
            pickled=pickled,
            plans=plans,
            rounds=rounds,
            seed_value=seed_value,
            check=check,
        )
        if problems is None:
            method, why = "fork", "a fresh interpreter could not unpickle the backend"
    if problems is None:
        problems = _run_processes(
            backend,
            method="fork",
            pickled=None,
            plans=plans,
            rounds=rounds,
            seed_value=seed_value,
            check=check,
        )
        assert problems is not None
    workers = f"{processes} processes (started by {method}: {why})"
    expected = {key: value for plan in plans for key, value in plan.items()}
    outcome = _Outcome(check, workers, replay, expected, processes=True)
    outcome.verify(backend, problems)
    probe = _Probe(backend, check, replay)
    probe.get(
        "stale",
        _STALE[1],
        after=f"{workers}: this backend read 'stale', a process overwrote it, then ",
        note="a stale read: the overwrite made in another process is not seen here (a read "
        "cache that other processes' writes do not invalidate?)",
    )
    return f"{processes} processes started by {method}: {why}"


def _collect(receivers: list[Any], problems: list[_Problem]) -> bool:
    """Gather the children's answers into ``problems``; True when one could not unpickle.

    Each child says "started", then "done" with its problem or None. A child that does not
    answer within ``_BARRIER_TIMEOUT`` seconds, or within 5 s of another's problem (it may
    be blocked on a connection the problem broke), is recorded as stalled.
    """
    deadline = time.monotonic() + _BARRIER_TIMEOUT
    pending = dict(enumerate(receivers))
    while pending:
        ready = multiprocessing.connection.wait(
            list(pending.values()), max(deadline - time.monotonic(), 0)
        )
        if not ready:
            break
        for worker, receiver in list(pending.items()):
            if receiver not in ready:
                continue
            try:
                kind, detail = receiver.recv()
            except EOFError:
                kind, detail = (
                    "done",
                    _Problem(
                        f"process {worker}",
                        "working",
                        None,
                        "an answer",
                        "it died without one (killed, or crashed in native code?)",
                    ),
                )
            if kind == "unpicklable":
                return True
            if kind == "started":
                continue
            del pending[worker]
            if detail is not None:
                problems.append(detail)
                deadline = min(deadline, time.monotonic() + 5)
    problems.extend(
        _Problem(f"process {worker}", "working", None, "", "", stalled=True) for worker in pending
    )
    return False


def _run_processes(
    backend: RemoteCacheBackend[Any],
    *,
    method: str,
    pickled: bytes | None,
    plans: list[dict[str, bytes]],
    rounds: int,
    seed_value: int,
    check: str,
) -> list[_Problem] | None:
    """Run the workers in processes; their problems, or None when spawn could not unpickle."""
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    context: Any = multiprocessing.get_context(method)
    count = len(plans)
    race = _Race.begin(seed_value + 1, "proc", count, rounds, context, other_processes=True)
    _prepare(backend, _Probe(backend, check, replay), race, b"same: the first value")
    race.learn(plans)
    children = []
    receivers = []
    problems: list[_Problem] = []
    abandoned = False
    try:
        with _fork_allowed(), _main_not_rerun(method):
            for worker, plan in enumerate(plans):
                receiver, sender = context.Pipe(duplex=False)
                inherited = backend if pickled is None else None
                child = context.Process(
                    target=_in_process,
                    args=(race, worker, plan, sender),
                    kwargs={"backend": inherited, "pickled": pickled},
                    daemon=True,
                )
                child.start()
                sender.close()
                children.append(child)
                receivers.append(receiver)
        abandoned = _collect(receivers, problems)
        if abandoned:
            return None
    finally:
        for child in children:
            child.join(timeout=0 if abandoned or problems else 5)
            if child.is_alive():
                child.kill()
                child.join()
        for receiver in receivers:
            receiver.close()
    return problems


# -- counters -----------------------------------------------------------------------------------


def check_stats(make_backend: BackendFactory) -> None:
    """The backend counts hits, misses and puts exactly, batches per key."""
    with isolated_cache_stats() as stats:
        backend = make_backend()
        _call(backend, "put('k', b'')", backend.put, "k", b"")
        _call(backend, "get('k')", backend.get, "k")
        _call(backend, "get('absent')", backend.get, "absent")
        _call(backend, "get_many(['k', 'absent'])", backend.get_many, ["k", "absent"])
        _call(backend, "put_many(...)", backend.put_many, {"a": b"1", "b": b"2"})
        stat = stats[f"backend:{type(backend).__name__}"]
    counted = (stat.hit, stat.miss, stat.put, stat.exception)
    if counted != (2, 2, 3, 0):
        _fail(backend, f"counted (hit, miss, put, exception) = {counted}, expected (2, 2, 3, 0)")


# -- properties ---------------------------------------------------------------------------------

# Each example draws a small pool of keys (hostile shapes, and families that collide under
# case folding and Unicode normalisation) and uses only those: overwrites, read-backs and
# two variants of one key in one example are common. Falsy values get their own branch:
# reading them back as misses is a classic defect; so do values with compressed, pickled
# and JSON headers, which backends that sniff headers change.
_pool_keys = st.one_of(st.sampled_from(["a", "b", "c"]), cache_keys(), colliding_keys())
_values = st.one_of(
    st.sampled_from([b"", b"\x00", b"0", b"a\x00", *_HEADER_VALUES]),
    st.binary(max_size=2048),
)


@st.composite
def _operations(draw: st.DrawFn) -> list[tuple[str, Any, Any]]:
    pool = draw(st.lists(_pool_keys, min_size=1, max_size=6, unique=True))
    keys = st.sampled_from(pool)
    operation = st.one_of(
        st.tuples(st.just("put"), keys, _values),
        st.tuples(st.just("get"), keys, st.none()),
        st.tuples(st.just("get_many"), st.lists(keys, max_size=4), st.none()),
        st.tuples(st.just("put_many"), st.dictionaries(keys, _values, max_size=4), st.none()),
    )
    return draw(st.lists(operation, max_size=25))


def _run(test: Callable[[], None], random_seed: int | None, replay: str) -> None:
    """Run a Hypothesis test under a seed; a failure names the seed to replay it."""
    seed_value = pick_seed(random_seed)
    try:
        seed(seed_value)(test)()
    except AssertionError as exc:
        raise replayable(exc, f"{replay}, random_seed={seed_value})") from exc.__cause__


def _model_failure(
    backend: RemoteCacheBackend[Any],
    operation: str,
    key: str | None,
    expected: object,
    actual: object,
) -> AssertionError:
    """A dict-model disagreement, in the shape of the other checks' messages (the replay
    line, with the seed, and the shrunk example are added by ``_run``)."""
    lines = [f"{_name(backend)}: check_model: {operation}, after the calls below"]
    if key is not None:
        lines.append(f"  key:      {_short(key)}")
    shown = expected if isinstance(expected, str) else _describe(expected)
    lines.append(f"  expected: {shown} (what a dict holds)")
    lines.append(f"  actual:   {_describe(actual)}")
    return AssertionError("\n".join(lines))


def check_model(
    make_backend: BackendFactory,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
) -> None:
    """Any sequence of gets and puts (single and batched) agrees with a dict.

    ``examples`` defaults to the loaded Hypothesis profile's ``max_examples``;
    ``random_seed`` makes the run repeatable (None: a random one, named in the failure);
    ``on_example`` is called once per example. Values come back as ``bytes``.
    """

    @suite_settings(examples)
    @given(_operations())
    def agrees_with_a_dict(operations: list[tuple[str, Any, Any]]) -> None:
        if on_example is not None:
            on_example()
        backend = make_backend()
        model: dict[str, bytes] = {}
        for operation, argument, data in operations:
            if operation == "put":
                _call(backend, f"put({_short(argument)})", backend.put, argument, data)
                model[argument] = data
            elif operation == "put_many":
                shown = {_short(k): len(v) for k, v in argument.items()}
                _call(backend, f"put_many({shown})", backend.put_many, argument)
                model.update(argument)
            elif operation == "get":
                got = _call(backend, f"get({_short(argument)})", backend.get, argument)
                if not _is(got, model.get(argument)):
                    raise _model_failure(
                        backend, f"get({_short(argument)})", argument, model.get(argument), got
                    )
            else:
                found = _call(
                    backend, f"get_many({len(argument)} keys)", backend.get_many, argument
                )
                expected = {key: model[key] for key in argument if key in model}
                if (
                    not isinstance(found, dict)
                    or set(found) != set(expected)
                    or not all(_is(found[key], value) for key, value in expected.items())
                ):
                    asked = f"get_many({[_short(k) for k in argument]})"
                    if not isinstance(found, dict):
                        raise _model_failure(backend, asked, None, expected, found)
                    wrong = [
                        key
                        for key in dict.fromkeys(argument)
                        if (key in found) != (key in expected)
                        or (key in expected and not _is(found[key], expected[key]))
                    ]
                    extra = [key for key in found if key not in expected]
                    key = (wrong or extra)[0]
                    raise _model_failure(
                        backend,
                        asked,
                        key,
                        expected.get(key, "the key left out (it is not stored)"),
                        found.get(key),
                    )

    _run(agrees_with_a_dict, random_seed, "check_model(make_backend")


def check_json_serde(
    serde: RemoteCacheSerde[JsonDataTy, bytes] | None = None,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
) -> None:
    """A JSON serde writes upstream's bytes (ASCII only) and reads back an equal value.

    Equal means of the same type all the way down (``1``, ``1.0`` and ``True`` differ, so
    do ``0.0`` and ``-0.0``). ``serde`` defaults to ``RemoteCacheJsonSerde()``.
    """
    serde = serde if serde is not None else RemoteCacheJsonSerde()
    name = type(serde).__name__

    @suite_settings(examples)
    @given(json_data())
    def round_trips(value: JsonDataTy) -> None:
        if on_example is not None:
            on_example()
        data = serde.encode(value)
        expected = bytes(json.dumps(value), "ascii")
        if data != expected:
            raise AssertionError(
                f"{name}: encoded {value!r} as {data!r}; upstream writes {expected!r}"
            )
        if not data.isascii():
            raise AssertionError(f"{name}: encoded {value!r} with non-ASCII bytes {data!r}")
        back = serde.decode(data)
        if json.dumps(back) != json.dumps(value):
            raise AssertionError(f"{name}: {value!r} read back as {back!r}")

    _run(round_trips, random_seed, "check_json_serde(serde")


@contextlib.contextmanager
def _quiet_planted_faults() -> Iterator[None]:
    """The cache machine's planted faults are logged by design (hundreds of warnings): show
    only errors from the ``remote_cache`` logger meanwhile, and restore its level after."""
    logger = logging.getLogger("remote_cache")
    previous = logger.level
    if logger.getEffectiveLevel() < logging.ERROR:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def check_backend(
    make_backend: BackendFactory,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
    largest_value: int = LARGEST_VALUE,
    longest_key: int = LONGEST_KEY,
) -> None:
    """Check the backend contract against backends from ``make_backend`` (fresh, empty each call).

    Runs, in order: ``check_contract`` (absent keys, falsy values, overwrites, batches,
    isolation of the factory's backends), ``check_values`` (sizes up to ``largest_value``
    bytes, the declared ``max_value_bytes`` refused loudly above), ``check_keys`` (key
    families up to ``longest_key`` characters that collide under case folding, Unicode
    normalisation, truncation or a dropped prefix), ``check_overwrites`` (no stale reads),
    ``check_batches``, ``check_stats`` (exact counters), ``check_concurrency`` (threads, and
    processes for ``shared_between_processes`` backends), ``check_model`` (Hypothesis: any
    sequence of calls agrees with a dict) and the cache state machine of
    ``remote_cache.testing.stateful`` (caches, injected faults, corrupt entries, exact
    counters). ``examples`` defaults to the loaded Hypothesis profile's ``max_examples``;
    ``random_seed`` makes the random parts repeatable (None: a random seed, named in the
    failure). Raises ``AssertionError`` at the first violation. pytest-free.
    """
    check_contract(make_backend)
    check_values(make_backend, largest=largest_value, longest=longest_key)
    check_keys(make_backend, longest=longest_key)
    check_overwrites(make_backend)
    check_batches(make_backend)
    check_stats(make_backend)
    check_concurrency(make_backend, random_seed=random_seed)
    check_model(make_backend, examples=examples, random_seed=random_seed, on_example=on_example)
    with _quiet_planted_faults():
        run_cache_machine(
            make_backend, examples=examples, random_seed=random_seed, on_example=on_example
        )


class BackendConformance:
    """The conformance suite as test methods: subclass it and define ``make_backend``.

    pytest collects subclasses named ``Test...``; unittest users mix in ``TestCase`` too::

        class TestSqliteBackend(BackendConformance):
            def make_backend(self) -> SqliteBackend:
                return SqliteBackend(":memory:")

    ``examples`` (None: the Hypothesis profile's ``max_examples``) and ``random_seed`` are
    class attributes to override.
    """

    examples: ClassVar[int | None] = None
    random_seed: ClassVar[int | None] = None

    def make_backend(self) -> RemoteCacheBackend[Any]:
        """Return a fresh, empty backend (each call a new one)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_backend()")

    def test_contract(self) -> None:
        """Absent keys, falsy and large values, overwrites, batches, isolation."""
        check_contract(self.make_backend)

    def test_values(self) -> None:
        """Values up to 4 MiB read back whole, as bytes; declared limits refused loudly."""
        check_values(self.make_backend)

    def test_keys(self) -> None:
        """Keys that broken backends make collide each hold their own value."""
        check_keys(self.make_backend)

    def test_batches(self) -> None:
        """``get_many`` returns exactly the stored keys, each with its own value."""
        check_batches(self.make_backend)

    def test_overwrites(self) -> None:
        """No stale read after an overwrite."""
        check_overwrites(self.make_backend)

    def test_stats(self) -> None:
        """Hits, misses and puts counted exactly."""
        check_stats(self.make_backend)

    def test_concurrency(self) -> None:
        """Concurrent writers lose nothing; readers never see a torn value."""
        check_concurrency(self.make_backend, random_seed=self.random_seed)

    def test_agrees_with_a_dict(self) -> None:
        """Any sequence of calls agrees with a dict."""
        check_model(self.make_backend, examples=self.examples, random_seed=self.random_seed)

    def test_cache_machine(self) -> None:
        """Caches over the backend, with injected faults, agree with the model."""
        with _quiet_planted_faults():
            run_cache_machine(
                self.make_backend, examples=self.examples, random_seed=self.random_seed
            )
