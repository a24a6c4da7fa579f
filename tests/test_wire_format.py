"""Upstream's key and byte format, asserted value by value."""

from __future__ import annotations

import json
import re

import fakeredis
import pytest

from remote_cache import (
    RedisRemoteCache,
    RedisRemoteCacheBackend,
    RemoteAOTAutogradCache,
    RemoteAutotuneCache,
    RemoteBundledAutotuneCache,
    RemoteCacheJsonSerde,
    RemoteDynamoPGOCache,
    RemoteFxGraphCache,
)

VALUES = [
    pytest.param({"data": "gASVAAAA", "time_taken_ms": 1234}, id="fx-graph-entry"),
    pytest.param({"é": "ü", "snow": "☃", "emoji": "🚀"}, id="non-ascii"),
    pytest.param({"a": [1, [2, [3, {"b": None}]]], "c": {"d": {"e": []}}}, id="nested"),
    pytest.param([0.1, -0.0, 1e308, 5e-324, 3.141592653589793], id="floats"),
    pytest.param([2**64, -(2**70), 2**200 + 1], id="big-ints"),
    pytest.param("plain string", id="string"),
    pytest.param(True, id="bool"),
    pytest.param(0, id="zero"),
]


def upstream_bytes(value: object) -> bytes:
    """What upstream's serde writes, restated from its source."""
    return bytes(json.dumps(value), "ascii")


class TestJsonBytes:
    """The JSON serde writes exactly upstream's bytes and reads them back equal."""

    @pytest.mark.parametrize("value", VALUES)
    def test_bytes_identical_to_upstream(self, value: object) -> None:
        serde = RemoteCacheJsonSerde()
        encoded = serde.encode(value)  # type: ignore[arg-type]
        assert encoded == upstream_bytes(value)
        assert encoded.isascii()
        assert serde.decode(encoded) == value

    def test_non_ascii_is_escaped(self) -> None:
        assert RemoteCacheJsonSerde().encode("é☃") == b'"\\u00e9\\u2603"'

    @pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), {"a": {"b": {3}}}])
    def test_unencodable_values_raise_type_error(self, value: object) -> None:
        with pytest.raises(TypeError):
            RemoteCacheJsonSerde().encode(value)  # type: ignore[arg-type]

    def test_circular_value_raises_type_error(self) -> None:
        loop: list[object] = []
        loop.append(loop)
        with pytest.raises(TypeError, match="cannot be encoded"):
            RemoteCacheJsonSerde().encode(loop)  # type: ignore[arg-type]


class TestRedisKeys:
    """Redis caches store under ``pt2:{cache_id}::{key}:c1`` with upstream's bytes."""

    @pytest.mark.parametrize("value", VALUES)
    def test_stored_key_and_bytes(self, value: object) -> None:
        server = fakeredis.FakeRedis()
        cache = RemoteFxGraphCache("fx-graph-v1", backend=RedisRemoteCacheBackend(client=server))
        key = "a" * 20 + "0123456789" * 3 + "zz"
        cache.put(key, value)  # type: ignore[arg-type]
        assert server.keys() == [f"pt2:fx-graph-v1::{key}:c1".encode()]
        assert server.get(f"pt2:fx-graph-v1::{key}:c1") == upstream_bytes(value)
        assert re.fullmatch(r"pt2:fx-graph-v1::[0-9a-z]{52}:c[0-9]+", server.keys()[0].decode())

    @pytest.mark.parametrize(
        ("cache_cls", "cache_id", "key"),
        [
            (RemoteAutotuneCache, "ab" * 32, "cd" * 32),
            (RemoteBundledAutotuneCache, "bundled-autotune-v1", "ef" * 32),
            (RemoteAOTAutogradCache, "autograd-experimental", "h" * 52),
            (RemoteDynamoPGOCache, "dynamo-pgo", "job:0:tag"),
            (RedisRemoteCache, "custom", "key with spaces"),
        ],
    )
    def test_every_cache_class_uses_the_format(
        self, cache_cls: type[RedisRemoteCache], cache_id: str, key: str
    ) -> None:
        server = fakeredis.FakeRedis()
        cache = cache_cls(cache_id, backend=RedisRemoteCacheBackend(client=server))
        cache.put(key, {"data": "x"})
        assert server.get(f"pt2:{cache_id}::{key}:c1") == b'{"data": "x"}'
        assert cache.get(key) == {"data": "x"}

    def test_reads_entries_written_by_upstream(self) -> None:
        server = fakeredis.FakeRedis()
        value = {"data": "gASV", "time_taken_ms": 7, "nested": [1.5, "é"]}
        server.set("pt2:fx-graph-v1::k:c1", upstream_bytes(value))
        cache = RemoteFxGraphCache("fx-graph-v1", backend=RedisRemoteCacheBackend(client=server))
        assert cache.get("k") == value
