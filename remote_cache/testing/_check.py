"""The checks behind ``remote-cache check``: round trips, wire format, the conformance and
property suite, and outage drills."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from remote_cache import (
    CacheStat,
    LocalAutotuneCache,
    LocalCache,
    RedisRemoteCache,
    RedisRemoteCacheBackend,
    RemoteAOTAutogradCache,
    RemoteAutotuneCache,
    RemoteBundledAutotuneCache,
    RemoteCache,
    RemoteCacheBackend,
    RemoteDynamoPGOCache,
    RemoteFxGraphCache,
)
from remote_cache._breaker import CircuitBreaker
from remote_cache._cli import DEFAULT_EXAMPLES
from remote_cache._config import parse_redis_url, redact_url, scrub, url_secrets
from remote_cache._serde import JsonDataTy
from remote_cache.testing._fakeredis import new_fake_server
from remote_cache.testing._override import isolated_cache_stats
from remote_cache.testing._proxy import OutageProxy

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

SAMPLE_VALUES: dict[str, JsonDataTy] = {
    "fx-graph-entry": {"data": "gASVAAAAAAAAAACMBHRlc3SULg==", "time_taken_ms": 1234},
    "non-ascii": {"é": "ü", "snow": "☃", "rocket": "🚀"},
    "nested": {"a": [1, [2, [3, {"b": None}]]], "c": {"d": {"e": []}}},
    "floats": [0.1, -0.0, 1e308, 5e-324],
    "big-ints": [2**64, -(2**70)],
    "zero": 0,
    "empty-string": "",
    "empty-list": [],
    "false": False,
}


@dataclasses.dataclass
class CheckResult:
    """The outcome of one check."""

    name: str
    passed: bool
    detail: str = ""
    seconds: float = 0.0
    examples: int = 0
    applicable: bool = True
    """False when the check cannot run on this target (it then counts as passed)."""

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"fail"`` or ``"n/a"`` (not applicable here)."""
        return "n/a" if not self.applicable else "pass" if self.passed else "fail"


@dataclasses.dataclass
class CheckReport:
    """Every check's result, the counters they left, and where they ran."""

    target: str
    examples: int = DEFAULT_EXAMPLES
    seed: int | None = None
    results: list[CheckResult] = dataclasses.field(default_factory=list)
    stats: dict[str, CacheStat] = dataclasses.field(default_factory=dict)
    log_lines: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(result.passed for result in self.results)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        counters = [field.name for field in dataclasses.fields(CacheStat)]
        return {
            "target": self.target,
            "passed": self.passed,
            "examples": self.examples,
            "seed": self.seed,
            "checks": [
                {**dataclasses.asdict(result), "verdict": result.verdict} for result in self.results
            ],
            "stats": {
                name: {counter: getattr(stat, counter) for counter in counters}
                for name, stat in sorted(self.stats.items())
            },
            "log_lines": list(self.log_lines),
        }


class Target:
    """Where the checks run: an embedded fakeredis server, a real URL (behind a proxy when it
    is TCP), or a user's backend factory."""

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float = 0.5,
        factory: Callable[[], RemoteCacheBackend[bytes]] | None = None,
        factory_name: str | None = None,
    ) -> None:
        if url is not None and factory is not None:
            raise ValueError("Expected a url or a factory, not both")
        self.url = url
        self.factory = factory
        self.factory_name = factory_name
        self.timeout = timeout
        self.run_id = f"remote-cache-check-{uuid.uuid4().hex[:12]}"
        self.breaker = CircuitBreaker()
        self.unix = url is not None and parse_redis_url(url).is_unix
        self._fake_server: Any = None
        self._proxy: OutageProxy | None = None
        self._direct: Any = None

    @property
    def description(self) -> str:
        """The server or backend, without any password."""
        if self.factory is not None:
            return f"backend {self.factory_name or getattr(self.factory, '__name__', '?')}"
        if self.url is None:
            return "embedded fakeredis"
        return redact_url(self.url)

    @contextlib.contextmanager
    def opened(self) -> Iterator[Target]:
        """Connect, then clean up; ``ConnectionError`` when the server cannot be reached."""
        if self.factory is not None:
            yield self
            return
        if self.url is None:
            import fakeredis

            self._fake_server = new_fake_server()
            self._direct = fakeredis.FakeRedis(server=self._fake_server)
            yield self
            return
        import redis

        self._direct = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        try:
            try:
                self._direct.ping()
            except redis.RedisError as exc:
                message = f"{self.description}: {type(exc).__name__}: {exc}"
                raise ConnectionError(scrub(message, url_secrets(self.url))) from None
            if not self.unix:  # the proxy is TCP: a unix socket is checked without drills
                self._proxy = OutageProxy.for_url(self.url)
            try:
                yield self
            finally:
                if self._proxy is not None:
                    self._proxy.close()
                self._delete_own_keys()
        finally:
            self._direct.close()

    def _delete_own_keys(self) -> None:
        pattern = f"pt2:{self.run_id}*"
        batch: list[bytes] = []
        for key in self._direct.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                self._direct.delete(*batch)
                batch.clear()
        if batch:
            self._direct.delete(*batch)

    def backend(self) -> RemoteCacheBackend[bytes]:
        """A backend for one cache: through the proxy for a URL, with a TTL on every write."""
        if self.factory is not None:
            return self.factory()
        if self.url is None:
            import fakeredis

            client = fakeredis.FakeRedis(server=self._fake_server)
            return RedisRemoteCacheBackend(client=client, retry_after=0, breaker=self.breaker)
        return RedisRemoteCacheBackend(
            url=self.url if self._proxy is None else self._proxy.url,
            expire=300,
            timeout=self.timeout,
            retry_after=0,
            breaker=self.breaker,
        )

    @property
    def no_drills(self) -> str:
        """Why a drill cannot run on this target."""
        if self.factory is not None:
            return "a user's backend has no server to take away; drills run on Redis URLs"
        if self.unix:
            return "drills go through a TCP proxy; run with a redis:// URL for them"
        return "the embedded server cannot hang; run with --url for this drill"

    def cache_id(self, name: str) -> str:
        """A cache id of this run's own, so nothing of anyone else's is touched."""
        return f"{self.run_id}-{name}"

    def raw_get(self, backend: RemoteCacheBackend[bytes], key: str) -> bytes | None:
        """Read a stored key directly: around the proxy, or from the user's ``backend``."""
        if self.factory is not None:
            return backend.get(key)
        value: bytes | None = self._direct.get(key)
        return value

    def raw_set(self, backend: RemoteCacheBackend[bytes], key: str, data: bytes) -> None:
        """Write a key directly (with a TTL on a real server), or into the user's ``backend``."""
        if self.factory is not None:
            backend.put(key, data)
            return
        self._direct.set(key, data, ex=None if self.url is None else 300)

    def down(self) -> bool:
        """Make the server unreachable for the caches; False when the target cannot."""
        if self._proxy is not None:
            self._proxy.cut()
        elif self._fake_server is not None:
            self._fake_server.connected = False
        else:
            return False
        return True

    def hang(self) -> bool:
        """Make the server accept and never answer; False when the target cannot."""
        if self._proxy is None:
            return False
        self._proxy.blackhole()
        return True

    def up(self) -> None:
        """End any outage."""
        if self._proxy is not None:
            self._proxy.restore()
        elif self._fake_server is not None:
            self._fake_server.connected = True


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


@contextlib.contextmanager
def _captured_logs(lines: list[str]) -> Iterator[None]:
    """Collect the ``remote_cache`` logger's lines instead of letting them reach stderr."""
    logger = logging.getLogger("remote_cache")
    handler = _ListHandler(lines)
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


@contextlib.contextmanager
def _silenced_logs() -> Iterator[None]:
    logger = logging.getLogger("remote_cache")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _round_trip(target: Target, cache_cls: type[RedisRemoteCache]) -> str:
    cache = cache_cls(target.cache_id(cache_cls.__name__), backend=target.backend())
    for key, value in SAMPLE_VALUES.items():
        cache.put(key, value)
    for key, value in SAMPLE_VALUES.items():
        got = cache.get(key)
        _expect(got == value and type(got) is type(value), f"{key}: wrote {value!r}, read {got!r}")
    _expect(cache.get("absent-key") is None, "an absent key did not read as None")
    return f"{len(SAMPLE_VALUES)} values"


def _local_round_trip(cache_cls: type[LocalCache]) -> str:
    with tempfile.TemporaryDirectory(prefix="remote-cache-check-") as root:
        cache = cache_cls("check", root=root)
        for key, value in SAMPLE_VALUES.items():
            cache.put(key, value)
        fresh = cache_cls("check", root=root)
        for key, value in SAMPLE_VALUES.items():
            got = fresh.get(key)
            _expect(got == value, f"{key}: wrote {value!r}, read {got!r}")
        _expect(fresh.get("../escape") is None, "a key read outside its folder")
    return f"{len(SAMPLE_VALUES)} values"


def _wire_format(target: Target) -> str:
    cache_id = target.cache_id("wire")
    backend = target.backend()
    cache = RemoteFxGraphCache(cache_id, backend=backend)
    value = SAMPLE_VALUES["non-ascii"]
    cache.put("k", value)
    stored = target.raw_get(backend, f"pt2:{cache_id}::k:c1")
    expected = bytes(json.dumps(value), "ascii")
    _expect(stored == expected, f"stored {stored!r}, upstream writes {expected!r}")
    return "pt2:{cache_id}::{key}:c1, ASCII JSON"


def _batch(target: Target) -> str:
    cache = RemoteFxGraphCache(target.cache_id("batch"), backend=target.backend())
    mapping: dict[str, JsonDataTy] = {f"k{i}": {"i": i} for i in range(100)}
    cache.put_many(mapping)
    found = cache.get_many([*mapping, "absent"])
    _expect(found == mapping, f"get_many returned {len(found)} of {len(mapping)} entries")
    return "100 keys"


def _corrupt(target: Target) -> str:
    cache_id = target.cache_id("corrupt")
    backend = target.backend()
    target.raw_set(backend, f"pt2:{cache_id}::k:c1", b"\xff not json")
    cache = RemoteFxGraphCache(cache_id, backend=backend)
    _expect(cache.get("k") is None, "a corrupt entry did not read as a miss")
    return "read as a miss"


def _outage(target: Target) -> str:
    cache = RemoteFxGraphCache(target.cache_id("outage"), backend=target.backend())
    cache.put("kept", {"v": 1})
    if not target.down():
        raise NotApplicable(target.no_drills)
    try:
        started = time.monotonic()
        got = cache.get("kept")
        cache.put("dropped", {"v": 2})
        elapsed = time.monotonic() - started
    finally:
        target.up()
    _expect(got is None, f"read {got!r} from a server that is down")
    _expect(elapsed < 2 * target.timeout + 1, f"the outage cost {elapsed:.2f} s")
    recovered = cache.get("kept")
    _expect(recovered == {"v": 1}, f"after recovery read {recovered!r}")
    _expect(cache.get("dropped") is None, "a put made during the outage was stored")
    cache.put("after", {"v": 3})
    _expect(cache.get("after") == {"v": 3}, "writes do not work after recovery")
    return f"failed open in {elapsed * 1000:.0f} ms, recovered, nothing lost"


class NotApplicable(Exception):
    """Raised by a check that cannot run on this target; the message says why."""


def _black_hole(target: Target) -> str:
    cache = RemoteFxGraphCache(target.cache_id("hang"), backend=target.backend())
    if not target.hang():
        raise NotApplicable(target.no_drills)
    try:
        started = time.monotonic()
        got = cache.get("k")
        elapsed = time.monotonic() - started
    finally:
        target.up()
    _expect(got is None, "a hung server returned a value")
    _expect(elapsed < target.timeout + 0.5, f"a hung server held a get for {elapsed:.2f} s")
    return f"bounded at {elapsed * 1000:.0f} ms"


class _PrefixedBackend(RemoteCacheBackend[bytes]):
    """``inner`` with every key under ``prefix``: the check's own corner of a real server."""

    def __init__(self, inner: RemoteCacheBackend[bytes], prefix: str) -> None:
        super().__init__()
        self.inner = inner
        self.prefix = prefix

    def _get(self, key: str) -> bytes | None:
        return self.inner.get(self.prefix + key)

    def _put(self, key: str, data: bytes) -> None:
        self.inner.put(self.prefix + key, data)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        found = self.inner.get_many([self.prefix + key for key in keys])
        return {key[len(self.prefix) :]: data for key, data in found.items()}

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        self.inner.put_many({self.prefix + key: data for key, data in mapping.items()})


def _fresh_backends(target: Target) -> Callable[[], RemoteCacheBackend[bytes]]:
    """A factory of empty backends: a new fakeredis server each, or a new prefix each."""
    counter = itertools.count()

    def make() -> RemoteCacheBackend[bytes]:
        if target.factory is not None:
            return target.factory()
        if target.url is None:
            import fakeredis

            client = fakeredis.FakeRedis(server=new_fake_server())
            return RedisRemoteCacheBackend(client=client, retry_after=0, breaker=target.breaker)
        return _PrefixedBackend(target.backend(), f"pt2:{target.run_id}-p{next(counter)}:")

    return make


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
