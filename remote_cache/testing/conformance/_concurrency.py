"""``check_concurrency``: concurrent writers lose nothing, and readers see whole values meant
for them; threads first, then processes for backends ``shared_between_processes``."""

from __future__ import annotations

import threading
import time
from typing import Any

from remote_cache import RemoteCacheBackend
from remote_cache.testing._call_deadline import DEFAULT_CALL_DEADLINE, call_deadline_seconds
from remote_cache.testing._hypothesis_settings import pick_seed
from remote_cache.testing.conformance._diagnostics import _name
from remote_cache.testing.conformance._probe import BackendFactory, _Probe
from remote_cache.testing.conformance._processes import _check_processes
from remote_cache.testing.conformance._race import (
    _fast_switching,
    _Outcome,
    _plans,
    _prepare,
    _Race,
)
from remote_cache.testing.conformance._worker import _Problem


def _in_thread(
    race: _Race,
    backend: RemoteCacheBackend[Any],
    worker: int,
    keys: dict[str, bytes],
    problems: list[_Problem],
) -> None:
    problem = race.work(backend, worker, keys)
    if problem is not None:
        problems.append(problem)


def check_concurrency(
    make_backend: BackendFactory,
    *,
    threads: int = 4,
    processes: int = 2,
    keys_per_writer: int = 48,
    rounds: int = 64,
    random_seed: int | None = None,
) -> str:
    """Concurrent writers lose nothing, and readers see whole values meant for them.

    ``threads`` threads share one backend. At once, they: write ``keys_per_writer``
    distinct keys each (by ``put`` and ``put_many``); then one overwrites a 256 KiB value
    ``rounds`` times while the others read it, their own keys and keys shared by all (each
    read must return the value of the key asked for, whole); then all write one key
    together (no crash; one of the values is left whole); then one overwrites a key the
    others have read, and they must see the new value. Afterwards every key must read back.
    Threads switch every 10 µs meanwhile (restored after), so races show on every run.

    When the backend declares ``shared_between_processes``, the same runs with
    ``processes`` processes, each with a backend alike to this one: the backend pickled and
    unpickled in a fresh interpreter (the ``spawn`` start method: its own hash seed, its
    own connections), or, when it cannot be pickled, this backend inherited by ``fork``.
    Values come from ``random_seed``. Returns a one-line note of what ran (how the
    processes were started, and why).
    """
    check = "check_concurrency"
    seed_value = pick_seed(random_seed)
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    backend = make_backend()
    race = _Race.begin(seed_value, "conc", threads, rounds, threading, other_processes=False)
    _prepare(backend, _Probe(backend, check, replay), race, b"same: the first value")
    plans = _plans(seed_value, "conc", threads, keys_per_writer)
    race.learn(plans)
    problems: list[_Problem] = []
    workers = [
        threading.Thread(
            target=_in_thread, args=(race, backend, worker, plan, problems), daemon=True
        )
        for worker, plan in enumerate(plans)
    ]
    with _fast_switching():
        for worker in workers:
            worker.start()
        _join_within(workers, backend, replay)
    expected = {key: value for plan in plans for key, value in plan.items()}
    _Outcome(check, f"{threads} threads", replay, expected).verify(backend, problems)
    note = f"{threads} threads"
    if getattr(backend, "shared_between_processes", False):
        note += ", " + _check_processes(
            backend,
            check=check,
            processes=processes,
            keys_per_writer=keys_per_writer,
            rounds=rounds,
            seed_value=seed_value,
        )
    return note


def _join_within(workers: list[threading.Thread], backend: object, replay: str) -> None:
    """Wait for the worker threads, each call of theirs bounded by the call deadline in force
    (10 s by default) times the calls a worker may have left; a thread still running then is
    stuck (two of the backend's own locks taken in opposite orders?), and fails the check."""
    limit = (call_deadline_seconds() or DEFAULT_CALL_DEADLINE) * 12
    ends = time.monotonic() + limit
    for worker in workers:
        worker.join(max(0.0, ends - time.monotonic()))
    stuck = [worker.name for worker in workers if worker.is_alive()]
    if stuck:
        raise AssertionError(
            f"{_name(backend)}: check_concurrency: {len(stuck)} of {len(workers)} threads "
            f"did not finish within {limit:g} s: they wait for each other (two locks of the "
            "backend taken in opposite orders? a lock held across a call that takes it "
            f"again?)\n  replay:   {replay}"
        )
