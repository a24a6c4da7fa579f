"""``check_backend``: every conformance check in order, then the cache state machine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from remote_cache.testing._call_deadline import DEFAULT_CALL_DEADLINE
from remote_cache.testing._call_deadline import call_deadline as deadline
from remote_cache.testing._key_families import LONGEST_KEY
from remote_cache.testing.conformance._capacity import check_capacity
from remote_cache.testing.conformance._concurrency import check_concurrency
from remote_cache.testing.conformance._contract import (
    check_batches,
    check_contract,
    check_overwrites,
    check_stats,
)
from remote_cache.testing.conformance._failures import check_failures, no_broken_store_note
from remote_cache.testing.conformance._keys import check_keys
from remote_cache.testing.conformance._probe import LARGEST_VALUE, BackendFactory
from remote_cache.testing.conformance._properties import check_model
from remote_cache.testing.conformance._time import check_time
from remote_cache.testing.conformance._values import check_values
from remote_cache.testing.stateful import run_cache_machine


@contextlib.contextmanager
def _quiet_planted_faults() -> Iterator[None]:
    """The cache machine's planted faults are logged by design (hundreds of warnings): show
    only errors from the ``remote_cache`` logger meanwhile, and restore its level after."""
    logger = logging.getLogger("remote_cache")
    previous = logger.level
    if logger.getEffectiveLevel() < logging.ERROR:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def check_backend(
    make_backend: BackendFactory,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
    largest_value: int = LARGEST_VALUE,
    longest_key: int = LONGEST_KEY,
    call_deadline: float | None = DEFAULT_CALL_DEADLINE,
    make_broken_backend: BackendFactory | None = None,
) -> list[str]:
    """Check the backend contract against backends from ``make_backend`` (fresh, empty each call).

    Runs, in order: ``check_contract`` (absent keys, falsy values, overwrites, batches,
    isolation of the factory's backends), ``check_values`` (sizes up to ``largest_value``
    bytes, the declared ``max_value_bytes`` refused loudly above), ``check_keys`` (key
    families up to ``longest_key`` characters that collide under case folding, Unicode
    normalisation, truncation or a dropped prefix), ``check_overwrites`` (no stale reads),
    ``check_batches``, ``check_stats`` (exact counters), ``check_time`` (the entries are
    still there half a second later, and just before a declared ``expire``),
    ``check_capacity`` (a store filled past its declared ``capacity_bytes`` keeps the newest),
    ``check_failures`` (with ``make_broken_backend``), ``check_concurrency`` (threads, and
    processes for ``shared_between_processes`` backends), ``check_model`` (Hypothesis: any
    sequence of calls agrees with a dict) and the cache state machine of
    ``remote_cache.testing.stateful`` (caches, injected faults, corrupt entries, exact
    counters). ``examples`` defaults to the loaded Hypothesis profile's ``max_examples``;
    ``random_seed`` makes the random parts repeatable (None: a random seed, named in the
    failure). ``make_broken_backend`` makes a backend whose store cannot be reached, for
    ``check_failures`` (every call raises a ``BackendError`` subclass). Returns what it
    could not check, in words (without ``make_broken_backend``: the backend's failures).
    Each backend call gets ``call_deadline`` seconds (None: unbounded); one that
    does not return by then fails its check, named (on the main thread, where an alarm can
    interrupt it). Raises ``AssertionError`` at the first violation. pytest-free.
    """
    with deadline(call_deadline):
        return _check_everything(
            make_backend,
            examples=examples,
            random_seed=random_seed,
            on_example=on_example,
            largest_value=largest_value,
            longest_key=longest_key,
            make_broken_backend=make_broken_backend,
        )


def _check_everything(
    make_backend: BackendFactory,
    *,
    examples: int | None,
    random_seed: int | None,
    on_example: Callable[[], None] | None,
    largest_value: int,
    longest_key: int,
    make_broken_backend: BackendFactory | None,
) -> list[str]:
    unchecked = []
    check_contract(make_backend)
    check_values(make_backend, largest=largest_value, longest=longest_key)
    check_keys(make_backend, longest=longest_key)
    check_overwrites(make_backend)
    check_batches(make_backend)
    check_stats(make_backend)
    time_note = check_time(make_backend)
    if time_note is not None:
        unchecked.append(time_note)
    capacity_note = check_capacity(make_backend)
    if capacity_note is not None:
        unchecked.append(capacity_note)
    if make_broken_backend is None:
        unchecked.append(no_broken_store_note(make_backend))
    else:
        check_failures(make_broken_backend)
    check_concurrency(make_backend, random_seed=random_seed)
    check_model(make_backend, examples=examples, random_seed=random_seed, on_example=on_example)
    with _quiet_planted_faults():
        run_cache_machine(
            make_backend, examples=examples, random_seed=random_seed, on_example=on_example
        )
    return unchecked
