"""``create_cache``: build a cache by class name, never raising."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, cast

from remote_cache import _caches
from remote_cache._controller import RemoteCache
from remote_cache._serde import JsonDataTy

__all__ = ["ENTRY_POINT_GROUP", "create_cache", "resolve_cache_class"]

log = logging.getLogger("remote_cache")

PUBLIC_CACHE_CLASSES: dict[str, type[RemoteCache[Any]]] = {
    "RemoteCache": RemoteCache,
    **{name: getattr(_caches, name) for name in _caches.__all__ if name != "JsonCache"},
}
"""The cache classes ``remote_cache`` exports, by name: what a bare name passed to
``create_cache`` means (``JsonCache`` is a base of ours, not exported)."""

ENTRY_POINT_GROUP = "remote_cache.caches"


def resolve_cache_class(name: str) -> type[RemoteCache[Any]]:
    """Find a cache class by name.

    ``name`` is a cache class exported by ``remote_cache`` (``"RemoteFxGraphCache"``), a
    ``"module:Class"`` path, or the name of an entry point in the ``remote_cache.caches``
    group. Raises LookupError when nothing matches, TypeError when the match is not a
    ``RemoteCache`` subclass.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"Expected a non-empty str but got cache class name={name!r}")
    found: object
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        found = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    else:
        found = PUBLIC_CACHE_CLASSES.get(name)
        if found is None:
            matches = entry_points(group=ENTRY_POINT_GROUP, name=name)
            if not matches:
                raise LookupError(
                    f"no cache class {name!r}: not in remote_cache, not 'module:Class', "
                    f"and no entry point of that name in the {ENTRY_POINT_GROUP!r} group"
                )
            found = next(iter(matches)).load()
    if not (isinstance(found, type) and issubclass(found, RemoteCache)):
        raise TypeError(f"{name!r} is {found!r}, not a RemoteCache subclass")
    return found


def _build(key: str, class_name: str) -> RemoteCache[JsonDataTy]:
    # Cache classes are built from a cache id alone, as upstream's callers do.
    cache_cls = cast(Callable[[str], RemoteCache[JsonDataTy]], resolve_cache_class(class_name))
    return cache_cls(key)


def create_cache(
    key: str,
    is_fbcode: bool = False,
    fb_cache_cls: str | None = None,
    oss_cache_cls: str | None = None,
    *,
    local_cache_cls: str | None = None,
) -> RemoteCache[JsonDataTy] | None:
    """Build ``cache_cls(key)``: ``fb_cache_cls`` when ``is_fbcode``, else ``oss_cache_cls``.

    Upstream's call forms work unchanged. When that class cannot be built (a bad name,
    redis-py missing, a bad setting) and ``local_cache_cls`` is given, that class is built
    instead. Never raises: a failure logs one warning line and the result is None (or the
    local cache).
    """
    chosen = fb_cache_cls if is_fbcode else oss_cache_cls
    problem: str
    if chosen is not None:
        try:
            return _build(key, chosen)
        except Exception as exc:  # noqa: BLE001 - the contract: never raise, warn once
            problem = f"{chosen} ({type(exc).__name__}: {exc})"
    else:
        problem = "no cache class named"
    if local_cache_cls is not None:
        try:
            cache = _build(key, local_cache_cls)
        except Exception as exc:  # noqa: BLE001 - the contract: never raise, warn once
            problem += f"; nor {local_cache_cls} ({type(exc).__name__}: {exc})"
        else:
            if chosen is not None:
                log.warning(
                    "Unable to create a remote cache: %s; using %s", problem, local_cache_cls
                )
            return cache
    log.warning("Unable to create a remote cache: %s", problem)
    log.debug("create_cache(%r) failed", key, exc_info=True)
    return None
