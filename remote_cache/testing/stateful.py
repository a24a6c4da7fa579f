"""A Hypothesis state machine: caches over injected faults, checked against a model.

The machine builds caches over ``FaultInjectingBackend(make_backend())``, then runs random
sequences of ``get``, ``put``, ``get_many`` and ``put_many`` on them while Hypothesis adds
fault plans, takes the backend down and brings it back, and writes corrupt entries
underneath. A model (the bytes each backend key should hold, and the counters each cache
and backend should show) predicts every answer. After each step it checks that values
agree with the model, that ``cache_stats`` is exact for every cache and both backends, and
that each failed call's sample carries the injected error as its ``fail_reason``.

This module builds and runs the machine (``cache_machine``, ``run_cache_machine``); its
rules and invariant are in ``_stateful_machine``, the model and the default caches in
``_stateful_model``.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import run_state_machine_as_test

from remote_cache.testing._call_deadline import CallOverdue, overdue_message
from remote_cache.testing._hypothesis_settings import pick_seed, replayable, suite_settings
from remote_cache.testing._stateful_machine import BackendFactory, CacheMachine, CachesFactory
from remote_cache.testing._stateful_model import (
    COUNTERS,  # noqa: F401 - still importable from here, where it was defined
    RawBytesCache,
    default_caches,
)

__all__ = [
    "CacheMachine",
    "RawBytesCache",
    "cache_machine",
    "default_caches",
    "run_cache_machine",
]


def cache_machine(
    make_backend: BackendFactory,
    *,
    make_caches: CachesFactory = default_caches,
    on_example: Callable[[], None] | None = None,
) -> type[CacheMachine]:
    """A ``CacheMachine`` subclass over backends from ``make_backend``.

    ``make_caches(backend)`` builds the caches to drive (default: ``default_caches``);
    ``on_example`` is called at the start of each example (for progress reports).
    """
    if not callable(make_backend):
        raise TypeError(f"Expected a callable but got make_backend={make_backend!r}")
    return type(
        "CacheMachine",
        (CacheMachine,),
        {
            "make_backend": staticmethod(make_backend),
            "make_caches": staticmethod(make_caches),
            "on_example": staticmethod(on_example) if on_example else None,
        },
    )


def run_cache_machine(
    make_backend: BackendFactory,
    *,
    make_caches: CachesFactory = default_caches,
    examples: int | None = None,
    steps: int = 30,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
) -> None:
    """Run the machine over backends from ``make_backend``; ``AssertionError`` on a mismatch.

    ``examples`` defaults to the loaded Hypothesis profile's ``max_examples``; each runs up
    to ``steps`` steps. ``random_seed`` makes the run repeatable (None: a random seed, named
    in the failure with the shrunk steps). pytest-free.
    """
    machine = cache_machine(make_backend, make_caches=make_caches, on_example=on_example)
    seed_value = pick_seed(random_seed)
    try:
        run_state_machine_as_test(
            hypothesis_seed(seed_value)(machine),
            settings=suite_settings(examples, stateful_step_count=steps),
        )
    except CallOverdue as exc:  # past Hypothesis, unshrunk: each retry would wait again
        replay = f"run_cache_machine(make_backend, random_seed={seed_value})"
        raise replayable(AssertionError(overdue_message(exc)), replay) from None
    except AssertionError as exc:
        replay = f"run_cache_machine(make_backend, random_seed={seed_value})"
        raise replayable(exc, replay) from exc.__cause__
