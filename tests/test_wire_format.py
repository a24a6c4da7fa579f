"""Upstream's key and byte format, asserted value by value."""

from __future__ import annotations

import json
import re

import fakeredis
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

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
from remote_cache.cli.inventory import KEY_PATTERN
from remote_cache.testing import InMemoryBackend

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


REDIS_CACHE_CLASSES = [
    RedisRemoteCache,
    RemoteAutotuneCache,
    RemoteBundledAutotuneCache,
    RemoteFxGraphCache,
    RemoteAOTAutogradCache,
    RemoteDynamoPGOCache,
]
UPSTREAM_CACHE_IDS = [
    "fx-graph-v1",
    "autograd-experimental",
    "bundled-autotune-v1",
    "dynamo-pgo",
    "0123456789abcdef" * 4,  # the autotune cache's sha256 hex
]
AMBIGUOUS_CACHE_IDS = ["a::b", "a:::b", "::", "a:", ":a", ":", "a::", "::a", "x:\n:"]

# Text rich in ':' so that the properties meet every way a '::' can form.
colon_text = st.text(alphabet=st.sampled_from(":ab\u00e9"), max_size=8)
# Every id the Redis caches accept: non-empty parts without ':', joined by single colons.
accepted_ids = st.lists(
    st.one_of(
        st.text(alphabet=st.sampled_from("ab\u00e9"), min_size=1, max_size=3),
        st.text(min_size=1).filter(lambda part: ":" not in part),
    ),
    min_size=1,
    max_size=4,
).map(":".join)
keys = st.one_of(colon_text.filter(bool), st.text(min_size=1))


def is_accepted(cache_id: str) -> bool:
    """Whether the Redis caches accept ``cache_id``."""
    try:
        RedisRemoteCache(cache_id, backend=InMemoryBackend())
    except ValueError:
        return False
    return True


def wire_key(cache_id: str, key: str) -> bytes:
    """The bytes a Redis cache stores ``key`` of ``cache_id`` under."""
    backend = InMemoryBackend()
    RedisRemoteCache(cache_id, backend=backend).put(key, 0)
    (stored,) = backend.entries
    return stored.encode("utf-8", "surrogatepass")


# Candidates a cache might be given, kept when the caches accept them.
given_ids = st.one_of(accepted_ids, colon_text.filter(bool)).filter(is_accepted)


class TestCacheIds:
    """A cache id that would make upstream's keys ambiguous is refused; upstream's are kept."""

    @pytest.mark.parametrize("cache_cls", REDIS_CACHE_CLASSES)
    @pytest.mark.parametrize("cache_id", UPSTREAM_CACHE_IDS)
    def test_upstream_ids_keep_their_bytes(
        self, cache_cls: type[RedisRemoteCache], cache_id: str
    ) -> None:
        server = fakeredis.FakeRedis()
        cache = cache_cls(cache_id, backend=RedisRemoteCacheBackend(client=server))
        cache.put("job:0:tag", {"data": "x"})
        assert server.keys() == [f"pt2:{cache_id}::job:0:tag:c1".encode()]

    @pytest.mark.parametrize("cache_cls", REDIS_CACHE_CLASSES)
    @pytest.mark.parametrize("cache_id", AMBIGUOUS_CACHE_IDS)
    def test_ambiguous_ids_refused_before_any_io(
        self, cache_cls: type[RedisRemoteCache], cache_id: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", "redis://192.0.2.1:1/0")  # never reached
        with pytest.raises(ValueError, match="::") as raised:
            cache_cls(cache_id)
        assert repr(cache_id) in str(raised.value)

    def test_the_ambiguity_refused(self) -> None:
        """Why: cache ``a``'s key ``b::x`` is stored where ``a::b``'s ``x`` would be."""
        assert wire_key("a", "b::x") == b"pt2:a::b::x:c1"
        assert wire_key("a", ":x") == b"pt2:a:::x:c1"
        assert not is_accepted("a::b")
        assert not is_accepted("a:")

    @pytest.mark.parametrize(
        ("cache_id", "error"), [("", ValueError), (None, TypeError), (1, TypeError)]
    )
    def test_empty_or_not_str(self, cache_id: object, error: type[Exception]) -> None:
        with pytest.raises(error, match="cache_id"):
            RedisRemoteCache(cache_id, backend=InMemoryBackend())  # type: ignore[arg-type]

    def test_local_cache_ids_are_not_keys(self, tmp_path: object) -> None:
        """A local cache keeps each id in its own folder: '::' is no ambiguity there."""
        from remote_cache import LocalCache

        LocalCache("a::b", root=str(tmp_path)).put("x", 1)
        assert LocalCache("a", root=str(tmp_path)).get("b::x") is None

    @given(given_ids, keys, given_ids, keys)
    def test_different_pairs_have_different_wire_keys(
        self, first_id: str, first_key: str, second_id: str, second_key: str
    ) -> None:
        assume((first_id, first_key) != (second_id, second_key))
        assert wire_key(first_id, first_key) != wire_key(second_id, second_key)

    @given(given_ids, keys)
    def test_no_other_split_of_the_wire_key_is_accepted(self, cache_id: str, key: str) -> None:
        """Every other (cache id, key) that the same text could be split into is refused."""
        text = f"{cache_id}::{key}"
        for index in range(len(text) - 1):
            other_id, other_key = text[:index], text[index + 2 :]
            if text[index : index + 2] != "::" or (other_id, other_key) == (cache_id, key):
                continue
            if other_id and other_key and is_accepted(other_id):
                assert wire_key(other_id, other_key) != wire_key(cache_id, key)

    @given(accepted_ids, keys)
    def test_the_wire_key_gives_back_its_cache_id_and_key(self, cache_id: str, key: str) -> None:
        match = KEY_PATTERN.match(wire_key(cache_id, key))
        assert match is not None
        assert match["cache_id"].decode("utf-8", "surrogatepass") == cache_id
        assert match["key"].decode("utf-8", "surrogatepass") == key

    @given(colon_text.filter(bool))
    def test_refused_exactly_when_a_double_colon_can_form(self, cache_id: str) -> None:
        touches = "::" in f":{cache_id}:"  # pt2:{cache_id}:: forms '::' only at the separator
        assert is_accepted(cache_id) is not touches
