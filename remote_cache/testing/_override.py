"""Context managers that swap cache backends and the stats registry, restoring them exactly."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from remote_cache import CacheStats, RemoteCache, RemoteCacheBackend, cache_stats

__all__ = ["all_cache_classes", "isolated_cache_stats", "override_backends"]

_MISSING = object()

BackendFactory = Callable[[], RemoteCacheBackend[Any]]


def all_cache_classes() -> list[type[RemoteCache[Any]]]:
    """``RemoteCache`` and every subclass defined so far."""
    found: list[type[RemoteCache[Any]]] = []
    pending: list[type[RemoteCache[Any]]] = [RemoteCache]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


@contextlib.contextmanager
def override_backends(
    factory: BackendFactory,
    classes: Iterable[type[RemoteCache[Any]]] | None = None,
) -> Iterator[BackendFactory]:
    """Make caches built inside the block get their backend from ``factory()``.

    With ``classes`` None, every cache class is covered (``RemoteCache`` itself, so classes
    defined inside the block too, and every subclass with an override of its own); else just
    the classes given (and their subclasses that do not set their own). On exit each class
    gets back exactly what it had: its own value, or no attribute of its own. Nestable.
    """
    if not callable(factory):
        raise TypeError(
            f"Expected a callable but got factory={factory!r} (type={type(factory).__name__})"
        )
    targets: list[type[RemoteCache[Any]]]
    if classes is None:
        targets = [
            RemoteCache,
            *(c for c in all_cache_classes() if "backend_override_cls" in vars(c)),
        ]
    else:
        targets = list(dict.fromkeys(classes))
        for cls in targets:
            if not (isinstance(cls, type) and issubclass(cls, RemoteCache)):
                raise TypeError(f"Expected RemoteCache subclasses but got {cls!r}")
    saved = [(cls, vars(cls).get("backend_override_cls", _MISSING)) for cls in targets]
    try:
        for cls in targets:
            # staticmethod: reading it through an instance must not bind the factory.
            setattr(cls, "backend_override_cls", staticmethod(factory))  # noqa: B010
        yield factory
    finally:
        for cls, previous in reversed(saved):
            if previous is _MISSING:
                with contextlib.suppress(AttributeError):
                    delattr(cls, "backend_override_cls")
            else:
                setattr(cls, "backend_override_cls", previous)  # noqa: B010


@contextlib.contextmanager
def isolated_cache_stats() -> Iterator[CacheStats]:
    """Give the block empty counters in the global ``cache_stats``; put the old ones back after."""
    previous = cache_stats._swap({})
    try:
        yield cache_stats
    finally:
        cache_stats._swap(previous)
