"""The controller: hooks, override, samples, what a miss is, validation, fail policy, batches."""

from __future__ import annotations

import dataclasses
import logging
import time
import types
from collections.abc import Mapping
from typing import Any
from unittest import mock

import pytest

from remote_cache import (
    BackendCommandError,
    BackendUnavailableError,
    CircuitOpenError,
    RedisRemoteCache,
    RedisRemoteCacheBackend,
    RemoteAOTAutogradCache,
    RemoteCache,
    RemoteCacheBackend,
    RemoteCacheJsonSerde,
    RemoteCachePassthroughSerde,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache._caches import JsonCache, LocalCache
from remote_cache.testing import RedisServer


class DictBackend(RemoteCacheBackend[Any]):
    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.data: dict[str, Any] = {} if data is None else data
        self.calls = 0

    def _get(self, key: str) -> Any:
        self.calls += 1
        return self.data.get(key)

    def _put(self, key: str, data: Any) -> None:
        self.calls += 1
        self.data[key] = data


class RaisingBackend(RemoteCacheBackend[Any]):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def _get(self, key: str) -> Any:
        raise self.error

    def _put(self, key: str, data: Any) -> None:
        raise self.error


@dataclasses.dataclass
class Sample:
    fail_reason: str | None = None


class PassCache(RemoteCache[Any]):
    def __init__(self, backend: RemoteCacheBackend[Any]) -> None:
        super().__init__(backend, RemoteCachePassthroughSerde())


class SampledJsonCache(JsonCache):
    samples: list[Sample]

    def __init__(self, backend: RemoteCacheBackend[bytes]) -> None:
        super().__init__(backend)
        self.samples = []

    def _create_sample(self) -> Sample:
        return Sample()

    def _log_sample(self, sample: Sample) -> None:
        self.samples.append(sample)


class TestMisses:
    """Only None is a miss; falsy values are values."""

    @pytest.mark.parametrize("value", [0, "", [], {}, False, b"", 0.0], ids=repr)
    def test_falsy_values_round_trip_through_passthrough(self, value: object) -> None:
        cache = PassCache(DictBackend())
        cache.put("k", value)
        result = cache.get("k")
        assert result == value
        assert type(result) is type(value)
        assert cache_stats["PassCache"].hit == 1
        assert cache_stats["PassCache"].miss == 0

    def test_none_is_a_miss(self) -> None:
        cache = PassCache(DictBackend())
        assert cache.get("absent") is None
        assert cache_stats["PassCache"].miss == 1

    @pytest.mark.parametrize("value", [0, "", [], {}, False, 0.0], ids=repr)
    def test_falsy_json_values_round_trip(self, value: object) -> None:
        cache = JsonCache(DictBackend())
        cache.put("k", value)  # type: ignore[arg-type]
        assert cache.get("k") == value


class TestValidation:
    """Bad keys and values are refused before any I/O."""

    @pytest.mark.parametrize(
        ("key", "error"), [(None, TypeError), (b"k", TypeError), (3, TypeError), ("", ValueError)]
    )
    def test_bad_keys(self, key: object, error: type[Exception]) -> None:
        backend = DictBackend()
        cache = PassCache(backend)
        with pytest.raises(error, match="non-empty str"):
            cache.get(key)  # type: ignore[arg-type]
        with pytest.raises(error, match="non-empty str"):
            cache.put(key, 1)  # type: ignore[arg-type]
        with pytest.raises(error):
            cache.get_many([key])  # type: ignore[list-item]
        with pytest.raises(error):
            cache.put_many({key: 1})  # type: ignore[dict-item]
        assert backend.calls == 0
        assert cache_stats.snapshot() == {}

    def test_none_value_refused(self) -> None:
        backend = DictBackend()
        cache = PassCache(backend)
        with pytest.raises(ValueError, match="None cannot be stored"):
            cache.put("k", None)
        with pytest.raises(ValueError, match="None cannot be stored"):
            cache.put_many({"a": 1, "k": None})
        assert backend.calls == 0
        assert backend.data == {}

    def test_unencodable_value_writes_nothing(self) -> None:
        backend = DictBackend()
        cache = RemoteCache(backend, RemoteCacheJsonSerde())
        with pytest.raises(TypeError):
            cache.put("k", {1, 2})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            cache.put_many({"a": 1, "b": {3}})  # type: ignore[dict-item]
        assert backend.data == {}
        assert cache_stats["RemoteCache"].exception == 2

    def test_string_is_not_a_key_list(self) -> None:
        with pytest.raises(TypeError, match="iterable of keys"):
            PassCache(DictBackend()).get_many("abc")

    def test_mapping_required(self) -> None:
        with pytest.raises(TypeError, match="mapping"):
            PassCache(DictBackend()).put_many([("a", 1)])  # type: ignore[arg-type]

    def test_backend_required(self) -> None:
        with pytest.raises(TypeError, match="needs a backend"):
            PassCache(None)  # type: ignore[arg-type]


class TestOverride:
    """backend_override_cls replaces the backend and the real one is never built."""

    def test_override_called_without_arguments(self) -> None:
        shared = DictBackend()

        class Overridden(PassCache):
            backend_override_cls = staticmethod(lambda: shared)

        cache = Overridden(DictBackend())
        assert cache.backend is shared
        cache.put("k", 1)
        assert shared.data == {"k": 1}

    def test_redis_cache_not_built_under_override(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(__import__("sys").modules, "redis", None)
        shared = DictBackend()
        monkeypatch.setattr(RemoteFxGraphCache, "backend_override_cls", lambda: shared)
        cache = RemoteFxGraphCache("fx-graph-v1")
        cache.put("k", {"a": 1})
        assert shared.data == {"pt2:fx-graph-v1::k:c1": b'{"a": 1}'}
        assert RemoteFxGraphCache("fx-graph-v1").get("k") == {"a": 1}

    def test_repr_names_the_backend(self) -> None:
        assert "DictBackend" in repr(PassCache(DictBackend()))

    @pytest.mark.parametrize("cache_id", ["", None])
    def test_bad_cache_id(self, cache_id: object) -> None:
        with pytest.raises((TypeError, ValueError), match="cache_id"):
            RedisRemoteCache(cache_id, backend=DictBackend())  # type: ignore[arg-type]


class TestHooks:
    """Upstream's overridable hooks are called with their signatures."""

    def test_every_hook_is_used(self) -> None:
        seen: list[str] = []

        class Traced(RemoteCache[Any]):
            def _create_sample(self) -> Sample:
                seen.append("create")
                return Sample()

            def _log_sample(self, sample: Any) -> None:
                seen.append("log")

            def _encode(self, value: Any, sample: Any) -> Any:
                seen.append("encode")
                return super()._encode(value, sample)

            def _decode(self, data: Any, sample: Any) -> Any:
                seen.append("decode")
                return super()._decode(data, sample)

            def _backend_get(self, key: str) -> Any:
                seen.append("backend_get")
                return super()._backend_get(key)

            def _backend_put(self, key: str, data: Any) -> None:
                seen.append("backend_put")
                super()._backend_put(key, data)

        cache = Traced(DictBackend(), RemoteCacheJsonSerde())
        cache.put("k", [1])
        assert cache.get("k") == [1]
        assert seen == [
            "create",
            "encode",
            "backend_put",
            "log",
            "create",
            "backend_get",
            "decode",
            "log",
        ]


class TestFailPolicy:
    """Plain caches re-raise; JSON caches fail open, count it and log once per outage."""

    def test_plain_cache_reraises_backend_errors(self) -> None:
        error = BackendUnavailableError("down", backend="b")
        cache = PassCache(RaisingBackend(error))
        with pytest.raises(ConnectionError):
            cache.get("k")
        with pytest.raises(BackendUnavailableError):
            cache.put("k", 1)
        assert cache_stats["PassCache"].exception == 2
        assert cache_stats["backend:RaisingBackend"].exception == 2

    def test_json_cache_fails_open(self, caplog_rc: pytest.LogCaptureFixture) -> None:
        error = BackendUnavailableError("server gone", backend="b")
        cache = SampledJsonCache(RaisingBackend(error))
        assert cache.get("k") is None
        cache.put("k", {"a": 1})
        assert cache.get_many(["a", "b"]) == {}
        cache.put_many({"a": 1, "b": 2})
        stat = cache_stats["SampledJsonCache"]
        assert (stat.miss, stat.put, stat.exception, stat.fail_open) == (3, 0, 0, 6)
        assert cache_stats["backend:RaisingBackend"].exception == 4
        assert [s.fail_reason for s in cache.samples] == ["server gone"] * 4
        warnings = [r for r in caplog_rc.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "server gone" in warnings[0].getMessage()
        assert warnings[0].exc_info is None

    def test_recovery_logged_and_next_outage_logged_again(
        self, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        backend = DictBackend()
        cache = JsonCache(backend)
        failing = JsonCache(RaisingBackend(BackendCommandError("OOM")))
        failing.put("k", 1)
        failing.put("k", 1)
        # same class name: the working instance ends the outage
        cache.put("k", 1)
        failing.get("k")
        messages = [r.getMessage() for r in caplog_rc.records if r.name == "remote_cache"]
        assert sum("failing open" in m for m in messages) == 2
        assert sum("works again" in m for m in messages) == 1

    def test_circuit_open_logged_once_per_outage(self, caplog_rc: pytest.LogCaptureFixture) -> None:
        cache = JsonCache(RaisingBackend(CircuitOpenError("skipped")))
        assert cache.get("k") is None
        assert cache.get("k") is None
        messages = [r.getMessage() for r in caplog_rc.records]
        assert len(messages) == 1, messages
        assert "JsonCache: backend skipped on get" in messages[0]
        assert cache_stats["backend:RaisingBackend"].skipped == 2
        assert cache_stats["backend:RaisingBackend"].exception == 0

    def test_other_errors_are_not_swallowed(self) -> None:
        cache = JsonCache(RaisingBackend(RuntimeError("bug")))
        with pytest.raises(RuntimeError, match="bug"):
            cache.get("k")
        assert cache_stats["JsonCache"].exception == 1


class TestCorrupt:
    """Corrupt entries in JSON caches are misses, counted, one warning line each."""

    @pytest.mark.parametrize(
        "data",
        [b"not json", b"\xff\xfe\x00", b'{"a": ', b"[" * 100_000],
        ids=["text", "utf8", "truncated", "deep"],
    )
    def test_corrupt_is_a_miss(self, data: bytes, caplog_rc: pytest.LogCaptureFixture) -> None:
        cache = JsonCache(DictBackend({"k": data, "good": b"1"}))
        assert cache.get("k") is None
        assert cache.get_many(["k", "good"]) == {"good": 1}
        stat = cache_stats["JsonCache"]
        assert (stat.corrupt, stat.miss, stat.hit, stat.exception) == (2, 2, 1, 0)
        warnings = [r for r in caplog_rc.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2
        assert all(r.exc_info is None and "corrupt entry 'k'" in r.getMessage() for r in warnings)

    @pytest.mark.parametrize("cache_class", [RemoteFxGraphCache, RedisRemoteCache, LocalCache])
    def test_stored_null_is_a_corrupt_miss(
        self, cache_class: type[JsonCache], caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        """A stored JSON null cannot be served (None is a miss): a miss and corrupt, never a hit."""
        from remote_cache.testing import InMemoryBackend

        backend = InMemoryBackend()
        cache = cache_class("nulls", backend=backend)  # type: ignore[call-arg]
        cache.put("good", 1)
        cache.put("k", 2)
        for backend_key in backend.entries:  # whatever the key format, overwrite k's entry
            if backend.entries[backend_key] == b"2":
                backend.store[backend_key] = b"null"
        assert cache.get("k") is None
        assert cache.get_many(["k", "good"]) == {"good": 1}
        stat = cache_stats[cache_class.__name__]
        assert (stat.hit, stat.miss, stat.corrupt) == (1, 2, 2)
        warnings = [r.getMessage() for r in caplog_rc.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2, warnings
        assert all("JSON null" in message for message in warnings)

    def test_plain_json_cache_still_raises(self) -> None:
        cache = RemoteCache(DictBackend({"k": b"garbage"}), RemoteCacheJsonSerde())
        with pytest.raises(ValueError, match="Expecting value"):
            cache.get("k")


class TestBatch:
    """get_many and put_many count per key and behave as single calls do."""

    def test_round_trip_and_counts(self) -> None:
        backend = DictBackend()
        cache = PassCache(backend)
        cache.put_many({"a": 0, "b": ""})
        assert cache.get_many(["a", "b", "c", "a"]) == {"a": 0, "b": ""}
        assert cache.get_many([]) == {}
        cache.put_many({})
        stat = cache_stats["PassCache"]
        assert (stat.put, stat.hit, stat.miss) == (2, 2, 1)
        backend_stat = cache_stats["backend:DictBackend"]
        assert (backend_stat.put, backend_stat.hit, backend_stat.miss) == (2, 2, 1)

    def test_json_batch_uses_backend_keys(self) -> None:
        backend = DictBackend()

        class Batched(RedisRemoteCache):
            pass

        cache = Batched("id", backend=backend)
        cache.put_many({"a": [1], "b": {"c": 2}})
        assert backend.data == {"pt2:id::a:c1": b"[1]", "pt2:id::b:c1": b'{"c": 2}'}
        assert cache.get_many(["b", "a", "zz"]) == {"a": [1], "b": {"c": 2}}

    def test_batch_failure_reraised_by_plain_cache(self) -> None:
        cache = PassCache(RaisingBackend(BackendCommandError("READONLY")))
        with pytest.raises(BackendCommandError):
            cache.get_many(["a"])
        with pytest.raises(BackendCommandError):
            cache.put_many({"a": 1})
        assert cache_stats["PassCache"].exception == 2

    def test_backend_default_batch_loops(self) -> None:
        backend = DictBackend({"a": 1})
        assert backend.get_many(["a", "b"]) == {"a": 1}
        backend.put_many({"c": 3})
        assert backend.data == {"a": 1, "c": 3}

    def test_batch_put_encodes_all_before_writing(self) -> None:
        class Recording(DictBackend):
            def _put_many(self, mapping: Mapping[str, Any]) -> None:
                raise AssertionError("must not be reached")

        cache = RemoteCache(Recording(), RemoteCacheJsonSerde())
        with pytest.raises(TypeError):
            cache.put_many({"a": 1, "b": object()})  # type: ignore[dict-item]


_PLACES = ("class", "base", "RemoteCache", "mixin", "instance")
_SAMPLE_HOOKS = ("_create_sample", "_log_sample")
_HOOKS_OF = {
    "get": ("_get", "_backend_get", "_decode", *_SAMPLE_HOOKS),
    "put": ("_put", "_backend_put", "_encode", *_SAMPLE_HOOKS),
    "get_many": ("_get_many", "_backend_get_many", "_decode", *_SAMPLE_HOOKS),
    "put_many": ("_put_many", "_backend_put_many", "_encode", *_SAMPLE_HOOKS),
}
_CALLS = {
    "get": (lambda cache: cache.get("k"), b"v"),
    "put": (lambda cache: cache.put("k", b"v"), None),
    "get_many": (lambda cache: cache.get_many(["k"]), {"k": b"v"}),
    "put_many": (lambda cache: cache.put_many({"k": b"v"}), None),
}


class TestPatchedHooksAreHonoured:
    """A hook patched after the cache exists, wherever it is patched, is called on every path."""

    @pytest.mark.parametrize("place", _PLACES)
    @pytest.mark.parametrize(
        ("operation", "hook"),
        [(operation, hook) for operation, hooks in _HOOKS_OF.items() for hook in hooks],
    )
    def test_patch_is_called_and_undone(self, place: str, operation: str, hook: str) -> None:
        class Mixin:
            pass

        class Base(RemoteCache[Any]):
            pass

        class Cache(Mixin, Base):
            pass

        cache = Cache(DictBackend({"k": b"v"}), RemoteCachePassthroughSerde())
        call, expected = _CALLS[operation]
        assert call(cache) == expected  # before any patch: the defaults

        calls: list[str] = []
        original = getattr(RemoteCache, hook)

        def spy(self: Any, *args: Any) -> Any:
            calls.append(hook)
            return original(self, *args)

        targets: dict[str, object] = {
            "class": Cache,
            "base": Base,
            "RemoteCache": RemoteCache,
            "mixin": Mixin,
            "instance": cache,
        }
        patched = types.MethodType(spy, cache) if place == "instance" else spy
        with mock.patch.object(targets[place], hook, patched, create=True):
            assert call(cache) == expected
        assert calls == [hook]
        assert call(cache) == expected
        assert calls == [hook]  # the patch is gone with its context

    def test_caches_are_plain_classes(self) -> None:
        assert type(RemoteCache) is type
        assert type(RemoteFxGraphCache) is type
        assert RemoteCache.__setattr__ is object.__setattr__
        assert RemoteCache.__delattr__ is object.__delattr__

    def test_sample_hooks_on_an_instance(self) -> None:
        cache = PassCache(DictBackend())
        logged: list[Any] = []
        cache._create_sample = Sample  # type: ignore[method-assign]
        cache._log_sample = logged.append  # type: ignore[method-assign,assignment]
        cache.get("absent")
        assert len(logged) == 1
        assert isinstance(logged[0], Sample)


class TestOutageLogging:
    """An outage is logged once, and its end once, per cache and kind of call that failed."""

    def test_a_server_reply_in_the_warning_cannot_steer_a_terminal(
        self, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        from remote_cache.testing import FaultInjectingBackend, InMemoryBackend

        hostile = "ERR \x1b]0;pwned\x07\r\nWARNING forged line\u202e"
        injector = FaultInjectingBackend(InMemoryBackend())
        injector.fail_always(error=BackendCommandError(hostile))
        assert RemoteFxGraphCache("hostile", backend=injector).get("k") is None
        [message] = [r.getMessage() for r in caplog_rc.records]
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in message), message
        assert "\u202e" not in message
        assert "\\x1b]0;pwned\\x07\\r\\nWARNING forged line\\u202e" in message

    def test_failing_puts_with_working_gets_log_once(
        self, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        from remote_cache.testing import FaultInjectingBackend, InMemoryBackend

        injector = FaultInjectingBackend(InMemoryBackend())
        injector.fail_always(
            operations=["put", "put_many"], error=BackendCommandError("OOM command not allowed")
        )
        cache = RemoteFxGraphCache("oom", backend=injector)
        for i in range(5):  # a lookup that works (a miss), then a put the server refuses
            assert cache.get(f"k{i}") is None
            cache.put(f"k{i}", {"v": i})
            assert cache.get_many([f"k{i}"]) == {}
            cache.put_many({f"k{i}": {"v": i}})
        messages = [r.getMessage() for r in caplog_rc.records]
        assert len(messages) == 1, messages
        assert "failed on put" in messages[0]
        assert "OOM" in messages[0]
        assert cache_stats["RemoteFxGraphCache"].fail_open == 10
        injector.clear()  # memory freed: a put works again and ends the outage
        assert cache.get("k0") is None
        assert [r.getMessage() for r in caplog_rc.records] == messages
        cache.put("k0", {"v": 0})
        assert [r.getMessage() for r in caplog_rc.records][1:] == [
            "RemoteFxGraphCache: backend works again"
        ]

    @pytest.mark.redis
    def test_caches_sharing_a_breaker_each_warn_and_recover(
        self, redis_server: RedisServer, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        """Two caches on one dead server: each warns once, though the shared breaker skipped
        every call of the second, and each logs its recovery once, at INFO."""

        def backend() -> RedisRemoteCacheBackend:
            return RedisRemoteCacheBackend(url=redis_server.url, timeout=0.5, retry_after=0.1)

        graphs = RemoteFxGraphCache("shared", backend=backend())
        autograd = RemoteAOTAutogradCache("shared", backend=backend())
        assert graphs.backend.breaker is autograd.backend.breaker
        redis_server.kill()
        try:
            for _ in range(3):
                assert graphs.get("k") is None
                assert autograd.get("k") is None
                autograd.put("k", {"v": 1})
            assert cache_stats["backend:RedisRemoteCacheBackend"].skipped == 8
        finally:
            redis_server.restart()
        time.sleep(0.15)  # the cool-down: the next call probes
        assert graphs.get("k") is None
        assert autograd.get("k") is None
        autograd.put("k", {"v": 1})
        records = [(r.levelno, r.getMessage()) for r in caplog_rc.records if r.levelno > 10]
        for name in ("RemoteFxGraphCache", "RemoteAOTAutogradCache"):
            mine = [(level, text) for level, text in records if text.startswith(f"{name}:")]
            assert [level for level, _ in mine] == [logging.WARNING, logging.INFO], records
            assert "failing open until it recovers" in mine[0][1]
            assert mine[1][1] == f"{name}: backend works again"

    def test_an_outage_of_both_kinds_ends_when_both_work(
        self, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        backend = DictBackend()
        failing = RemoteFxGraphCache("both", backend=RaisingBackend(BackendUnavailableError("x")))
        failing.get("k")
        failing.put("k", 1)
        working = RemoteFxGraphCache("both", backend=backend)
        working.get("k")  # reads work again; writes have not been tried
        assert sum("works again" in r.getMessage() for r in caplog_rc.records) == 0
        working.put("k", 1)
        messages = [r.getMessage() for r in caplog_rc.records]
        assert sum("failing open" in m for m in messages) == 1
        assert sum("works again" in m for m in messages) == 1
