"""Property tests of the serdes and of the strategies that feed every property suite."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remote_cache import (
    JsonDataTy,
    RemoteCacheJsonSerde,
    RemoteCachePassthroughSerde,
    RemoteFxGraphCache,
)
from remote_cache.testing import FaultInjectingBackend, FaultPlan, InMemoryBackend, memory_backends
from remote_cache.testing.strategies import _as_json_reads_it, cache_keys, fault_plans, json_data

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
        again = json.loads(json.dumps(value))
        assert again == value  # texts too: a surrogate pair is read back joined
        assert same_json(again, value)

    @pytest.mark.parametrize(
        ("drawn", "generated"),
        [
            ("\ud800\udc00", "\U00010000"),  # a pair json.loads joins
            ("x\udbff\udfffy", "x\U0010ffffy"),
            ("\udc00\ud800", "\udc00\ud800"),  # low then high: two lone surrogates, kept
            ("\ud800", "\ud800"),
            ("\ud800\ud800\udc00", "\ud800\U00010000"),
        ],
    )
    def test_texts_are_generated_as_json_loads_reads_them(self, drawn: str, generated: str) -> None:
        assert _as_json_reads_it(drawn) == generated

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
        except RecursionError as exc:  # the serde's one error is ValueError: this one too
            return ("error", f"ValueError: JSON nested too deep to decode ({exc})")
        except ValueError as exc:
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

    @given(st.integers(min_value=100_000, max_value=200_000), st.sampled_from([b"[", b'{"a": ']))
    def test_too_deep_is_a_value_error(self, depth: int, opening: bytes) -> None:
        closing = b"]" if opening == b"[" else b"}"
        with pytest.raises(ValueError, match="nested too deep"):
            SERDE.decode(opening * depth + b"1" + closing * depth)


def deep(depth: int) -> list[Any]:
    """A list ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def circular() -> list[Any]:
    """A list that holds itself."""
    looped: list[Any] = []
    looped.append(looped)
    return looped


# What JSON cannot take: each is refused wherever it sits in a value.
unencodable = st.one_of(
    st.integers(min_value=100_000, max_value=150_000).map(deep),  # too deep on any CPython
    st.integers(min_value=4_301, max_value=6_000).map(lambda digits: 10 ** (digits - 1)),
    st.integers(min_value=4_301, max_value=6_000).map(lambda digits: {-(10 ** (digits - 1)): 0}),
    st.builds(circular),
    st.builds(object),
    st.binary(),
    st.frozensets(st.integers()),
    st.tuples(st.integers(), st.integers()).map(lambda pair: {pair: 1}),
)


def place(value: JsonDataTy, bad: object, where: int) -> object:
    """``bad`` put beside ``value``: alone, in a list, or under a dict key."""
    return [bad, [value, bad], {"v": value, "bad": bad}][where % 3]


class TestJsonSerdeRefusals:
    """One error for every value JSON cannot take: TypeError, never anything else."""

    @pytest.fixture(autouse=True)
    def default_int_digits_limit(self) -> Iterator[None]:
        previous = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(4_300)
        try:
            yield
        finally:
            sys.set_int_max_str_digits(previous)

    # Each bad value is one of a few kinds, some costly to build (100,000 levels deep): a few
    # dozen examples meet every kind in every place.
    @settings(max_examples=40)
    @given(json_data(allow_nan=True), unencodable, st.integers(0, 2))
    def test_type_error_wherever_it_sits(self, value: JsonDataTy, bad: object, where: int) -> None:
        with pytest.raises(
            TypeError, match=r"cannot be encoded as JSON|not JSON serializable|keys"
        ):
            SERDE.encode(place(value, bad, where))  # type: ignore[arg-type]

    @settings(max_examples=40)
    @given(st.recursive(st.one_of(json_data(max_leaves=5), unencodable), lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children, max_size=3)
    ), max_leaves=6))  # fmt: skip
    def test_upstream_bytes_or_type_error(self, value: object) -> None:
        try:
            data = SERDE.encode(value)  # type: ignore[arg-type]
        except TypeError:
            with pytest.raises((TypeError, ValueError, RecursionError)):
                json.dumps(value)
        else:
            assert data == bytes(json.dumps(value), "ascii")
