"""Process-wide state: one function that resets all of it, and one way to hook ``os.fork``.

Each module that keeps state for the whole process (counters, breakers, shared clients, the
outage log, sweep times) registers how to forget it with ``on_reset``, and how to stay safe
across a fork with ``at_fork``, when it is imported; nothing else calls
``os.register_at_fork``. ``reset_process_state`` then resets whatever has been imported, so
the test fixtures and the test suite start each test from the same clean process.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["at_fork", "generation", "on_reset", "reset_process_state"]

_Handler = Callable[[], None]

generation = 0
"""How many forks separate this process from the first one: 0 there, 1 in its children.

Anything tagged with an older value (a client, a connection) belongs to a parent process.
"""

_resets: list[tuple[_Handler, bool]] = []


def on_reset(handler: _Handler, *, counters: bool = False) -> _Handler:
    """Have ``reset_process_state`` call ``handler`` (in registration order); returns it.

    ``counters``: the handler clears what a test sets up for itself (counters, its clock),
    which a reset with ``counters=False`` keeps.
    """
    _resets.append((handler, counters))
    return handler


def reset_process_state(*, counters: bool = True) -> None:
    """Forget every process-wide state: breakers, shared clients, outages, sweeps, counters.

    For tests and after reconfiguring servers; a module not imported yet has no state to
    forget. ``counters=False`` keeps what the test itself set up, ``cache_stats`` and an
    installed test clock (a block inside a test that points the caches at another server,
    while the test goes on counting on its clock).
    """
    for handler, clears_counters in list(_resets):
        if counters or not clears_counters:
            handler()


def at_fork(
    *,
    before: _Handler | None = None,
    after_in_parent: _Handler | None = None,
    after_in_child: _Handler | None = None,
) -> None:
    """Run the given handlers around every ``os.fork`` (nothing where fork is absent)."""
    chosen = {
        "before": before,
        "after_in_parent": after_in_parent,
        "after_in_child": after_in_child,
    }
    given = {when: handler for when, handler in chosen.items() if handler is not None}
    if not given:
        raise TypeError("at_fork needs at least one handler")
    if hasattr(os, "register_at_fork"):  # Windows has no fork
        os.register_at_fork(**given)


def _count_fork() -> None:
    global generation  # noqa: PLW0603 - a module attribute, read on every Redis call
    generation += 1


at_fork(after_in_child=_count_fork)
