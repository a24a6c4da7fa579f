"""``check_backend``: the backend contract and property suite for any backend, pytest-free.

``check_backend(make_backend)`` runs everything; the parts are public too, and
``BackendConformance`` turns them into test methods for pytest or unittest.

Deterministic probes come first (values up to ``LARGEST_VALUE`` bytes, key families that
collide when a backend folds case, normalises Unicode, truncates or mangles keys, batches,
overwrites), then concurrent writers (threads, and processes for backends that declare
``shared_between_processes``), then the Hypothesis properties. A violation raises
``AssertionError`` naming the backend, the check, the first failing operation, the key
(shortened when long), what was expected and what came back, and how to replay it.

Import from here; the private modules hold one job each, lowest first:

- ``_diagnostics``: the failure messages every check raises.
- ``_probe``: the probe the deterministic checks call a backend through, and the limits
  (``LARGEST_VALUE``, ``LONGEST_KEY``, ``MIN_VALUE_LIMIT``).
- ``_contract``, ``_values``, ``_keys``: the deterministic checks (contract, batches,
  overwrites, counters; values; key families).
- ``_worker``, ``_race``, ``_processes``, ``_concurrency``: the concurrency check (one
  worker's calls, the race the workers run, the process half, ``check_concurrency``).
- ``_properties``: the Hypothesis properties (``check_model``, ``check_json_serde``).
- ``_runner``: ``check_backend``; ``_adapter``: ``BackendConformance``.
"""

from __future__ import annotations

from remote_cache.testing._call_deadline import DEFAULT_CALL_DEADLINE, call_deadline
from remote_cache.testing._key_families import LONGEST_KEY
from remote_cache.testing.conformance._adapter import BackendConformance
from remote_cache.testing.conformance._capacity import LARGEST_CAPACITY_CHECKED, check_capacity
from remote_cache.testing.conformance._concurrency import check_concurrency
from remote_cache.testing.conformance._contract import (
    check_batches,
    check_contract,
    check_overwrites,
    check_stats,
)
from remote_cache.testing.conformance._failures import check_failures
from remote_cache.testing.conformance._keys import check_keys, key_families
from remote_cache.testing.conformance._probe import (
    LARGEST_VALUE,
    MIN_VALUE_LIMIT,
)
from remote_cache.testing.conformance._probe import BackendFactory as BackendFactory
from remote_cache.testing.conformance._properties import check_json_serde, check_model
from remote_cache.testing.conformance._runner import check_backend
from remote_cache.testing.conformance._time import READ_BACK_AFTER, check_time
from remote_cache.testing.conformance._values import check_values

__all__ = [
    "DEFAULT_CALL_DEADLINE",
    "LARGEST_CAPACITY_CHECKED",
    "LARGEST_VALUE",
    "LONGEST_KEY",
    "MIN_VALUE_LIMIT",
    "READ_BACK_AFTER",
    "BackendConformance",
    "call_deadline",
    "check_backend",
    "check_batches",
    "check_capacity",
    "check_concurrency",
    "check_contract",
    "check_failures",
    "check_json_serde",
    "check_keys",
    "check_model",
    "check_overwrites",
    "check_stats",
    "check_time",
    "check_values",
    "key_families",
]
