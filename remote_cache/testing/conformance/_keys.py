"""``key_families`` and ``check_keys``: keys that broken backends make collide each hold their
own value (case folding, Unicode normalisation, truncation, mangling, cache prefixes)."""

from __future__ import annotations

__all__ = ["CHUNK_SUFFIXES", "check_keys", "key_families"]

from remote_cache.testing._key_families import LONGEST_KEY, key_families
from remote_cache.testing.conformance._diagnostics import _utf8
from remote_cache.testing.conformance._probe import (
    BackendFactory,
    _declared,
    _pattern,
    _Probe,
)

_FAMILY_NOTES = {
    "case": "keys differing only in case (a case-insensitive store or collation? SQL LIKE "
    "instead of =?)",
    "Unicode normalisation": "keys differing only in Unicode normalisation (NFC, NFD, NFKC)",
    "length": "keys differing only after a common prefix (are long keys truncated?)",
    "non-ASCII": "keys differing only in non-ASCII characters (mangled when encoded?)",
    "NUL, whitespace and separators": "keys differing in NUL, whitespace or separators",
    "separators and escapes": "keys differing in separators or their escapes (batch keys "
    "joined with a separator? an escaping scheme that does not escape its own escape "
    "character?)",
    "short checksums": "keys whose 32-bit checksums collide (crc32, adler32, the first 8 hex "
    "digits of md5, sha1 or sha256, a 4-byte blake2b): entries named by a short checksum?",
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
    _check_chunk_names(_Probe(make_backend(), check, probe.replay))


CHUNK_SUFFIXES = (
    ".0", ".1", ".2", "#0", ":0", "-0", "_0", "/0", ".part0", ":chunk:0", ".meta", ".manifest",
    "-chunk-0", ".00", ".000000", ":1", "/1",
)  # fmt: skip
"""What backends that split large values name their chunks after the key: each, written as
a key of its own, must leave a large value under the bare key whole."""


def _check_chunk_names(probe: _Probe) -> None:
    """A large value (3 MiB: chunked by backends that chunk) under ``big``, and small values
    under the names its chunks may take; all read back whole."""
    limit = _declared(probe.backend, probe.check)
    size = 3 * 1024 * 1024 + 1 if limit is None else min(3 * 1024 * 1024 + 1, limit)
    big = _pattern(size, salt=11)
    note = (
        "a value split into chunks stored under names in the caller's own key space (the "
        "key plus a suffix), which another key can overwrite or read"
    )
    probe.put("big", big)  # the largest value it takes, if it declares less
    small = {f"big{suffix}": f"small under big{suffix}".encode() for suffix in CHUNK_SUFFIXES}
    for key, value in small.items():
        probe.put(key, value)
    after = f"put('big', {size:,} bytes), then put of keys named like its chunks, then "
    probe.get("big", big, after=after, note=note)
    for key, value in small.items():
        probe.get(key, value, after=after, note=note)
    probe.get_many(["big", *small], {"big": big, **small}, after=after, note=note)
