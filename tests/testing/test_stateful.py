"""The cache state machine: differential runs over every backend, and planted defects."""

from __future__ import annotations

import gc
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import settings

from remote_cache import (
    BackendError,
    LocalCacheBackend,
    RedisRemoteCacheBackend,
    RemoteCacheBackend,
    RemoteCacheJsonSerde,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache._serde import JsonDataTy
from remote_cache.testing import InMemoryBackend, RedisServer
from remote_cache.testing.stateful import (
    CacheMachine,
    RawBytesCache,
    cache_machine,
    default_caches,
    run_cache_machine,
)


def fakeredis_backend() -> RedisRemoteCacheBackend:
    return RedisRemoteCacheBackend(client=fakeredis.FakeRedis(server=fakeredis.FakeServer()))


def local_backends(root: Path) -> Callable[[], LocalCacheBackend]:
    counter = itertools.count()
    return lambda: LocalCacheBackend(root / str(next(counter)))


class MirrorBackend(RemoteCacheBackend[bytes]):
    """Sends every call to several backends and fails when their answers differ."""

    def __init__(self, backends: Iterable[RemoteCacheBackend[bytes]]) -> None:
        super().__init__()
        self.backends = list(backends)

    def _agree(self, call: str, answers: list[Any]) -> Any:
        for backend, answer in zip(self.backends[1:], answers[1:], strict=True):
            assert answer == answers[0], (
                f"{call}: {type(self.backends[0]).__name__} answered {answers[0]!r}, "
                f"{type(backend).__name__} answered {answer!r}"
            )
        return answers[0]

    def _get(self, key: str) -> bytes | None:
        return self._agree(f"get({key!r})", [b.get(key) for b in self.backends])  # type: ignore[no-any-return]

    def _put(self, key: str, data: bytes) -> None:
        for backend in self.backends:
            backend.put(key, data)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        return self._agree(f"get_many({keys!r})", [b.get_many(keys) for b in self.backends])  # type: ignore[no-any-return]

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        for backend in self.backends:
            backend.put_many(mapping)


class TestDifferential:
    """The same machine over each backend: all agree with the model, hence with each other."""

    def test_in_memory(self) -> None:
        run_cache_machine(InMemoryBackend)

    def test_redis_over_fakeredis(self) -> None:
        run_cache_machine(fakeredis_backend)

    def test_local(self, tmp_path: Path) -> None:
        run_cache_machine(local_backends(tmp_path))

    @pytest.mark.redis
    def test_real_redis(self, redis_server: RedisServer) -> None:
        client = redis_server.client()

        def make() -> RedisRemoteCacheBackend:
            client.flushall()
            return RedisRemoteCacheBackend(client=client)

        run_cache_machine(make)

    @pytest.mark.redis
    def test_all_backends_answer_alike(self, redis_server: RedisServer, tmp_path: Path) -> None:
        client = redis_server.client()
        make_local = local_backends(tmp_path)

        def make() -> MirrorBackend:
            client.flushall()
            return MirrorBackend(
                [
                    InMemoryBackend(),
                    fakeredis_backend(),
                    RedisRemoteCacheBackend(client=client),
                    make_local(),
                ]
            )

        run_cache_machine(make)

    def test_mirror_notices_a_disagreement(self) -> None:
        class ForgetsEmpty(InMemoryBackend):
            def _get(self, key: str) -> Any:
                return self.store.get(key) or None

        mirror = MirrorBackend([InMemoryBackend(), ForgetsEmpty()])
        mirror.put("k", b"")
        with pytest.raises(AssertionError, match="ForgetsEmpty answered None"):
            mirror.get("k")


class CountsPutsUpFront(RemoteFxGraphCache):
    """Planted defect: counts the put before writing, so a failed write counts too."""

    def put(self, key: str, value: JsonDataTy) -> None:
        name = type(self).__name__
        cache_stats.put(name)
        sample = self._create_sample()
        try:
            self._put(key, value, sample)
        except Exception as exc:
            if not self._swallowed(name, exc, sample):
                raise
        finally:
            self._log_sample(sample)


class DropsNonAscii(RemoteCacheJsonSerde):
    """Planted defect: writes UTF-8 JSON through an ASCII filter, losing other text."""

    def encode(self, data: JsonDataTy) -> bytes:
        return json.dumps(data, ensure_ascii=False).encode("ascii", "ignore")


class NonAsciiLosingCache(RemoteFxGraphCache):
    def __init__(self, cache_id: str, *, backend: RemoteCacheBackend[bytes]) -> None:
        super().__init__(cache_id, backend=backend)
        self.serde = DropsNonAscii()


class ForgetsFailReason(RemoteFxGraphCache):
    """Planted defect: fails open without recording why on the sample."""

    def _swallowed(self, name: str, exc: Exception, sample: Any, count: int = 1) -> bool:
        return super()._swallowed(name, exc, None, count)


@pytest.fixture
def unshrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of the machine report the first failing example as found, without shrinking it.

    Finding a planted defect takes half a second; shrinking it, ten times that. The shrunk
    report is checked once (``test_failed_put_counted_as_put``), the others check the finding.
    """
    from hypothesis import Phase

    from remote_cache.testing import stateful

    shrinking = stateful.suite_settings

    def without_shrinking(examples: int | None, **overrides: Any) -> settings:
        found = shrinking(examples, **overrides)
        return settings(found, phases=[p for p in found.phases if p is not Phase.shrink])

    monkeypatch.setattr(stateful, "suite_settings", without_shrinking)


class TestPlantedDefects:
    """The machine fails on each planted controller and serde defect, naming it."""

    def test_failed_put_counted_as_put(self) -> None:
        with pytest.raises(
            AssertionError, match=r"'CountsPutsUpFront'\] is wrong: put \d+ \("
        ) as e:
            run_cache_machine(
                InMemoryBackend,
                make_caches=lambda b: [CountsPutsUpFront("graphs", backend=b)],
                examples=200,
                random_seed=0,
            )
        message = str(e.value)
        steps = [line for line in message.splitlines() if line.lstrip().startswith("state.")]
        assert 2 <= len(steps) <= 10, message  # shrunk: the few steps that show it
        assert message.endswith("replay:   run_cache_machine(make_backend, random_seed=0)")

    @pytest.mark.usefixtures("unshrunk")
    def test_serde_dropping_non_ascii(self) -> None:
        with pytest.raises(AssertionError, match=r"NonAsciiLosingCache: get.* returned"):
            run_cache_machine(
                InMemoryBackend,
                make_caches=lambda b: [NonAsciiLosingCache("graphs", backend=b)],
                examples=200,
                random_seed=0,
            )

    @pytest.mark.usefixtures("unshrunk")
    def test_missing_fail_reason(self) -> None:
        with pytest.raises(AssertionError, match="fail_reason=None"):
            run_cache_machine(
                InMemoryBackend,
                make_caches=lambda b: [ForgetsFailReason("graphs", backend=b)],
                examples=200,
                random_seed=0,
            )

    @pytest.mark.usefixtures("unshrunk")
    def test_backend_dropping_empty_values(self) -> None:
        class ForgetsEmpty(InMemoryBackend):
            def _get(self, key: str) -> Any:
                return self.store.get(key) or None

        # Found after 100 to 150 examples on seed 0 with the locked Hypothesis, not within 600
        # with a later release: a few seeds keep it found whatever Hypothesis generates (a
        # found defect stops the search, so the seeds after it cost nothing).
        failures = []
        for seed in range(5):
            try:
                run_cache_machine(ForgetsEmpty, examples=400, random_seed=seed)
            except AssertionError as exc:
                failures.append((seed, str(exc)))
                break
        assert failures, "the machine never found a backend that drops empty values"
        seed, message = failures[0]
        assert re.search(r"returned None|is wrong: .*(hit|corrupt)", message, re.DOTALL), message
        assert "state = CacheMachine()" in message  # the steps that failed
        assert message.endswith(f"replay:   run_cache_machine(make_backend, random_seed={seed})")


class TestMachineSetup:
    def test_default_caches_share_one_backend(self) -> None:
        backend = InMemoryBackend()
        caches = default_caches(backend)
        assert {type(c).__name__ for c in caches} >= {"RemoteFxGraphCache", "RawBytesCache"}
        assert all(cache.backend is backend for cache in caches)

    def test_raw_bytes_cache_re_raises(self) -> None:
        from remote_cache.testing import FailingBackend

        cache = RawBytesCache(FailingBackend())
        with pytest.raises(BackendError):
            cache.get("k")

    def test_caches_over_another_backend_are_refused(self) -> None:
        machine = cache_machine(
            InMemoryBackend, make_caches=lambda b: [RawBytesCache(InMemoryBackend())]
        )
        with pytest.raises(TypeError, match="over the backend it is given"):
            machine()

    def test_no_caches_refused(self) -> None:
        with pytest.raises(ValueError, match="no caches"):
            cache_machine(InMemoryBackend, make_caches=lambda b: [])()

    def test_refused_machine_leaves_the_registry_alone(self) -> None:
        cache_stats.put("marker")
        with pytest.raises(ValueError, match="no caches"):
            cache_machine(InMemoryBackend, make_caches=lambda b: [])()
        assert cache_stats["marker"].put == 1
        gc.collect()  # nothing left behind that would swap the registry when collected
        assert cache_stats["marker"].put == 1

    def test_factory_must_be_callable(self) -> None:
        with pytest.raises(TypeError, match="make_backend"):
            cache_machine(InMemoryBackend())  # type: ignore[arg-type]

    def test_counts_examples(self) -> None:
        seen: list[int] = []
        run_cache_machine(InMemoryBackend, examples=5, on_example=lambda: seen.append(1))
        assert len(seen) >= 5


MachineOverMemory = cache_machine(InMemoryBackend)
MachineOverMemory.TestCase.settings = settings(max_examples=20, deadline=None, database=None)


class TestAsTestCase(MachineOverMemory.TestCase):  # type: ignore[misc,name-defined]
    """A machine class is collected by pytest (or unittest) through its ``TestCase``."""


def test_machine_is_a_rule_based_state_machine() -> None:
    assert issubclass(cache_machine(InMemoryBackend), CacheMachine)
