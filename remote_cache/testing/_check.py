"""The checks behind ``remote-cache check``: the list of checks (round trips, wire format, the
conformance and property suite, and outage drills) and the run that reports on them.

The report types (``_check_report``), the target (``_check_target``), the steps and drills
(``_check_drills``) and the log capture (``_check_logs``) live beside it and are importable
from here too. The list looks the steps up in this module's namespace when it runs (``_batch``,
``_fresh_backends``, ``SAMPLE_VALUES``), so that patching them here takes effect.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

from remote_cache import (
    LocalAutotuneCache,
    LocalCache,
    RedisRemoteCache,
    RemoteAOTAutogradCache,
    RemoteAutotuneCache,
    RemoteBundledAutotuneCache,
    RemoteCache,
    RemoteCacheBackend,
    RemoteDynamoPGOCache,
    RemoteFxGraphCache,
)
from remote_cache.testing._check_drills import (  # noqa: F401 - re-exported, patched here
    SAMPLE_VALUES,
    _batch,
    _black_hole,
    _corrupt,
    _fresh_backends,
    _local_round_trip,
    _outage,
    _PrefixedBackend,
    _round_trip,
    _wire_format,
)
from remote_cache.testing._check_logs import _captured_logs, _silenced_logs
from remote_cache.testing._check_report import (
    DEFAULT_EXAMPLES,
    CheckReport,
    CheckResult,
    NotApplicable,
)
from remote_cache.testing._check_target import Target
from remote_cache.testing._override import isolated_cache_stats

__all__ = [
    "DEFAULT_EXAMPLES",
    "Check",
    "CheckReport",
    "CheckResult",
    "NotApplicable",
    "Progress",
    "Target",
    "run_checks",
]

REDIS_CACHE_CLASSES: tuple[type[RedisRemoteCache], ...] = (
    RedisRemoteCache,
    RemoteAutotuneCache,
    RemoteBundledAutotuneCache,
    RemoteFxGraphCache,
    RemoteAOTAutogradCache,
    RemoteDynamoPGOCache,
)
LOCAL_CACHE_CLASSES: tuple[type[LocalCache], ...] = (LocalCache, LocalAutotuneCache)


Tick = Callable[[], None]
"""Called once per Hypothesis example, for progress."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One named check: ``run(tick)`` returns a detail line or raises ``AssertionError``."""

    name: str
    run: Callable[[Tick], str]
    examples: int = 0
    """Hypothesis examples it plans (0: not a property check)."""


def _plain(name: str, run: Callable[[], str]) -> Check:
    return Check(name, lambda _tick: run())


def _property_checks(target: Target, examples: int, seed: int | None) -> list[Check]:
    from remote_cache.testing import conformance
    from remote_cache.testing.stateful import run_cache_machine

    make = _fresh_backends(target)
    where = (
        target.description
        if target.factory is not None
        else "fakeredis"
        if target.url is None
        else f"keys under pt2:{target.run_id}-p*"
    )

    def contract(_tick: Tick) -> str:
        conformance.check_contract(make)
        conformance.check_stats(make)
        kind = "backend" if target.factory is not None else "Redis backend"
        return f"{kind} ({where}): values, overwrites, batches, isolation, counters"

    def contents(_tick: Tick) -> str:
        conformance.check_values(make)
        conformance.check_keys(make)
        conformance.check_overwrites(make)
        conformance.check_batches(make)
        return (
            f"values up to {conformance.LARGEST_VALUE:,} bytes, keys up to "
            f"{conformance.LONGEST_KEY:,} characters in families that collide when mangled, "
            "overwrites, batches"
        )

    def concurrency(_tick: Tick) -> str:
        note = conformance.check_concurrency(make, random_seed=seed)
        return f"no torn, lost, crossed or stale values ({note})"

    def model(tick: Tick) -> str:
        conformance.check_model(make, examples=examples, random_seed=seed, on_example=tick)
        return f"{examples} random call sequences agree with a dict"

    def machine(tick: Tick) -> str:
        with _silenced_logs():  # the faults it injects are logged by design: thousands of lines
            run_cache_machine(make, examples=examples, random_seed=seed, on_example=tick)
        return f"{examples} runs of caches over injected faults: values and counters exact"

    def serde(tick: Tick) -> str:
        conformance.check_json_serde(examples=examples, random_seed=seed, on_example=tick)
        return f"{examples} JSON values: upstream's ASCII bytes, read back equal"

    return [
        Check("conformance: backend contract and counters", contract),
        Check("conformance: values, keys, overwrites, batches", contents),
        Check("conformance: concurrency", concurrency),
        Check("property: backend agrees with a dict", model, examples),
        Check("property: caches under faults match the model", machine, examples),
        Check("property: JSON serde round trip", serde, examples),
    ]


def _checks(target: Target, examples: int, seed: int | None) -> list[Check]:
    checks = [
        _plain(f"round trip {cls.__name__}", functools.partial(_round_trip, target, cls))
        for cls in REDIS_CACHE_CLASSES
    ]
    if target.factory is None:  # the local caches do not depend on the target
        checks += [
            _plain(f"round trip {cls.__name__}", functools.partial(_local_round_trip, cls))
            for cls in LOCAL_CACHE_CLASSES
        ]
    checks += [
        _plain("upstream wire format", lambda: _wire_format(target)),
        _plain("batch get_many/put_many", lambda: _batch(target)),
        _plain("corrupt entry is a miss", lambda: _corrupt(target)),
        *_property_checks(target, examples, seed),
        _plain("outage: fail open, then recover", lambda: _outage(target)),
        _plain("black hole: bounded by the timeout", lambda: _black_hole(target)),
    ]
    return checks


Progress = Callable[[int, int, Check, int], None]
"""``progress(index, total, check, examples_done)``: called as each check starts and per example."""


def _failure_detail(exc: BaseException, reports: list[object]) -> str:
    lines = [f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else str(exc)]
    lines += [str(note) for note in getattr(exc, "__notes__", [])]
    lines += [str(line) for line in reports]
    return "\n".join(line for line in lines if line) or "assertion failed"


def run_checks(
    url: str | None,
    *,
    examples: int = DEFAULT_EXAMPLES,
    seed: int | None = None,
    progress: Progress | None = None,
    backend_factory: Callable[[], RemoteCacheBackend[bytes]] | None = None,
    backend_name: str | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> CheckReport:
    """Run every check against ``url`` (None: an embedded fakeredis) and report.

    With ``backend_factory`` (a zero-argument callable returning a fresh, empty backend at
    each call; ``url`` must then be None) the checks run on those backends instead, and
    ``backend_name`` names them in the report. Property checks run ``examples`` Hypothesis
    examples each, repeatably for a ``seed``. ``checkpoint`` is called before and after every
    check and at every example; what it raises (``KeyboardInterrupt``: the run was
    interrupted) stops the run. A check that raises anything else, ``SystemExit`` and
    ``GeneratorExit`` included, fails; so does one that raises ``KeyboardInterrupt`` when
    ``checkpoint`` then raises nothing (the backend raised it: nobody pressed Ctrl-C).
    Raises ``ConnectionError`` when the server cannot be reached at all, and
    ``KeyboardInterrupt`` when interrupted.
    """
    from hypothesis.reporting import with_reporter

    if examples < 1:
        raise ValueError(f"Expected examples >= 1 but got examples={examples!r}")
    target = Target(url, factory=backend_factory, factory_name=backend_name)
    report = CheckReport(target=target.description, examples=examples, seed=seed)
    with (
        isolated_cache_stats() as stats,
        _captured_logs(report.log_lines),
        target.opened(),
    ):
        checks = _checks(target, examples, seed)
        for index, check in enumerate(checks, start=1):
            done = 0

            def tick(index: int = index, check: Check = check) -> None:
                nonlocal done
                done += 1
                if checkpoint is not None:
                    checkpoint()
                if progress is not None:
                    progress(index, len(checks), check, done)

            if checkpoint is not None:
                checkpoint()
            if progress is not None:
                progress(index, len(checks), check, 0)
            reports: list[object] = []
            started = time.monotonic()
            applicable = True
            try:
                with with_reporter(reports.append):
                    detail = check.run(tick)
                passed = True
            except NotApplicable as exc:
                detail, passed, applicable = str(exc), True, False
            except KeyboardInterrupt as exc:
                if checkpoint is None:
                    raise  # no way to tell Ctrl-C from a backend raising it
                checkpoint()  # raises again when the user pressed Ctrl-C
                detail, passed = _failure_detail(exc, reports), False  # the backend raised it
            except BaseException as exc:  # noqa: BLE001 - a check that crashes is a failed check
                detail, passed = _failure_detail(exc, reports), False
            elapsed = time.monotonic() - started
            report.results.append(
                CheckResult(check.name, passed, detail, elapsed, done, applicable)
            )
            if checkpoint is not None:
                checkpoint()
        report.stats = stats.snapshot()
    return report


def cache_classes() -> list[type[RemoteCache[Any]]]:
    """The cache classes the round trips cover."""
    return [*REDIS_CACHE_CLASSES, *LOCAL_CACHE_CLASSES]
