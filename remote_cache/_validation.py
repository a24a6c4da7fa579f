"""Argument checks shared by the caches and backends, with one message style."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NoReturn

__all__ = [
    "check_cache_id",
    "check_key",
    "check_keys",
    "check_mapping",
    "check_redis_cache_id",
    "reject_key",
]


def reject_key(key: object) -> NoReturn:
    """Raise the error that a bad ``key`` deserves."""
    if not isinstance(key, str):
        raise TypeError(f"Expected a non-empty str but got key={key!r} (type={type(key).__name__})")
    raise ValueError("Expected a non-empty str but got key='' (an empty key)")


def check_key(key: object) -> str:
    """Return ``key`` when it is a non-empty str, else raise TypeError or ValueError."""
    if not isinstance(key, str) or not key:
        reject_key(key)
    return key


def check_keys(keys: Iterable[str]) -> list[str]:
    """Return the distinct keys of ``keys`` in order, each checked."""
    if isinstance(keys, (str, bytes)):
        raise TypeError(
            f"Expected an iterable of keys but got keys={keys!r} (type={type(keys).__name__})"
        )
    return [check_key(key) for key in dict.fromkeys(keys)]


def check_mapping(mapping: Mapping[str, object]) -> None:
    """Check that ``mapping`` maps valid keys to values that are not None."""
    if not isinstance(mapping, Mapping):
        raise TypeError(
            f"Expected a mapping but got mapping={mapping!r} (type={type(mapping).__name__})"
        )
    for key, value in mapping.items():
        check_key(key)
        if value is None:
            raise ValueError(f"None cannot be stored (key={key!r}): it reads back as a miss")


def check_cache_id(cache_id: object) -> str:
    """Return ``cache_id`` when it is a non-empty str, else raise TypeError or ValueError."""
    if not isinstance(cache_id, str):
        raise TypeError(
            f"Expected a non-empty str but got cache_id={cache_id!r} "
            f"(type={type(cache_id).__name__})"
        )
    if not cache_id:
        raise ValueError("Expected a non-empty str but got cache_id='' (an empty cache id)")
    return cache_id


def check_redis_cache_id(cache_id: object) -> str:
    """Return ``cache_id`` when upstream's key format keeps its keys apart from every other's.

    In ``pt2:{cache_id}::{key}:c1`` the cache id is the text between ``pt2:`` and the first
    ``::``, so a cache id must not contain ``::``, nor start or end with ``:`` (which would
    form a ``::`` with ``pt2:`` or with the separator): ``a::b`` with key ``x`` would be cache
    ``a``'s key ``b::x``. Raises TypeError for a non-str, ValueError for any other bad id.
    """
    text = check_cache_id(cache_id)
    if "::" in text or text.startswith(":") or text.endswith(":"):
        raise ValueError(
            f"Expected a cache id without '::' that neither starts nor ends with ':' but got "
            f"cache_id={text!r}: in the keys pt2:{{cache_id}}::{{key}}:c1 the cache id "
            "ends at the first '::', so its keys would be another cache id's"
        )
    return text
