"""Fork safety: a counter of forks, and handlers that run in the child of each one."""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["after_fork_in_child", "generation"]

generation = 0
"""How many forks separate this process from the first one: 0 there, 1 in its children.

Anything tagged with an older value (a client, a connection) belongs to a parent process.
"""


def after_fork_in_child(handler: Callable[[], None]) -> None:
    """Run ``handler`` in the child right after every ``os.fork`` (nothing where fork is absent)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=handler)


def _count_fork() -> None:
    global generation  # noqa: PLW0603 - a module attribute, read on every Redis call
    generation += 1


after_fork_in_child(_count_fork)
