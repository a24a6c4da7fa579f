"""Hypothesis strategies for cache values, keys and fault plans."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from hypothesis import strategies as st

from remote_cache._serde import JsonDataTy
from remote_cache.testing._backends import OPERATIONS, FaultPlan, SideEffect
from remote_cache.testing._key_families import key_families

__all__ = [
    "cache_keys",
    "colliding_keys",
    "colliding_pairs",
    "fault_plans",
    "json_data",
    "key_family",
]


# Hypothesis leaves surrogates out of text by default; half our strings may hold them.
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_ANY_CHARACTER = st.one_of(st.characters(), _SURROGATES)


def _text(max_size: int, *, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(min_size=min_size, max_size=max_size),
        st.text(_ANY_CHARACTER, min_size=min_size, max_size=max_size),
    )


def _as_json_reads_it(text: str) -> str:
    """``text`` as ``json.loads`` returns it: a high surrogate then a low one become one character.

    ``json.dumps`` writes each surrogate as its own escape and ``json.loads`` joins an adjacent
    pair, so only the joined form survives a round trip; lone surrogates stay as they are.
    """
    joined: str = json.loads(json.dumps(text))
    return joined


def json_data(
    *,
    allow_nan: bool = False,
    allow_infinity: bool | None = None,
    max_leaves: int = 30,
    max_text: int = 40,
) -> st.SearchStrategy[JsonDataTy]:
    """Every JSON shape ``json.loads`` can return, nested.

    Leaves are None, booleans, integers (beyond 64 bits too), floats (``-0.0`` and
    subnormals included; NaN and the infinities only when asked for) and text (non-ASCII and
    lone surrogates included, but never a high surrogate followed by a low one, which
    ``json.loads`` joins into one character); containers are lists and dicts with text keys.
    ``max_leaves`` bounds the size. ``allow_infinity`` defaults to ``allow_nan``.
    """
    if allow_infinity is None:
        allow_infinity = allow_nan
    text = _text(max_text).map(_as_json_reads_it)
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**200), max_value=2**200),
        st.floats(allow_nan=allow_nan, allow_infinity=allow_infinity),
        text,
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(text, children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def cache_keys(*, max_size: int = 80) -> st.SearchStrategy[str]:
    """Valid keys: hashes, any non-empty text, and hostile ones.

    Hostile keys include ``..``, ``/``, NUL, newlines, lone surrogates and reserved file names.
    """
    hashes = st.binary(min_size=26, max_size=26).map(lambda raw: raw.hex()[:52])
    hostile = st.sampled_from(
        ["..", "../x", "/etc/passwd", "a\x00b", "a\nb", " ", "é", "🚀", "\ud800", "CON", "a/b"]
    )
    return st.one_of(hashes, hostile, _text(max_size, min_size=1))


_VARIANTS = (
    str.upper,
    str.lower,
    str.title,
    str.casefold,
    lambda key: unicodedata.normalize("NFC", key),
    lambda key: unicodedata.normalize("NFD", key),
    lambda key: unicodedata.normalize("NFKC", key),
    lambda key: key[:-1] if len(key) > 1 else key + "\x00",
    lambda key: key + "\x00",
    lambda key: key.encode("ascii", "replace").decode("ascii"),
)


def colliding_keys() -> st.SearchStrategy[str]:
    """Keys drawn in families that broken backends merge: a base key or one of its variants.

    Variants are the base upper-, lower-, title- and case-folded, in NFC, NFD and NFKC, cut
    short, with a NUL appended, and with non-ASCII replaced by ``?``. Drawing several keys
    from one test often gives two variants of one base: distinct keys a correct backend
    keeps apart.
    """
    bases = st.sampled_from(
        ["Key", "straße", "café", "cafe\u0301", "Å", "\ufb01le", "İstanbul", "x日本", "k" * 251]
    )
    return st.builds(lambda base, variant: _VARIANTS[variant](base), bases, st.integers(0, 9))


def colliding_pairs(longest: int = 64) -> st.SearchStrategy[list[str]]:
    """Two distinct keys of one of ``check_keys``'s families (case, Unicode normalisation,
    length, non-ASCII, separators and their escapes, cache prefixes...), keys up to
    ``longest`` characters: a backend that merges them is caught whenever both are written
    and read, on every seed."""
    families = [keys for _, keys in key_families(longest) if len(set(keys)) >= 2]
    return st.sampled_from(families).flatmap(
        lambda keys: st.lists(st.sampled_from(keys), min_size=2, max_size=2, unique=True)
    )


def key_family(longest: int = 64) -> st.SearchStrategy[list[str]]:
    """All the keys of one of ``check_keys``'s families (keys up to ``longest`` characters):
    written together and read back, any merge of two of them shows."""
    families = [list(dict.fromkeys(keys)) for _, keys in key_families(longest)]
    return st.sampled_from(families)


def fault_plans(
    *,
    operations: tuple[str, ...] = OPERATIONS,
    max_latency: float = 0.0,
    errors: st.SearchStrategy[SideEffect] | None = None,
) -> st.SearchStrategy[FaultPlan]:
    """Fault plans of every trigger kind, for some of ``operations``.

    Each plan raises an error drawn from ``errors`` (default: the simulated outage, a
    ``BackendUnavailableError``); with ``max_latency`` above 0, plans may also add up to
    that many seconds to each call they trigger on.
    """
    ops = st.one_of(
        st.none(),
        st.frozensets(st.sampled_from(operations), min_size=1),
    )
    latency = st.just(0.0) if max_latency <= 0 else st.floats(0.0, max_latency)

    def build(
        *,
        kind: str,
        number: int,
        start: int,
        length: int,
        p: float,
        seed: int,
        chosen: frozenset[str] | None,
        delay: float,
        error: SideEffect | None,
    ) -> FaultPlan:
        options: dict[str, Any] = {"operations": chosen, "latency": delay, "error": error}
        if kind == "nth":
            options["nth"] = number
        elif kind == "every":
            options["every"] = number
        elif kind == "probability":
            options["probability"], options["seed"] = p, seed
        elif kind == "window":
            options["window"] = (start, start + length)
        return FaultPlan(**options)

    return st.builds(
        build,
        kind=st.sampled_from(["always", "nth", "every", "probability", "window"]),
        number=st.integers(1, 10),
        start=st.integers(1, 10),
        length=st.integers(0, 10),
        p=st.floats(0.0, 1.0),
        seed=st.integers(0, 2**32 - 1),
        chosen=ops,
        delay=latency,
        error=st.none() if errors is None else errors,
    )
