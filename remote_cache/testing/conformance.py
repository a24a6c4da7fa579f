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

import contextlib
import dataclasses
import functools
import json
import multiprocessing
import random
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from hypothesis import given, seed
from hypothesis import strategies as st

from remote_cache import RemoteCacheBackend, RemoteCacheJsonSerde, RemoteCacheSerde
from remote_cache._serde import JsonDataTy
from remote_cache.exceptions import ValueTooLargeError
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


def check_values(make_backend: BackendFactory, *, largest: int = LARGEST_VALUE) -> None:
    """Values of every size up to ``largest`` bytes (4 MiB), NUL and whitespace edges, read back.

    Each value must come back as ``bytes`` (not ``str``, ``bytearray`` or a view), equal,
    right after its put and again after all the others. A backend declaring
    ``max_value_bytes`` must store every size up to it and refuse each size above it with
    ``ValueTooLargeError``, leaving nothing under the key (probed when the limit is at most
    ``largest``).
    """
    check = "check_values"
    backend = make_backend()
    limit = _declared(backend, check)
    replay = f"check_values(make_backend, largest={largest}) (deterministic)"
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
                "x\udc80",
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
    keys that collide. Keys up to ``longest`` characters (1 KiB) are written.
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


def _writer_keys(seed_value: int, name: str, worker: int, count: int) -> dict[str, bytes]:
    rng = random.Random(seed_value * 1000 + worker)
    return {
        f"{name}-{worker}-{i}": f"{worker}:{i}:".encode() + rng.randbytes(rng.randrange(1, 64))
        for i in range(count)
    }


def _torn_values(seed_value: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed_value)
    return rng.randbytes(256 * 1024), rng.randbytes(256 * 1024 + 1)


def _torn_problem(got: object, first: bytes, second: bytes) -> str | None:
    if _is(got, first) or _is(got, second):
        return None
    return _describe(got)


@dataclasses.dataclass
class _Race:
    """What the concurrent workers share: the backend, the two torn values, the signals."""

    backend: RemoteCacheBackend[Any]
    torn: tuple[bytes, bytes]
    rounds: int
    barrier: Any
    done: Any

    def work(self, worker: int, keys: dict[str, bytes]) -> str | None:
        """Write ``keys`` (half by put, half by put_many); then worker 0 overwrites the torn
        key ``rounds`` times while the others read it until it is done. A problem, or None."""
        backend = self.backend
        items = list(keys.items())
        half = len(items) // 2
        try:
            self.barrier.wait()
            for key, value in items[:half]:
                backend.put(key, value)
            backend.put_many(dict(items[half:]))
            if worker == 0:
                try:
                    for round_number in range(self.rounds):
                        backend.put("torn", self.torn[(round_number + 1) % 2])
                finally:
                    self.done.set()
                return None
            while not self.done.is_set():
                problem = _torn_problem(backend.get("torn"), *self.torn)
                if problem is not None:
                    return f"get('torn') returned {problem}"
        except Exception as exc:  # noqa: BLE001 - reported as the worker's problem
            self.done.set()
            return f"raised {type(exc).__name__}: {exc}"
        return None


def _in_thread(race: _Race, worker: int, keys: dict[str, bytes], problems: list[str]) -> None:
    problem = race.work(worker, keys)
    if problem is not None:
        problems.append(f"thread {worker}: {problem}")


def _in_process(race: _Race, worker: int, keys: dict[str, bytes], connection: Any) -> None:
    connection.send(race.work(worker, keys))
    connection.close()


@dataclasses.dataclass
class _Outcome:
    """What a concurrent run is checked for afterwards."""

    check: str
    workers: str
    replay: str
    torn: tuple[bytes, bytes]
    expected: dict[str, bytes]

    def verify(self, backend: RemoteCacheBackend[Any], problems: list[str]) -> None:
        """Raise on a torn read or a worker's crash first, then on any write lost."""
        if problems:
            kind, _, detail = problems[0].partition(": ")
            raise _violation(
                backend,
                self.check,
                f"{self.workers}: one overwrote 'torn' while the others read it; {kind}: {detail}",
                key="torn",
                expected=f"one of the two values written, whole ({len(self.torn[0]):,} or "
                f"{len(self.torn[1]):,} bytes)",
                actual=detail,
                note="a reader saw a partly written value (write a temporary file, then rename)"
                if detail.startswith("get(")
                else None,
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
            raise _violation(
                backend,
                self.check,
                f"after {self.workers} put distinct keys at once, get({_short(key)})",
                key=key,
                expected=_describe(value),
                actual=_describe(got),
                note=f"{len(lost)} of {len(self.expected)} concurrent writes lost (an unlocked "
                "read-modify-write of a shared file or record?)",
                replay=self.replay,
            )


@contextlib.contextmanager
def _fork_allowed() -> Iterator[None]:
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork in a process with threads (pytest-xdist's, say); the
        # children only run the backend's own calls and exit.
        warnings.filterwarnings("ignore", message=r".*fork\(\)", category=DeprecationWarning)
        yield


def _plans(seed_value: int, name: str, workers: int, count: int) -> list[dict[str, bytes]]:
    return [_writer_keys(seed_value, name, worker, count) for worker in range(workers)]


def check_concurrency(
    make_backend: BackendFactory,
    *,
    threads: int = 4,
    processes: int = 2,
    keys_per_writer: int = 48,
    rounds: int = 24,
    random_seed: int | None = None,
) -> None:
    """Concurrent writers lose nothing and readers never see a partly written value.

    ``threads`` threads share one backend: each writes ``keys_per_writer`` distinct keys
    (by ``put`` and ``put_many``) at once, then one overwrites a 256 KiB value ``rounds``
    times while the others read it: every read must be one of the two values whole.
    Afterwards every key must read back. When the backend declares
    ``shared_between_processes``, the same runs with ``processes`` processes (forked where
    the platform can). Values come from ``random_seed``; the interleaving is the scheduler's.
    """
    check = "check_concurrency"
    seed_value = pick_seed(random_seed)
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    backend = make_backend()
    torn = _torn_values(seed_value)
    _Probe(backend, check, replay).put("torn", torn[0])
    plans = _plans(seed_value, "conc", threads, keys_per_writer)
    race = _Race(backend, torn, rounds, threading.Barrier(threads), threading.Event())
    problems: list[str] = []
    workers = [
        threading.Thread(target=_in_thread, args=(race, worker, plan, problems), daemon=True)
        for worker, plan in enumerate(plans)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    expected = {key: value for plan in plans for key, value in plan.items()}
    _Outcome(check, f"{threads} threads", replay, torn, expected).verify(backend, problems)
    if getattr(backend, "shared_between_processes", False):
        _check_processes(
            backend,
            check=check,
            processes=processes,
            keys_per_writer=keys_per_writer,
            rounds=rounds,
            seed_value=seed_value,
        )


def _check_processes(
    backend: RemoteCacheBackend[Any],
    *,
    check: str,
    processes: int,
    keys_per_writer: int,
    rounds: int,
    seed_value: int,
) -> None:
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)
    torn = _torn_values(seed_value + 1)
    _Probe(backend, check, replay).put("torn", torn[0])
    plans = _plans(seed_value + 1, "proc", processes, keys_per_writer)
    race = _Race(backend, torn, rounds, context.Barrier(processes), context.Event())
    children = []
    receivers = []
    problems: list[str] = []
    try:
        with _fork_allowed():
            for worker, plan in enumerate(plans):
                receiver, sender = context.Pipe(duplex=False)
                child = context.Process(
                    target=_in_process, args=(race, worker, plan, sender), daemon=True
                )
                child.start()
                sender.close()
                children.append(child)
                receivers.append(receiver)
        for worker, receiver in enumerate(receivers):
            problem = (
                receiver.recv() if receiver.poll(120) else "no answer within 120 s (a deadlock?)"
            )
            if problem is not None:
                problems.append(f"process {worker}: {problem}")
    except EOFError:
        problems.append("a process died without an answer")
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
        for receiver in receivers:
            receiver.close()
    expected = {key: value for plan in plans for key, value in plan.items()}
    _Outcome(check, f"{processes} processes", replay, torn, expected).verify(backend, problems)


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
# reading them back as misses is a classic defect.
_pool_keys = st.one_of(st.sampled_from(["a", "b", "c"]), cache_keys(), colliding_keys())
_values = st.one_of(st.sampled_from([b"", b"\x00", b"0", b"a\x00"]), st.binary(max_size=2048))


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
                    _fail(
                        backend,
                        f"check_model: get({_short(argument)}) returned {_describe(got)}, "
                        f"expected {_describe(model.get(argument))}",
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
                    _fail(
                        backend,
                        f"check_model: get_many({[_short(k) for k in argument]}) returned "
                        f"{_describe(found)}, expected {_describe(expected)}",
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
    check_values(make_backend, largest=largest_value)
    check_keys(make_backend, longest=longest_key)
    check_overwrites(make_backend)
    check_batches(make_backend)
    check_stats(make_backend)
    check_concurrency(make_backend, random_seed=random_seed)
    check_model(make_backend, examples=examples, random_seed=random_seed, on_example=on_example)
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
        run_cache_machine(self.make_backend, examples=self.examples, random_seed=self.random_seed)
