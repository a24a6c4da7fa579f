"""Context managers that swap cache backends and the stats registry, restoring them exactly."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from remote_cache import CacheStats, RemoteCache, RemoteCacheBackend, cache_stats
from remote_cache._override_layers import OverrideLayer, pop_override, push_override

__all__ = ["all_cache_classes", "isolated_cache_stats", "override_backends"]

BackendFactory = Callable[[], RemoteCacheBackend[Any]]


def _is_torch_cache_class(cls: object) -> bool:
    """Whether ``cls`` is one of torch's cache classes (torch is never imported to find out)."""
    module = sys.modules.get("torch._inductor.remote_cache")
    return module is not None and isinstance(cls, type) and issubclass(cls, module.RemoteCache)


def _torch_factory(cls: type[Any], factory: BackendFactory) -> BackendFactory:
    """``factory`` for torch's class ``cls``: its backends wrapped fail-open, counted under
    the class's name, as ``remote_cache.torch`` does."""
    from remote_cache.torch import FailOpenTorchBackend

    name = cls.__name__

    def torch_factory() -> Any:
        return FailOpenTorchBackend(name, factory())

    return torch_factory


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
    gets back exactly what it had: its own value, or no attribute of its own. Nestable, and
    robust to being undone out of order with other blocks and with ``remote_cache.torch``
    bridges: once all are undone, in any order, each class has what it had before them.

    ``classes`` may also name torch's cache classes (``torch._inductor.remote_cache``):
    their backends are then wrapped fail-open as ``remote_cache.torch`` does, and torch's
    memoized caches are dropped on entry and exit.
    """
    if not callable(factory):
        raise TypeError(
            f"Expected a callable but got factory={factory!r} (type={type(factory).__name__})"
        )
    targets: list[type[Any]]
    if classes is None:
        targets = [
            RemoteCache,
            *(c for c in all_cache_classes() if "backend_override_cls" in vars(c)),
        ]
    else:
        targets = list(dict.fromkeys(classes))
        for cls in targets:
            if not (
                isinstance(cls, type) and issubclass(cls, RemoteCache)
            ) and not _is_torch_cache_class(cls):
                raise TypeError(
                    f"Expected RemoteCache subclasses (ours or torch's) but got {cls!r}"
                )
    torch_targets = [cls for cls in targets if _is_torch_cache_class(cls)]
    pushed: list[OverrideLayer] = []
    try:
        for cls in targets:
            own = _torch_factory(cls, factory) if cls in torch_targets else factory
            # staticmethod: reading it through an instance must not bind the factory.
            pushed.append(push_override(cls, staticmethod(own)))
        if torch_targets:
            _clear_torch_memos()
        yield factory
    finally:
        for layer in reversed(pushed):
            pop_override(layer)
        if torch_targets:
            _clear_torch_memos()


def _clear_torch_memos() -> None:
    from remote_cache.torch import clear_memoized_caches

    clear_memoized_caches()


@contextlib.contextmanager
def isolated_cache_stats() -> Iterator[CacheStats]:
    """Give the block empty counters in the global ``cache_stats``; put the old ones back after."""
    previous = cache_stats.swap({})
    try:
        yield cache_stats
    finally:
        cache_stats.swap(previous)
