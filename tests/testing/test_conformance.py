"""The conformance suite passes on our backends and catches planted defects."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from remote_cache import (
    BackendCommandError,
    LocalCacheBackend,
    RedisRemoteCacheBackend,
    RemoteCacheBackend,
    RemoteCacheJsonSerde,
    ValueTooLargeError,
)
from remote_cache._serde import JsonDataTy
from remote_cache.testing import FailingBackend, InMemoryBackend, RedisServer
from remote_cache.testing._processes import free_port
from remote_cache.testing.conformance import (
    LARGEST_VALUE,
    LONGEST_KEY,
    BackendConformance,
    check_backend,
    check_batches,
    check_concurrency,
    check_contract,
    check_json_serde,
    check_keys,
    check_model,
    check_overwrites,
    check_stats,
    check_values,
    key_families,
)
from tests.testing import defects


class EmptyBytesIsMissing(InMemoryBackend):
    def _get(self, key: str) -> Any:
        return self.store.get(key) or None


class KeepsFirstWrite(InMemoryBackend):
    def _put(self, key: str, data: Any) -> None:
        self.store.setdefault(key, data)


class TruncatesOver1KB(InMemoryBackend):
    def _put(self, key: str, data: Any) -> None:
        self.store[key] = data[:1024]


class KeepsOnlyTheLastBatchKey(InMemoryBackend):
    def _put_many(self, mapping: Any) -> None:
        *_, last = mapping.items()
        self.store[last[0]] = last[1]


class SqliteTextKeys(RemoteCacheBackend[bytes]):
    """Planted defect: keys in a TEXT column, which cannot hold a lone surrogate."""

    def __init__(self) -> None:
        super().__init__()
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def _get(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, key: str, data: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (key, data))


class DropsNonAscii(RemoteCacheJsonSerde):
    def encode(self, data: JsonDataTy) -> bytes:
        return json.dumps(data, ensure_ascii=False).encode("ascii", "ignore")


class TestInMemoryConforms(BackendConformance):
    def make_backend(self) -> InMemoryBackend:
        return InMemoryBackend()

    def make_broken_backend(self) -> FailingBackend:
        return FailingBackend()  # a store that is never there


class TestRedisOverFakeredisConforms(BackendConformance):
    def make_backend(self) -> RedisRemoteCacheBackend:
        return RedisRemoteCacheBackend(client=fakeredis.FakeRedis(server=fakeredis.FakeServer()))

    def make_broken_backend(self) -> RedisRemoteCacheBackend:
        server = fakeredis.FakeServer()
        server.connected = False  # fakeredis's server down
        return RedisRemoteCacheBackend(client=fakeredis.FakeRedis(server=server))


class TestLocalConforms(BackendConformance):
    def setup_method(self) -> None:
        self.scratch = tempfile.TemporaryDirectory(prefix="conformance-")
        self.counter = itertools.count()

    def teardown_method(self) -> None:
        self.scratch.cleanup()

    def make_backend(self) -> LocalCacheBackend:
        return LocalCacheBackend(Path(self.scratch.name) / str(next(self.counter)))

    def make_broken_backend(self) -> LocalCacheBackend:
        blocker = Path(self.scratch.name) / f"a-file-{next(self.counter)}"
        blocker.write_bytes(b"")  # the cache's folder would be inside a regular file
        return LocalCacheBackend(blocker / "cache")


@pytest.mark.redis
class TestRealRedisConforms(BackendConformance):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.client = redis_server.client()

    def make_backend(self) -> RedisRemoteCacheBackend:
        self.client.flushall()
        return RedisRemoteCacheBackend(client=self.client)

    def make_broken_backend(self) -> RedisRemoteCacheBackend:
        return RedisRemoteCacheBackend(url=f"redis://127.0.0.1:{free_port()}", timeout=0.5)


class TestCheckBackend:
    """``check_backend`` runs every part, and catches each planted backend defect."""

    def test_passes_on_in_memory(self) -> None:
        made: list[InMemoryBackend] = []

        def make() -> InMemoryBackend:
            made.append(InMemoryBackend())
            return made[-1]

        examples: list[int] = []
        check_backend(make, examples=10, random_seed=1, on_example=lambda: examples.append(1))
        assert len(examples) >= 20  # the dict model and the cache machine, 10 each at least
        assert len(made) >= 2 + 1 + 20

    def test_passes_on_redis_over_fakeredis(self) -> None:
        check_backend(TestRedisOverFakeredisConforms().make_backend, examples=30)

    def test_passes_on_local(self, tmp_path: Path) -> None:
        counter = itertools.count()
        check_backend(lambda: LocalCacheBackend(tmp_path / str(next(counter))), examples=30)

    @pytest.mark.redis
    def test_passes_on_real_redis(self, redis_server: RedisServer) -> None:
        client = redis_server.client()

        def make() -> RedisRemoteCacheBackend:
            client.flushall()
            return RedisRemoteCacheBackend(client=client)

        check_backend(make, examples=30)

    @pytest.mark.parametrize(
        ("backend_cls", "message"),
        [
            (EmptyBytesIsMissing, "wrote 0 bytes"),
            (KeepsFirstWrite, "did not replace the first"),
            (TruncatesOver1KB, "wrote 1025 bytes"),
        ],
    )
    def test_defect_caught_by_the_contract(
        self, backend_cls: type[InMemoryBackend], message: str
    ) -> None:
        with pytest.raises(AssertionError, match=message):
            check_backend(backend_cls, examples=20)

    @pytest.mark.parametrize("backend_cls", [EmptyBytesIsMissing, KeepsFirstWrite])
    def test_defect_caught_by_the_dict_model(self, backend_cls: type[InMemoryBackend]) -> None:
        with pytest.raises(AssertionError, match=backend_cls.__name__):
            check_model(backend_cls, examples=200, random_seed=0)

    def test_crash_on_a_valid_key_is_a_violation(self) -> None:
        with pytest.raises(AssertionError, match=r"SqliteTextKeys: .*raised UnicodeEncodeError"):
            check_model(SqliteTextKeys, examples=200, random_seed=0)

    def test_a_surrogate_key_refused_points_at_the_fix(self) -> None:
        with pytest.raises(AssertionError) as raised:
            check_keys(SqliteTextKeys)
        assert 'key.encode("utf-8", "surrogatepass")' in str(raised.value)
        with pytest.raises(AssertionError, match="surrogatepass"):
            check_model(SqliteTextKeys, examples=200, random_seed=0)

    def test_a_long_error_is_cut_short(self) -> None:
        class Verbose(InMemoryBackend):
            def _put(self, key: str, data: Any) -> None:
                raise OSError("disk says: " + "x" * 8000)

        with pytest.raises(AssertionError) as raised:
            check_contract(Verbose)
        message = str(raised.value)
        assert "OSError: disk says: xxx" in message
        assert "(8,011 characters)" in message
        assert len(message) < 1000

    def test_crash_in_the_contract_is_a_violation(self) -> None:
        class Broken(InMemoryBackend):
            def _get_many(self, keys: list[str]) -> dict[str, Any]:
                raise RuntimeError("not implemented yet")

        with pytest.raises(AssertionError, match="the contract check raised RuntimeError"):
            check_contract(Broken)
        with pytest.raises(AssertionError, match=r"Broken: get_many.* raised RuntimeError"):
            check_stats(Broken)

    def test_batch_defect_caught(self) -> None:
        with pytest.raises(AssertionError, match="get_many"):
            check_contract(KeepsOnlyTheLastBatchKey)

    def test_shared_factory_caught(self) -> None:
        shared = InMemoryBackend()
        with pytest.raises(AssertionError, match="second backend from the factory"):
            check_backend(lambda: shared, examples=5)

    def test_not_implemented_make_backend(self) -> None:
        with pytest.raises(NotImplementedError, match="make_backend"):
            BackendConformance().test_contract()


class TestCheckJsonSerde:
    def test_ours_passes(self) -> None:
        check_json_serde(RemoteCacheJsonSerde())
        check_json_serde()

    def test_dropping_non_ascii_caught(self) -> None:
        with pytest.raises(AssertionError, match="DropsNonAscii: encoded"):
            check_json_serde(DropsNonAscii(), examples=200, random_seed=0)


class Limited(InMemoryBackend):
    """Declares a 1 MiB limit: the base class refuses longer values."""

    max_value_bytes = 1024 * 1024


class TestDeclaredLimits:
    """Backends declare limits on the class; the suite holds them to exactly that."""

    def test_the_defaults_declare_nothing(self) -> None:
        assert RemoteCacheBackend.max_value_bytes is None
        assert RemoteCacheBackend.shared_between_processes is False

    def test_over_the_limit_is_refused_and_nothing_written(self) -> None:
        backend = Limited()
        with pytest.raises(ValueTooLargeError, match="over max_value_bytes=1,048,576") as caught:
            backend.put("big", b"x" * (1024 * 1024 + 1))
        assert (caught.value.key, caught.value.size, caught.value.limit) == (
            "big",
            1024 * 1024 + 1,
            1024 * 1024,
        )
        with pytest.raises(ValueTooLargeError):
            backend.put_many({"small": b"s", "big": bytearray(1024 * 1024 + 1)})
        assert backend.get_many(["big", "small"]) == {}
        backend.put("edge", b"x" * (1024 * 1024))
        assert backend.get("edge") == b"x" * (1024 * 1024)

    def test_a_backend_with_a_declared_limit_passes(self) -> None:
        check_values(Limited)
        check_backend(Limited, examples=10, random_seed=0)

    def test_a_limit_too_small_to_run_the_caches_is_refused(self) -> None:
        class Tiny(InMemoryBackend):
            max_value_bytes = 100

        with pytest.raises(AssertionError, match=r"declares max_value_bytes=100; it must be"):
            check_values(Tiny)

    def test_a_declared_limit_must_really_be_enforced(self) -> None:
        class Bypasses(Limited):
            def put(self, key: str, data: Any) -> None:
                self._put(key, data)

        with pytest.raises(AssertionError, match=r"(?s)put\('size-1048577'.*accepted silently"):
            check_values(Bypasses)


class TestProbes:
    """The deterministic probes pass on correct backends, at the documented sizes."""

    def test_documented_sizes(self) -> None:
        assert LARGEST_VALUE >= 4 * 1024 * 1024
        assert LONGEST_KEY >= 1024
        longest = max(len(key) for _, keys in key_families() for key in keys)
        assert longest >= LONGEST_KEY

    def test_values_up_to_4_mib_are_written(self) -> None:
        sizes: list[int] = []

        class Sizes(InMemoryBackend):
            def _put(self, key: str, data: Any) -> None:
                sizes.append(len(data))
                super()._put(key, data)

        check_values(Sizes)
        assert max(sizes) == LARGEST_VALUE
        assert {1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1} <= set(sizes)

    def test_on_local_files(self, tmp_path: Path) -> None:
        counter = itertools.count()

        def make() -> LocalCacheBackend:
            return LocalCacheBackend(tmp_path / str(next(counter)))

        for check in (check_values, check_keys, check_batches, check_overwrites):
            check(make)

    def test_processes_on_local_files(self, tmp_path: Path) -> None:
        """A folder is shared between processes: the suite writes from two at once."""
        counter = itertools.count()
        made: list[LocalCacheBackend] = []

        def make() -> LocalCacheBackend:
            made.append(LocalCacheBackend(tmp_path / str(next(counter))))
            made[-1].shared_between_processes = True
            return made[-1]

        check_concurrency(make, random_seed=0)
        assert len(made) == 1
        assert made[0].get("proc-1-0") is not None  # written by a child process

    @pytest.mark.redis
    def test_processes_on_real_redis(self, redis_server: RedisServer) -> None:
        def make() -> RedisRemoteCacheBackend:
            redis_server.client().flushall()
            backend = RedisRemoteCacheBackend(client=redis_server.client())
            backend.shared_between_processes = True
            return backend

        check_concurrency(make, random_seed=0)
        assert redis_server.client().get("proc-1-0") is not None


def _only_in_process(pid: int, root: Path) -> SharedFolder:
    if os.getpid() != pid:
        raise RuntimeError("this backend cannot be rebuilt in another interpreter")
    return SharedFolder(root)


class SharedFolder(defects._Folder):
    """A correct folder backend (temporary file, then rename), declared shared; picklable."""


class UnpicklableElsewhere(SharedFolder):
    """Pickles, but only this process can unpickle it: the suite must fall back to fork."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_only_in_process, (os.getpid(), self.root))


class TestConcurrencyRuns:
    """``check_concurrency`` starts its processes as documented and leaves no trace behind."""

    def test_a_picklable_backend_runs_in_fresh_interpreters(self, tmp_path: Path) -> None:
        note = check_concurrency(lambda: SharedFolder(tmp_path), random_seed=0)
        assert note == (
            "4 threads, 2 processes started by spawn: the backend pickled into fresh interpreters"
        )
        assert SharedFolder(tmp_path).get("proc-1-0") is not None  # written by a child

    def test_an_unpicklable_backend_is_inherited_by_fork(self, tmp_path: Path) -> None:
        class Local(SharedFolder):  # a local class cannot be pickled
            pass

        note = check_concurrency(lambda: Local(tmp_path), random_seed=0)
        assert note.startswith("4 threads, 2 processes started by fork: the backend cannot be")

    def test_a_backend_a_fresh_interpreter_cannot_unpickle_falls_back_to_fork(
        self, tmp_path: Path
    ) -> None:
        note = check_concurrency(lambda: UnpicklableElsewhere(tmp_path), random_seed=0)
        assert note == (
            "4 threads, 2 processes started by fork: a fresh interpreter could not unpickle "
            "the backend"
        )

    def test_a_backend_not_shared_has_threads_only(self) -> None:
        assert check_concurrency(InMemoryBackend, random_seed=0) == "4 threads"

    def test_the_switch_interval_is_restored(self) -> None:
        before = sys.getswitchinterval()
        seen: list[float] = []

        class Watches(InMemoryBackend):
            def _get(self, key: str) -> Any:
                seen.append(sys.getswitchinterval())
                return super()._get(key)

        check_concurrency(Watches, random_seed=0)
        assert min(seen) <= 1e-5 < before
        assert sys.getswitchinterval() == before
        with pytest.raises(AssertionError):
            check_concurrency(defects.LastReadCacheRacy, random_seed=0)
        assert sys.getswitchinterval() == before

    def test_concurrent_writers_of_one_key_may_fail_with_backend_errors_only(self) -> None:
        class Busy(InMemoryBackend):
            def _put(self, key: str, data: Any) -> None:
                if key == "same" and data.startswith(b"writer 1:"):
                    raise BackendCommandError("busy", backend="test", operation="put", key=key)
                super()._put(key, data)

        check_concurrency(Busy, random_seed=0)

        class Crashes(InMemoryBackend):
            def _put(self, key: str, data: Any) -> None:
                if key == "same" and data.startswith(b"writer 1:"):
                    raise RuntimeError("busy")
                super()._put(key, data)

        with pytest.raises(AssertionError) as caught:
            check_concurrency(Crashes, random_seed=0)
        message = str(caught.value)
        assert "thread 1: put('same', 262,154 bytes)" in message, message
        assert "\n  key:      'same'\n" in message, message
        assert "actual:   raised RuntimeError: busy" in message, message


class TestForkedConnections:
    """A connection shared across fork is reported with its call, promptly, never as 'torn'."""

    def test_a_crash_in_a_child_names_its_call_and_key(self) -> None:
        class BreaksAfterFork(InMemoryBackend):  # a local class: inherited by fork
            shared_between_processes = True

            def __init__(self) -> None:
                super().__init__()
                self.pid = os.getpid()

            def _put(self, key: str, data: Any) -> None:
                if os.getpid() != self.pid:
                    if key.startswith("proc-1-"):
                        time.sleep(600)  # blocked on a reply the other process took
                    raise ConnectionError("a reply meant for the other process")
                super()._put(key, data)

        started = time.monotonic()
        with pytest.raises(AssertionError) as caught:
            check_concurrency(BreaksAfterFork, random_seed=0)
        assert time.monotonic() - started < 60  # not the 120 s a stalled child may take
        message = str(caught.value)
        assert re.search(
            r"2 processes \(started by fork: the backend cannot be pickled .*\) at once; "
            r"process 0: put\('proc-0-0', \d+ bytes\)\n  key:      'proc-0-0'\n",
            message,
        ), message
        assert "actual:   raised ConnectionError: a reply meant for the other process" in message
        assert "opened before the fork is shared with the parent" in message, message
        assert "'torn'" not in message, message


class TestQuietFaults:
    """The cache machine's planted faults do not flood the log; the level is restored."""

    def test_no_warnings_and_the_level_restored(self, caplog: pytest.LogCaptureFixture) -> None:
        logger = logging.getLogger("remote_cache")
        with caplog.at_level(logging.WARNING, logger="remote_cache"):
            level = logger.level
            check_backend(InMemoryBackend, examples=20, random_seed=0)
            assert logger.level == level
        assert [record for record in caplog.records if record.levelno < logging.ERROR] == []

    def test_the_machine_alone_still_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        from remote_cache.testing.stateful import run_cache_machine

        with caplog.at_level(logging.WARNING, logger="remote_cache"):
            run_cache_machine(InMemoryBackend, examples=20, random_seed=0)
        assert caplog.records  # the faults are logged: the quiet applies to the suite only


class TestModelMessages:
    """``check_model`` failures have the key, expected and actual lines of the others."""

    def test_lines(self) -> None:
        with pytest.raises(AssertionError) as caught:
            check_model(EmptyBytesIsMissing, examples=200, random_seed=0)
        message = str(caught.value)
        assert re.search(r"^EmptyBytesIsMissing: check_model: get(_many)?\(", message), message
        assert "\n  key:      " in message, message
        assert re.search(r"\n  expected: .*\(what a dict holds\)", message), message
        assert "\n  actual:   None (a miss)" in message, message
        assert "\n  replay:   check_model(make_backend, random_seed=0)" in message, message
