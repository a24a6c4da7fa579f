"""The process half of ``check_concurrency``: the race run by workers in other processes.

Each child gets a backend alike to the parent's: pickled into a fresh interpreter (spawn),
or, when that cannot be done, inherited by fork. The parent collects their answers (a child
that dies or hangs is named) and checks what they left.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import sys
import time
import types
import warnings
from collections.abc import Iterator
from typing import Any

from remote_cache import RemoteCacheBackend
from remote_cache.testing.conformance._diagnostics import _exception, _name
from remote_cache.testing.conformance._probe import _Probe
from remote_cache.testing.conformance._race import (
    _BARRIER_TIMEOUT,
    _SWITCH_INTERVAL,
    _Outcome,
    _plans,
    _prepare,
    _Race,
)
from remote_cache.testing.conformance._worker import _LATE, _STALE, _Problem

_PROCESS_TAG = "proc"
"""The keys of the process run are named after it (``proc-...``, ``late-proc``)."""


def _in_process(
    race: _Race,
    worker: int,
    keys: dict[str, bytes],
    connection: Any,
    *,
    backend: RemoteCacheBackend[Any] | None,
    pickled: bytes | None,
) -> None:
    """A child's part: build its backend (unpickled, or inherited by fork), then work."""
    sys.setswitchinterval(_SWITCH_INTERVAL)
    logging.getLogger("remote_cache").setLevel(logging.ERROR)
    if pickled is not None:
        try:
            backend = pickle.loads(pickled)
        except Exception as exc:  # noqa: BLE001 - the parent falls back to fork
            connection.send(("unpicklable", _exception(exc)))
            connection.close()
            return
    connection.send(("started", None))
    assert backend is not None
    connection.send(("done", race.work(backend, worker, keys)))
    connection.close()


@contextlib.contextmanager
def _main_not_rerun(method: str) -> Iterator[None]:
    """Spawned children would run the caller's main script again (an unguarded
    ``check_backend(...)`` there starts the suite over): hide it while they start. A backend
    class defined in that script then cannot be unpickled, and the check falls back to fork."""
    if method != "spawn":
        yield
        return
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@contextlib.contextmanager
def _fork_allowed() -> Iterator[None]:
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork in a process with threads (pytest-xdist's, say); the
        # children only run the backend's own calls and exit.
        warnings.filterwarnings("ignore", message=r".*fork\(\)", category=DeprecationWarning)
        yield


def _start_method(backend: RemoteCacheBackend[Any]) -> tuple[str, bytes | None, str]:
    """How to start the processes: spawn with the pickled backend, else fork; and why."""
    methods = multiprocessing.get_all_start_methods()
    try:
        pickled = pickle.dumps(backend)
    except Exception as exc:
        why = f"the backend cannot be pickled ({_exception(exc)})"
        if "fork" in methods:
            return "fork", None, why
        raise AssertionError(
            f"{_name(backend)}: check_concurrency: {why}, and this platform cannot fork: "
            "make the backend picklable to check it in other processes"
        ) from exc
    return "spawn", pickled, "the backend pickled into fresh interpreters"


def _check_processes(
    backend: RemoteCacheBackend[Any],
    *,
    check: str,
    processes: int,
    keys_per_writer: int,
    rounds: int,
    seed_value: int,
) -> str:
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    method, pickled, why = _start_method(backend)
    plans = _plans(seed_value + 1, _PROCESS_TAG, processes, keys_per_writer)
    problems: list[_Problem] | None = None
    if method == "spawn":
        problems = _run_processes(
            backend,
            method="spawn",
            pickled=pickled,
            plans=plans,
            rounds=rounds,
            seed_value=seed_value,
            check=check,
        )
        if problems is None:
            method, why = "fork", "a fresh interpreter could not unpickle the backend"
    if problems is None:
        problems = _run_processes(
            backend,
            method="fork",
            pickled=None,
            plans=plans,
            rounds=rounds,
            seed_value=seed_value,
            check=check,
        )
        assert problems is not None
    workers = f"{processes} processes (started by {method}: {why})"
    expected = {key: value for plan in plans for key, value in plan.items()}
    outcome = _Outcome(check, workers, replay, expected, processes=True)
    outcome.verify(backend, problems)
    probe = _Probe(backend, check, replay)
    probe.get(
        "stale",
        _STALE[1],
        after=f"{workers}: this backend read 'stale', a process overwrote it, then ",
        note="a stale read: the overwrite made in another process is not seen here (a read "
        "cache that other processes' writes do not invalidate?)",
    )
    late = f"late-{_PROCESS_TAG}"
    probe.get(
        late,
        _LATE,
        after=f"{workers}: this backend missed {late!r}, a process wrote it, then ",
        note="a miss remembered: the write made in another process is not seen here (a "
        "cache of misses that other processes' writes do not invalidate?)",
    )
    return f"{processes} processes started by {method}: {why}"


def _collect(receivers: list[Any], problems: list[_Problem]) -> bool:
    """Gather the children's answers into ``problems``; True when one could not unpickle.

    Each child says "started", then "done" with its problem or None. A child that does not
    answer within ``_BARRIER_TIMEOUT`` seconds, or within 5 s of another's problem (it may
    be blocked on a connection the problem broke), is recorded as stalled.
    """
    deadline = time.monotonic() + _BARRIER_TIMEOUT
    pending = dict(enumerate(receivers))
    while pending:
        ready = multiprocessing.connection.wait(
            list(pending.values()), max(deadline - time.monotonic(), 0)
        )
        if not ready:
            break
        for worker, receiver in list(pending.items()):
            if receiver not in ready:
                continue
            try:
                kind, detail = receiver.recv()
            except EOFError:
                kind, detail = (
                    "done",
                    _Problem(
                        f"process {worker}",
                        "working",
                        None,
                        "an answer",
                        "it died without one (killed, or crashed in native code?)",
                    ),
                )
            if kind == "unpicklable":
                return True
            if kind == "started":
                continue
            del pending[worker]
            if detail is not None:
                problems.append(detail)
                deadline = min(deadline, time.monotonic() + 5)
    problems.extend(
        _Problem(f"process {worker}", "working", None, "", "", stalled=True) for worker in pending
    )
    return False


def _run_processes(
    backend: RemoteCacheBackend[Any],
    *,
    method: str,
    pickled: bytes | None,
    plans: list[dict[str, bytes]],
    rounds: int,
    seed_value: int,
    check: str,
) -> list[_Problem] | None:
    """Run the workers in processes; their problems, or None when spawn could not unpickle."""
    replay = f"check_concurrency(make_backend, random_seed={seed_value})"
    context: Any = multiprocessing.get_context(method)
    count = len(plans)
    race = _Race.begin(seed_value + 1, _PROCESS_TAG, count, rounds, context, other_processes=True)
    _prepare(backend, _Probe(backend, check, replay), race, b"same: the first value")
    race.learn(plans)
    children = []
    receivers = []
    problems: list[_Problem] = []
    abandoned = False
    try:
        with _fork_allowed(), _main_not_rerun(method):
            for worker, plan in enumerate(plans):
                receiver, sender = context.Pipe(duplex=False)
                inherited = backend if pickled is None else None
                child = context.Process(
                    target=_in_process,
                    args=(race, worker, plan, sender),
                    kwargs={"backend": inherited, "pickled": pickled},
                    daemon=True,
                )
                child.start()
                sender.close()
                children.append(child)
                receivers.append(receiver)
        abandoned = _collect(receivers, problems)
        if abandoned:
            return None
    finally:
        for child in children:
            child.join(timeout=0 if abandoned or problems else 5)
            if child.is_alive():
                child.kill()
                child.join()
        for receiver in receivers:
            receiver.close()
    return problems
