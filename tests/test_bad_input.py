"""Bad and extreme input: clear errors before any write, big values, hostile keys, garbage."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remote_cache import (
    ConfigurationError,
    LocalCache,
    RedisRemoteCache,
    RedisRemoteCacheBackend,
    RemoteCache,
    RemoteCacheJsonSerde,
    RemoteFxGraphCache,
    ValueTooLargeError,
    cache_stats,
)
from remote_cache._settings import MAX_EXPIRE
from remote_cache.testing import InMemoryBackend, RedisServer

FIVE_MB = {"data": "z" * (5 * 1024 * 1024), "time_taken_ms": 1}
HOSTILE_KEYS = ["a\nb", "with space", " ", "é", "🚀", "\ud800", "a\x00b", "../../etc/passwd",
                "/abs/path", "..", "CON", "a" * 1000]  # fmt: skip


class Unencodable:
    pass


class TestUnencodable:
    @pytest.mark.parametrize(
        "value",
        [{1, 2}, b"bytes", Unencodable(), {"a": [1, {"b": {3}}]}, [1, [2, [b"deep"]]],
         {"k": Unencodable()}, {(1, 2): "tuple key"}],
        ids=["set", "bytes", "object", "nested-set", "nested-bytes", "nested-object",
             "tuple-key"],
    )  # fmt: skip
    def test_type_error_and_nothing_written(self, value: Any) -> None:
        backend = InMemoryBackend()
        cache = RemoteFxGraphCache("bad", backend=backend)
        with pytest.raises(TypeError):
            cache.put("k", value)
        with pytest.raises(TypeError):
            cache.put_many({"ok": 1, "bad": value})
        assert backend.store == {}

    def test_circular(self) -> None:
        backend = InMemoryBackend()
        looped: list[Any] = []
        looped.append(looped)
        with pytest.raises(TypeError, match="Circular"):
            RemoteFxGraphCache("bad", backend=backend).put("k", looped)
        assert backend.store == {}

    def test_nan_and_infinity_stored_as_upstream_writes_them(self) -> None:
        backend = InMemoryBackend()
        cache = RemoteFxGraphCache("nan", backend=backend)
        cache.put("k", [math.nan, math.inf, -math.inf])
        assert backend.store["pt2:nan::k:c1"] == b"[NaN, Infinity, -Infinity]"
        got = cache.get("k")
        assert math.isnan(got[0])
        assert got[1:] == [math.inf, -math.inf]


INT_DIGITS_LIMIT = 4300
"""Python's default limit on the digits of an int converted to or from text."""


@pytest.fixture
def int_digits_limit() -> Iterator[int]:
    """The default int digits limit in force for the test, whatever the environment sets."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(INT_DIGITS_LIMIT)
    try:
        yield INT_DIGITS_LIMIT
    finally:
        sys.set_int_max_str_digits(previous)


def nested(depth: int) -> list[Any]:
    """A list ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def circular_dict() -> dict[str, Any]:
    """A dict that holds itself."""
    looped: dict[str, Any] = {}
    looped["self"] = looped
    return looped


class TestBeyondJson:
    """Every value JSON cannot take is one TypeError, counted, with nothing written."""

    @pytest.mark.parametrize(
        "make",
        [lambda: nested(100_000), lambda: {"a": nested(100_000)}, lambda: 10**INT_DIGITS_LIMIT,
         lambda: [1, -(10**5000)], lambda: {10**INT_DIGITS_LIMIT: 1}, circular_dict,
         lambda: {"a": [circular_dict()]}],
        ids=["deep-100000", "deep-100000-inside", "int-4301-digits", "int-5001-digits-inside",
             "int-key", "circular-dict", "circular-inside"],
    )  # fmt: skip
    def test_type_error_counted_nothing_written(self, make: Any, int_digits_limit: int) -> None:
        backend = InMemoryBackend()
        cache = RemoteFxGraphCache("bad", backend=backend)
        with pytest.raises(TypeError, match="cannot be encoded as JSON"):
            cache.put("k", make())
        with pytest.raises(TypeError, match="cannot be encoded as JSON"):
            cache.put_many({"ok": 1, "bad": make()})
        assert backend.store == {}
        assert cache_stats["RemoteFxGraphCache"].exception == 2
        assert cache_stats["RemoteFxGraphCache"].put == 0

    def test_moderate_nesting_still_encodes(self) -> None:
        value = nested(100)
        assert RemoteCacheJsonSerde().encode(value) == b"[" * 101 + b"]" * 101

    def test_non_str_keys_are_written_as_upstream_writes_them(self) -> None:
        """json.dumps turns int, float, bool and None keys into text: so do we (and upstream)."""
        backend = InMemoryBackend()
        cache = RemoteFxGraphCache("keys", backend=backend)
        cache.put("k", {3: "a", 2.5: "b", False: "c", None: "d"})  # type: ignore[dict-item]
        assert (
            backend.store["pt2:keys::k:c1"] == b'{"3": "a", "2.5": "b", "false": "c", "null": "d"}'
        )
        assert cache.get("k") == {"3": "a", "2.5": "b", "false": "c", "null": "d"}


UNREADABLE = {
    "deep-100000": b"[" * 100_000 + b"]" * 100_000,
    "deep-unclosed": b"[" * 100_000,
    "int-5000-digits": b"1" * 5000,
    "int-inside": b'{"a": [' + b"9" * 4301 + b"]}",
}


class TestUnreadableEntries:
    """A stored entry too deep or with an int too long is a corrupt miss, never a crash."""

    @pytest.mark.parametrize("stored", UNREADABLE.values(), ids=UNREADABLE.keys())
    def test_corrupt_miss(self, stored: bytes, int_digits_limit: int) -> None:
        backend = InMemoryBackend({"pt2:deep::k:c1": stored})
        cache = RedisRemoteCache("deep", backend=backend)
        assert cache.get("k") is None
        assert cache.get_many(["k"]) == {}
        stat = cache_stats["RedisRemoteCache"]
        assert (stat.miss, stat.corrupt, stat.exception) == (2, 2, 0)

    @pytest.mark.parametrize("stored", UNREADABLE.values(), ids=UNREADABLE.keys())
    def test_serde_raises_value_error(self, stored: bytes, int_digits_limit: int) -> None:
        """The serde's one error for bytes it cannot read back, also through a plain cache."""
        with pytest.raises(ValueError, match=r"too deep|digits"):
            RemoteCacheJsonSerde().decode(stored)
        cache = RemoteCache(InMemoryBackend({"k": stored}), RemoteCacheJsonSerde())
        with pytest.raises(ValueError, match=r"too deep|digits"):
            cache.get("k")


class TestMaxValueBytes:
    def test_limit_refuses_and_writes_nothing(self) -> None:
        backend = InMemoryBackend()
        cache = RemoteFxGraphCache("big", backend=backend, max_value_bytes=10)
        cache.put("fits", "12345678")  # '"12345678"' is exactly 10 bytes
        with pytest.raises(ValueTooLargeError, match="11 bytes, over max_value_bytes=10") as info:
            cache.put("over", "123456789")
        assert isinstance(info.value, ValueError)
        assert (info.value.key, info.value.size, info.value.limit) == ("over", 11, 10)
        with pytest.raises(ValueTooLargeError):
            cache.put_many({"small": 1, "large": "x" * 100})
        assert list(backend.store) == ["pt2:big::fits:c1"]
        assert cache_stats["RemoteFxGraphCache"].exception == 2

    def test_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("REMOTE_CACHE_MAX_VALUE_BYTES", "100")
        assert RemoteFxGraphCache("e", backend=InMemoryBackend()).max_value_bytes == 100
        assert LocalCache("e", backend=InMemoryBackend()).max_value_bytes == 100
        unlimited = RemoteFxGraphCache("e", backend=InMemoryBackend(), max_value_bytes=None)
        assert unlimited.max_value_bytes is None
        monkeypatch.setenv("REMOTE_CACHE_MAX_VALUE_BYTES", "lots")
        with pytest.raises(ConfigurationError, match="REMOTE_CACHE_MAX_VALUE_BYTES"):
            RemoteFxGraphCache("e", backend=InMemoryBackend())

    @pytest.mark.parametrize("bad", [0, -1, "x", True, 1.5])
    def test_bad_argument(self, bad: Any) -> None:
        with pytest.raises(ConfigurationError, match="max_value_bytes"):
            RemoteFxGraphCache("e", backend=InMemoryBackend(), max_value_bytes=bad)

    def test_no_limit_by_default(self) -> None:
        assert RemoteFxGraphCache("e", backend=InMemoryBackend()).max_value_bytes is None


@pytest.mark.redis
class TestOnRealStores:
    def test_five_megabytes_round_trip(self, redis_server: RedisServer, tmp_path: Path) -> None:
        caches = [
            RedisRemoteCache("big", backend=RedisRemoteCacheBackend(url=redis_server.url)),
            LocalCache("big", root=tmp_path),
        ]
        for cache in caches:
            cache.put("five-mb", FIVE_MB)
            assert cache.get("five-mb") == FIVE_MB
            assert cache.get_many(["five-mb"]) == {"five-mb": FIVE_MB}

    def test_hostile_keys_round_trip_apart(self, redis_server: RedisServer, tmp_path: Path) -> None:
        caches = [
            RedisRemoteCache("keys", backend=RedisRemoteCacheBackend(url=redis_server.url)),
            LocalCache("keys", root=tmp_path / "root"),
        ]
        for cache in caches:
            for index, key in enumerate(HOSTILE_KEYS):
                cache.put(key, {"index": index})
            for index, key in enumerate(HOSTILE_KEYS):
                assert cache.get(key) == {"index": index}, key
        written = [path for path in tmp_path.rglob("*") if path.is_file()]
        assert written
        assert all((tmp_path / "root") in path.parents for path in written)

    @pytest.mark.parametrize(
        ("stored", "corrupt"),
        [(b"\xff\xfe not utf-8", True), (b'{"truncated": ', True), (b"", True),
         (b"[" * 100_000, True), (b"\x00\x01\x02", True), (b"null", True),
         (b'{"a": 1} trailing', True), (b"\xef\xbb\xbf[1]", False)],
        ids=["not-utf8", "truncated", "empty", "too-deep", "binary", "null", "trailing", "bom"],
    )  # fmt: skip
    def test_corrupt_entries_are_misses(
        self, redis_server: RedisServer, stored: bytes, corrupt: bool
    ) -> None:
        redis_server.client().set("pt2:garbage::k:c1", stored)
        cache = RedisRemoteCache("garbage", backend=RedisRemoteCacheBackend(url=redis_server.url))
        got = cache.get("k")
        assert got is None or got == [1]  # a BOM'd array is valid JSON for json.loads
        stat = cache_stats["RedisRemoteCache"]
        assert stat.corrupt == int(corrupt)
        assert cache.get_many(["k"]) in ({}, {"k": [1]})


@pytest.mark.redis
class TestExpireAtRedisLimit:
    """The longest expire accepted is one Redis stores; longer ones are refused up front."""

    def test_longest_accepted_expire_is_stored(self, redis_server: RedisServer) -> None:
        backend = RedisRemoteCacheBackend(url=redis_server.url, expire=MAX_EXPIRE)
        backend.put("k", b"v")
        backend.put_many({"k2": b"v2"})
        client = redis_server.client()
        assert client.ttl("k") > MAX_EXPIRE - 60
        assert client.ttl("k2") > MAX_EXPIRE - 60

    def test_redis_refuses_what_is_refused(self, redis_server: RedisServer) -> None:
        too_long = (2**63 - 1) // 1000  # the first bound Redis checks; still over it with the clock
        with pytest.raises(Exception, match="invalid expire time"):
            redis_server.client().set("k", b"v", ex=too_long)
        for expire in (too_long, 10**16):
            with pytest.raises(ConfigurationError, match="expire"):
                RedisRemoteCacheBackend(url=redis_server.url, expire=expire)
