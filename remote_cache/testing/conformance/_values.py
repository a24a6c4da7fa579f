"""``check_values``: values of every size and shape read back whole, as ``bytes``.

Sizes around every boundary up to ``LARGEST_VALUE``, NUL and whitespace edges, values with
compressed, pickled and JSON headers; a declared ``max_value_bytes`` refused loudly above.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import pickle
import zlib
from collections.abc import Callable

from remote_cache.exceptions import ValueTooLargeError
from remote_cache.testing._key_families import LONGEST_KEY
from remote_cache.testing.conformance._diagnostics import _describe, _utf8, _violation
from remote_cache.testing.conformance._probe import (
    LARGEST_VALUE,
    BackendFactory,
    _declared,
    _pattern,
    _Probe,
)

_MIB = 1024 * 1024


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
