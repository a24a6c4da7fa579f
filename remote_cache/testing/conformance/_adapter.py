"""``BackendConformance``: the conformance suite as test methods, for pytest and unittest."""

from __future__ import annotations

import unittest
from typing import Any, ClassVar

from remote_cache import RemoteCacheBackend
from remote_cache.testing._call_deadline import DEFAULT_CALL_DEADLINE, call_deadline
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
from remote_cache.testing.conformance._properties import check_model
from remote_cache.testing.conformance._runner import _quiet_planted_faults
from remote_cache.testing.conformance._time import check_time
from remote_cache.testing.conformance._values import check_values
from remote_cache.testing.stateful import run_cache_machine


class BackendConformance:
    """The conformance suite as test methods: subclass it and define ``make_backend``.

    pytest collects subclasses named ``Test...``; unittest users mix in ``TestCase`` too::

        class TestSqliteBackend(BackendConformance):
            def make_backend(self) -> SqliteBackend:
                return SqliteBackend(":memory:")

    ``examples`` (None: the Hypothesis profile's ``max_examples``), ``random_seed`` and
    ``call_deadline`` (seconds each backend call may take; None: unbounded) are class
    attributes to override.
    """

    examples: ClassVar[int | None] = None
    random_seed: ClassVar[int | None] = None
    call_deadline: ClassVar[float | None] = DEFAULT_CALL_DEADLINE

    def make_backend(self) -> RemoteCacheBackend[Any]:
        """Return a fresh, empty backend (each call a new one)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_backend()")

    def test_entries_last(self) -> None:
        """Entries are still there a while after they were written, and a store filled past
        its declared capacity keeps the newest."""
        with call_deadline(self.call_deadline):
            check_time(self.make_backend)
            check_capacity(self.make_backend)

    def make_broken_backend(self) -> RemoteCacheBackend[Any]:
        """Return a backend whose store cannot be reached (define it to have failures
        checked; ``test_failures`` is skipped, saying so, without it)."""
        raise NotImplementedError

    def test_failures(self) -> None:
        """A store that cannot be reached: every call raises a BackendError subclass."""
        if type(self).make_broken_backend is BackendConformance.make_broken_backend:
            raise unittest.SkipTest(no_broken_store_note(self.make_backend))
        with call_deadline(self.call_deadline):
            check_failures(self.make_broken_backend)

    def test_contract(self) -> None:
        """Absent keys, falsy and large values, overwrites, batches, isolation."""
        with call_deadline(self.call_deadline):
            check_contract(self.make_backend)

    def test_values(self) -> None:
        """Values up to 4 MiB read back whole, as bytes; declared limits refused loudly."""
        with call_deadline(self.call_deadline):
            check_values(self.make_backend)

    def test_keys(self) -> None:
        """Keys that broken backends make collide each hold their own value."""
        with call_deadline(self.call_deadline):
            check_keys(self.make_backend)

    def test_batches(self) -> None:
        """``get_many`` returns exactly the stored keys, each with its own value."""
        with call_deadline(self.call_deadline):
            check_batches(self.make_backend)

    def test_overwrites(self) -> None:
        """No stale read after an overwrite."""
        with call_deadline(self.call_deadline):
            check_overwrites(self.make_backend)

    def test_stats(self) -> None:
        """Hits, misses and puts counted exactly."""
        with call_deadline(self.call_deadline):
            check_stats(self.make_backend)

    def test_concurrency(self) -> None:
        """Concurrent writers lose nothing; readers never see a torn value."""
        with call_deadline(self.call_deadline):
            check_concurrency(self.make_backend, random_seed=self.random_seed)

    def test_agrees_with_a_dict(self) -> None:
        """Any sequence of calls agrees with a dict."""
        with call_deadline(self.call_deadline):
            check_model(self.make_backend, examples=self.examples, random_seed=self.random_seed)

    def test_cache_machine(self) -> None:
        """Caches over the backend, with injected faults, agree with the model."""
        with call_deadline(self.call_deadline), _quiet_planted_faults():
            run_cache_machine(
                self.make_backend, examples=self.examples, random_seed=self.random_seed
            )
