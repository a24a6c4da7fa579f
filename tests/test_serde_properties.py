"""Property tests of the serdes and of the strategies that feed every property suite."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from remote_cache import (
    JsonDataTy,
    RemoteCacheJsonSerde,
    RemoteCachePassthroughSerde,
    RemoteFxGraphCache,
)
from remote_cache.testing import FaultInjectingBackend, FaultPlan, InMemoryBackend, memory_backends
from remote_cache.testing.strategies import cache_keys, fault_plans, json_data

SERDE = RemoteCacheJsonSerde()


def leaves(value: Any) -> list[Any]:
    """Every non-container value inside ``value`` (dict keys included)."""
    if isinstance(value, dict):
        return [*value, *(leaf for item in value.values() for leaf in leaves(item))]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


def same_json(a: Any, b: Any) -> bool:
    """Equal with types and float signs compared too (1 vs 1.0 vs True, 0.0 vs -0.0)."""
    return json.dumps(a) == json.dumps(b)


class TestJsonSerde:
    @given(json_data())
    def test_round_trip(self, value: JsonDataTy) -> None:
        assert same_json(SERDE.decode(SERDE.encode(value)), value)

    @given(json_data())
    def test_bytes_identical_to_upstream(self, value: JsonDataTy) -> None:
        assert SERDE.encode(value) == bytes(json.dumps(value), "ascii")

    @given(json_data())
    def test_ascii_only(self, value: JsonDataTy) -> None:
        assert SERDE.encode(value).isascii()

    @given(json_data(allow_nan=True))
    def test_nan_and_infinity_round_trip_as_upstream_writes_them(self, value: JsonDataTy) -> None:
        data = SERDE.encode(value)
        assert data == bytes(json.dumps(value), "ascii")
        assert same_json(SERDE.decode(data), value)


class TestPassthroughSerde:
    @given(st.one_of(st.binary(), st.just(b""), st.just(0), st.just(""), st.just(False)))
    def test_identity_including_falsy_values(self, value: object) -> None:
        serde: RemoteCachePassthroughSerde[object] = RemoteCachePassthroughSerde()
        assert serde.encode(value) is value
        assert serde.decode(value) is value


class TestStrategies:
    @given(json_data())
    def test_json_data_is_finite_by_default(self, value: JsonDataTy) -> None:
        for leaf in leaves(value):
            assert not (isinstance(leaf, float) and not math.isfinite(leaf))

    @given(json_data(allow_nan=True, allow_infinity=False))
    def test_nan_without_infinity(self, value: JsonDataTy) -> None:
        assert not any(isinstance(leaf, float) and math.isinf(leaf) for leaf in leaves(value))

    @given(json_data(max_leaves=3, max_text=2))
    def test_size_options(self, value: JsonDataTy) -> None:
        found = leaves(value)
        assert all(len(leaf) <= 2 for leaf in found if isinstance(leaf, str))

    @given(json_data())
    def test_json_data_is_what_json_loads_returns(self, value: JsonDataTy) -> None:
        assert same_json(json.loads(json.dumps(value)), value)

    @given(cache_keys())
    def test_cache_keys_are_valid_keys(self, key: str) -> None:
        assert isinstance(key, str)
        assert key

    @given(fault_plans(operations=("get",), max_latency=0.001))
    def test_fault_plans_are_usable(self, plan: FaultPlan) -> None:
        assert plan.operations is None or plan.operations == {"get"}
        assert 0 <= plan.latency <= 0.001
        backend = FaultInjectingBackend(InMemoryBackend(), [plan], sleep=lambda _: None)
        backend.inner.put("k", b"v")
        try:
            got = backend.get("k")
        except ConnectionError:
            assert backend.injected == 1
            assert backend.last_error is not None
        else:
            assert got == b"v"
            assert backend.injected == 0

    def test_json_data_reaches_every_shape(self) -> None:
        kinds: set[str] = set()

        @settings(max_examples=300, derandomize=True, database=None)
        @given(json_data())
        def collect(value: JsonDataTy) -> None:
            for leaf in leaves(value) if isinstance(value, (dict, list)) else [value]:
                if isinstance(leaf, bool):
                    kinds.add("bool")
                elif isinstance(leaf, int):
                    kinds.add("big-int" if abs(leaf) >= 2**64 else "int")
                elif isinstance(leaf, float):
                    negative_zero = leaf == 0 and math.copysign(1, leaf) < 0
                    kinds.add("negative-zero" if negative_zero else "float")
                elif isinstance(leaf, str):
                    kinds.add("non-ascii" if not leaf.isascii() else "text")
                    if any(0xD800 <= ord(c) <= 0xDFFF for c in leaf):
                        kinds.add("surrogate")
                elif leaf is None:
                    kinds.add("null")
            if isinstance(value, dict):
                kinds.add("dict")
            elif isinstance(value, list):
                kinds.add("list")

        collect()
        wanted = {"bool", "int", "big-int", "float", "text", "non-ascii", "null", "dict", "list"}
        assert wanted <= kinds


class TestThroughCaches:
    """The property test docs/testing.md shows, as written there."""

    @given(json_data().filter(lambda value: value is not None))  # None cannot be stored
    def test_artifacts_round_trip(self, value: JsonDataTy) -> None:
        with memory_backends():  # a fresh store per example
            RemoteFxGraphCache("artifacts").put("k", value)
            assert RemoteFxGraphCache("artifacts").get("k") == value


class TestJsonDecodeIsJsonLoads:
    """The decoder's fast path answers exactly as json.loads, values and errors alike."""

    @staticmethod
    def outcome(call: Any) -> tuple[str, str]:
        try:
            return ("value", json.dumps(call()))
        except (ValueError, RecursionError) as exc:
            return ("error", f"{type(exc).__name__}: {exc}")

    @given(
        st.one_of(
            st.binary(max_size=40),
            json_data(allow_nan=True).map(
                lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")
            ),
            st.tuples(json_data(), st.sampled_from([b" ", b"\n", b"x", b"}", b"\x00", b""])).map(
                lambda pair: json.dumps(pair[0]).encode() + pair[1]
            ),
            st.sampled_from(
                [b"{", b"[", b'"', b"{}", b"[]", b'""', b'{"a"', b"[1,", b'"\xff"', b"[\x00]",
                 b"\xef\xbb\xbf[]", b"[]\n", b" []", b"[1] 2", b'{"a": NaN}', b"[" * 5000]
            ),
        )
    )  # fmt: skip
    def test_same_as_json_loads(self, data: bytes) -> None:
        ours = self.outcome(lambda: SERDE.decode(data))
        assert ours == self.outcome(lambda: json.loads(data))
