"""The Hypothesis properties: ``check_model`` (any sequence of calls agrees with a dict) and
``check_json_serde`` (a JSON serde writes upstream's bytes and reads back an equal value)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, seed
from hypothesis import strategies as st

from remote_cache import RemoteCacheBackend, RemoteCacheJsonSerde, RemoteCacheSerde
from remote_cache._serde import JsonDataTy
from remote_cache.testing._call_deadline import CallOverdue, overdue_message
from remote_cache.testing._hypothesis_settings import pick_seed, replayable, suite_settings
from remote_cache.testing.conformance._diagnostics import _call, _describe, _is, _name, _short
from remote_cache.testing.conformance._probe import BackendFactory
from remote_cache.testing.conformance._values import _HEADER_VALUES
from remote_cache.testing.strategies import (
    cache_keys,
    colliding_keys,
    colliding_pairs,
    json_data,
    key_family,
)

# Each example draws a small pool of keys (hostile shapes, and families that collide under
# case folding and Unicode normalisation) and uses only those: overwrites, read-backs and
# two variants of one key in one example are common. Falsy values get their own branch:
# reading them back as misses is a classic defect; so do values with compressed, pickled
# and JSON headers, which backends that sniff headers change.
_pool_keys = st.one_of(st.sampled_from(["a", "b", "c"]), cache_keys(), colliding_keys())
_values = st.one_of(
    st.sampled_from([b"", b"\x00", b"0", b"a\x00", *_HEADER_VALUES]),
    st.binary(max_size=2048),
)


@st.composite
def _operations(draw: st.DrawFn) -> list[tuple[str, Any, Any]]:
    pool = draw(st.lists(_pool_keys, min_size=1, max_size=6, unique=True))
    pool = list(dict.fromkeys([*pool, *draw(colliding_pairs())]))  # two of one family
    keys = st.sampled_from(pool)
    family = draw(key_family())  # written and read whole: a merge of two of its keys shows
    written = {key: draw(_values) for key in family}
    operation = st.one_of(
        st.tuples(st.just("put"), keys, _values),
        st.tuples(st.just("get"), keys, st.none()),
        st.tuples(st.just("get_many"), st.lists(keys, max_size=4), st.none()),
        st.tuples(st.just("put_many"), st.dictionaries(keys, _values, max_size=4), st.none()),
    )
    return [
        ("put_many", written, None),
        *draw(st.lists(operation, max_size=25)),
        ("get_many", family, None),
        *(("get", key, None) for key in family),
    ]


def _run(test: Callable[[], None], random_seed: int | None, replay: str) -> None:
    """Run a Hypothesis test under a seed; a failure names the seed to replay it."""
    seed_value = pick_seed(random_seed)
    try:
        seed(seed_value)(test)()
    except CallOverdue as exc:  # past Hypothesis, unshrunk: each retry would wait again
        failure = AssertionError(overdue_message(exc))
        raise replayable(failure, f"{replay}, random_seed={seed_value})") from None
    except AssertionError as exc:
        raise replayable(exc, f"{replay}, random_seed={seed_value})") from exc.__cause__


def _model_failure(
    backend: RemoteCacheBackend[Any],
    operation: str,
    key: str | None,
    expected: object,
    actual: object,
) -> AssertionError:
    """A dict-model disagreement, in the shape of the other checks' messages (the replay
    line, with the seed, and the shrunk example are added by ``_run``)."""
    lines = [f"{_name(backend)}: check_model: {operation}, after the calls below"]
    if key is not None:
        lines.append(f"  key:      {_short(key)}")
    shown = expected if isinstance(expected, str) else _describe(expected)
    lines.append(f"  expected: {shown} (what a dict holds)")
    lines.append(f"  actual:   {_describe(actual)}")
    return AssertionError("\n".join(lines))


def check_model(
    make_backend: BackendFactory,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
) -> None:
    """Any sequence of gets and puts (single and batched) agrees with a dict.

    ``examples`` defaults to the loaded Hypothesis profile's ``max_examples``;
    ``random_seed`` makes the run repeatable (None: a random one, named in the failure);
    ``on_example`` is called once per example. Values come back as ``bytes``.
    """

    @suite_settings(examples)
    @given(_operations())
    def agrees_with_a_dict(operations: list[tuple[str, Any, Any]]) -> None:
        if on_example is not None:
            on_example()
        backend = make_backend()
        model: dict[str, bytes] = {}
        for operation, argument, data in operations:
            if operation == "put":
                _call(backend, f"put({_short(argument)})", backend.put, argument, data)
                model[argument] = data
            elif operation == "put_many":
                items = [f"{_short(k)}: {len(v)} bytes" for k, v in argument.items()]
                more = f", … {len(items) - 4} more" if len(items) > 4 else ""
                shown = f"{{{', '.join(items[:4])}{more}}}"
                _call(backend, f"put_many({shown})", backend.put_many, argument)
                model.update(argument)
            elif operation == "get":
                got = _call(backend, f"get({_short(argument)})", backend.get, argument)
                if not _is(got, model.get(argument)):
                    raise _model_failure(
                        backend, f"get({_short(argument)})", argument, model.get(argument), got
                    )
            else:
                found = _call(
                    backend, f"get_many({len(argument)} keys)", backend.get_many, argument
                )
                expected = {key: model[key] for key in argument if key in model}
                if (
                    not isinstance(found, dict)
                    or set(found) != set(expected)
                    or not all(_is(found[key], value) for key, value in expected.items())
                ):
                    asked = f"get_many({[_short(k) for k in argument]})"
                    if not isinstance(found, dict):
                        raise _model_failure(backend, asked, None, expected, found)
                    wrong = [
                        key
                        for key in dict.fromkeys(argument)
                        if (key in found) != (key in expected)
                        or (key in expected and not _is(found[key], expected[key]))
                    ]
                    extra = [key for key in found if key not in expected]
                    key = (wrong or extra)[0]
                    raise _model_failure(
                        backend,
                        asked,
                        key,
                        expected.get(key, "the key left out (it is not stored)"),
                        found.get(key),
                    )

    _run(agrees_with_a_dict, random_seed, "check_model(make_backend")


def check_json_serde(
    serde: RemoteCacheSerde[JsonDataTy, bytes] | None = None,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
) -> None:
    """A JSON serde writes upstream's bytes (ASCII only) and reads back an equal value.

    Equal means of the same type all the way down (``1``, ``1.0`` and ``True`` differ, so
    do ``0.0`` and ``-0.0``). ``serde`` defaults to ``RemoteCacheJsonSerde()``.
    """
    serde = serde if serde is not None else RemoteCacheJsonSerde()
    name = type(serde).__name__

    @suite_settings(examples)
    @given(json_data())
    def round_trips(value: JsonDataTy) -> None:
        if on_example is not None:
            on_example()
        data = serde.encode(value)
        expected = bytes(json.dumps(value), "ascii")
        if data != expected:
            raise AssertionError(
                f"{name}: encoded {value!r} as {data!r}; upstream writes {expected!r}"
            )
        if not data.isascii():
            raise AssertionError(f"{name}: encoded {value!r} with non-ASCII bytes {data!r}")
        back = serde.decode(data)
        if json.dumps(back) != json.dumps(value):
            raise AssertionError(f"{name}: {value!r} read back as {back!r}")

    _run(round_trips, random_seed, "check_json_serde(serde")
