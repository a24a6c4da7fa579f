"""The layers of values set on cache classes' ``backend_override_cls``, undone in any order.

``remote_cache.torch`` (its bridge) and ``remote_cache.testing`` (``override_backends`` and the
fixtures) both set the hook through here, so that either may be undone first.
"""

from __future__ import annotations

import threading
from typing import Any

from remote_cache._process import at_fork

__all__ = ["OverrideLayer", "pop_override", "push_override"]

_MISSING = object()
_HOOK = "backend_override_cls"


class OverrideLayer:
    """One value set on ``cls.backend_override_cls`` by ``push_override``, until popped."""

    __slots__ = ("below", "cls", "value")

    def __init__(self, cls: type[Any], value: object, below: object) -> None:
        self.cls = cls
        self.value = value
        self.below = below
        """What the class had of its own before this layer (``_MISSING``: nothing)."""


# Every class's layers in force, oldest first: the bridge (remote_cache.torch) and
# override_backends both go through here, so that either may be undone first.
_layers: dict[type[Any], list[OverrideLayer]] = {}
_layers_lock = threading.RLock()


def _after_fork_in_child() -> None:
    """A new lock for a forked child: a thread that held it in the parent does not exist here."""
    global _layers_lock  # noqa: PLW0603 - the parent's may be held by a thread not here
    _layers_lock = threading.RLock()


at_fork(after_in_child=_after_fork_in_child)


def push_override(cls: type[Any], value: object) -> OverrideLayer:
    """Set ``cls``'s own ``backend_override_cls`` to ``value``; ``pop_override`` undoes it."""
    with _layers_lock:
        layer = OverrideLayer(cls, value, vars(cls).get(_HOOK, _MISSING))
        setattr(cls, _HOOK, value)
        _layers.setdefault(cls, []).append(layer)
        return layer


def pop_override(layer: OverrideLayer) -> None:
    """Undo ``layer``, whether it is the last one set on its class or not; idempotent.

    The last layer gives the class back what it had before it (only if the attribute is
    still its value: else whoever changed it since restores it). A layer under others is
    taken out of the chain: the one above it will give back what this one had found, so
    that once every layer is undone, in any order, the class has exactly what it had
    before the first.
    """
    with _layers_lock:
        stack = _layers.get(layer.cls, [])
        index = next((i for i, each in enumerate(stack) if each is layer), None)
        if index is None:
            return
        if index + 1 < len(stack):
            stack[index + 1].below = layer.below
        elif vars(layer.cls).get(_HOOK, _MISSING) is layer.value:
            if layer.below is _MISSING:
                delattr(layer.cls, _HOOK)
            else:
                setattr(layer.cls, _HOOK, layer.below)
        del stack[index]
        if not stack:
            del _layers[layer.cls]
