"""``check_backend``: the backend contract and property suite for any backend, pytest-free.

``check_backend(make_backend)`` runs everything; the parts are public too, and
``BackendConformance`` turns them into test methods for pytest or unittest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from hypothesis import given, seed
from hypothesis import strategies as st

from remote_cache import RemoteCacheBackend, RemoteCacheJsonSerde, RemoteCacheSerde
from remote_cache._serde import JsonDataTy
from remote_cache.testing._hypothesis_settings import suite_settings
from remote_cache.testing._override import isolated_cache_stats
from remote_cache.testing.stateful import run_cache_machine
from remote_cache.testing.strategies import cache_keys, json_data

__all__ = [
    "BackendConformance",
    "check_backend",
    "check_contract",
    "check_json_serde",
    "check_model",
    "check_stats",
]

BackendFactory = Callable[[], RemoteCacheBackend[Any]]
_R = TypeVar("_R")

_VALUES = [b"", b"\x00", b"v", bytes(range(256)), b"x" * 1024, b"y" * 1025, b"z" * 200_000]


def _fail(backend: RemoteCacheBackend[Any], message: str) -> None:
    raise AssertionError(f"{type(backend).__name__}: {message}")


def _crash(backend: object, during: str, exc: Exception) -> AssertionError:
    """A backend that raises on valid input violates the contract; say where."""
    name = type(backend).__name__ if isinstance(backend, RemoteCacheBackend) else repr(backend)
    return AssertionError(f"{name}: {during} raised {type(exc).__name__}: {exc}")


def _call(
    backend: RemoteCacheBackend[Any], during: str, method: Callable[..., _R], *args: Any
) -> _R:
    try:
        return method(*args)
    except Exception as exc:
        raise _crash(backend, during, exc) from exc


def check_contract(make_backend: BackendFactory) -> None:
    """Absent keys, falsy and large values, overwrites, batches and isolation, each once."""
    backend = make_backend()
    try:
        _contract(backend, make_backend)
    except AssertionError:
        raise
    except Exception as exc:
        raise _crash(backend, "the contract check", exc) from exc


def _contract(backend: RemoteCacheBackend[Any], make_backend: BackendFactory) -> None:
    if backend.get("absent-key") is not None:
        _fail(backend, "a key never written did not read as None")
    for index, value in enumerate(_VALUES):
        key = f"value-{index}"
        backend.put(key, value)
        got = backend.get(key)
        if got != value:
            shown = got if got is None or len(got) < 40 else f"{len(got)} bytes"
            _fail(backend, f"wrote {len(value)} bytes under {key!r}, read back {shown!r}")
    backend.put("overwritten", b"first")
    backend.put("overwritten", b"second")
    if backend.get("overwritten") != b"second":
        _fail(backend, "the second write to a key did not replace the first")
    backend.put_many({"batch-a": b"", "batch-b": b"b"})
    found = backend.get_many(["batch-a", "batch-b", "batch-absent", "batch-a"])
    if found != {"batch-a": b"", "batch-b": b"b"}:
        _fail(backend, f"get_many returned {found!r}, expected the two stored keys only")
    other = make_backend()  # after the writes: factories may empty a shared server
    if other.get("value-2") is not None:
        _fail(backend, "a fresh backend from the factory saw another backend's data")


def check_stats(make_backend: BackendFactory) -> None:
    """The backend counts hits, misses and puts exactly, batches per key."""
    with isolated_cache_stats() as stats:
        backend = make_backend()
        _call(backend, "put('k', b'')", backend.put, "k", b"")
        _call(backend, "get('k')", backend.get, "k")
        _call(backend, "get('absent')", backend.get, "absent")
        _call(backend, "get_many(['k', 'absent'])", backend.get_many, ["k", "absent"])
        _call(backend, "put_many(...)", backend.put_many, {"a": b"1", "b": b"2"})
        stat = stats[f"backend:{type(backend).__name__}"]
    counted = (stat.hit, stat.miss, stat.put, stat.exception)
    if counted != (2, 2, 3, 0):
        _fail(backend, f"counted (hit, miss, put, exception) = {counted}, expected (2, 2, 3, 0)")


# A few recurring keys make overwrites and read-backs common; the rest explore key shapes.
# Falsy values get their own branch: reading them back as misses is a classic defect.
_keys = st.one_of(st.sampled_from(["a", "b", "c"]), cache_keys())
_values = st.one_of(st.sampled_from([b"", b"\x00", b"0"]), st.binary(max_size=2048))
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _keys, _values),
        st.tuples(st.just("get"), _keys, st.none()),
        st.tuples(st.just("get_many"), st.lists(_keys, max_size=4), st.none()),
        st.tuples(
            st.just("put_many"),
            st.dictionaries(_keys, _values, max_size=4),
            st.none(),
        ),
    ),
    max_size=25,
)


def _run(test: Callable[[], None], random_seed: int | None) -> None:
    (test if random_seed is None else seed(random_seed)(test))()


def check_model(
    make_backend: BackendFactory,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
) -> None:
    """Any sequence of gets and puts (single and batched) agrees with a dict.

    ``examples`` defaults to the loaded Hypothesis profile's ``max_examples``;
    ``random_seed`` makes the run repeatable; ``on_example`` is called once per example.
    """

    @suite_settings(examples)
    @given(_operations)
    def agrees_with_a_dict(operations: list[tuple[str, Any, Any]]) -> None:
        if on_example is not None:
            on_example()
        backend = make_backend()
        model: dict[str, bytes] = {}
        for operation, argument, data in operations:
            if operation == "put":
                _call(backend, f"put({argument!r})", backend.put, argument, data)
                model[argument] = data
            elif operation == "put_many":
                _call(backend, f"put_many({argument!r})", backend.put_many, argument)
                model.update(argument)
            elif operation == "get":
                got = _call(backend, f"get({argument!r})", backend.get, argument)
                if got != model.get(argument):
                    _fail(
                        backend,
                        f"get({argument!r}) returned {got!r}, expected {model.get(argument)!r}",
                    )
            else:
                found = _call(backend, f"get_many({argument!r})", backend.get_many, argument)
                expected = {key: model[key] for key in argument if key in model}
                if found != expected:
                    _fail(
                        backend, f"get_many({argument!r}) returned {found!r}, expected {expected!r}"
                    )

    _run(agrees_with_a_dict, random_seed)


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

    _run(round_trips, random_seed)


def check_backend(
    make_backend: BackendFactory,
    *,
    examples: int | None = None,
    random_seed: int | None = None,
    on_example: Callable[[], None] | None = None,
) -> None:
    """Check the backend contract against backends from ``make_backend`` (fresh, empty each call).

    Runs ``check_contract`` (an absent key reads as None; ``b""``, binary, the 1 KB
    boundaries and 200 KB read back equal; the last write wins; batches return just the
    stored keys; the factory gives isolated backends), ``check_stats`` (hits, misses and
    puts counted exactly), ``check_model`` (Hypothesis: any sequence of calls agrees with a
    dict) and the cache state machine of ``remote_cache.testing.stateful`` over the backend
    (caches, injected faults, corrupt entries and exact counters). ``examples`` defaults to
    the loaded Hypothesis profile's ``max_examples``; ``random_seed`` makes it repeatable.
    Raises ``AssertionError`` at the first violation. pytest-free.
    """
    check_contract(make_backend)
    check_stats(make_backend)
    check_model(make_backend, examples=examples, random_seed=random_seed, on_example=on_example)
    run_cache_machine(
        make_backend, examples=examples, random_seed=random_seed, on_example=on_example
    )


class BackendConformance:
    """The conformance suite as test methods: subclass it and define ``make_backend``.

    pytest collects subclasses named ``Test...``; unittest users mix in ``TestCase`` too::

        class TestSqliteBackend(BackendConformance):
            def make_backend(self) -> SqliteBackend:
                return SqliteBackend(":memory:")

    ``examples`` (None: the Hypothesis profile's ``max_examples``) and ``random_seed`` are
    class attributes to override.
    """

    examples: ClassVar[int | None] = None
    random_seed: ClassVar[int | None] = None

    def make_backend(self) -> RemoteCacheBackend[Any]:
        """Return a fresh, empty backend (each call a new one)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_backend()")

    def test_contract(self) -> None:
        """Absent keys, falsy and large values, overwrites, batches, isolation."""
        check_contract(self.make_backend)

    def test_stats(self) -> None:
        """Hits, misses and puts counted exactly."""
        check_stats(self.make_backend)

    def test_agrees_with_a_dict(self) -> None:
        """Any sequence of calls agrees with a dict."""
        check_model(self.make_backend, examples=self.examples, random_seed=self.random_seed)

    def test_cache_machine(self) -> None:
        """Caches over the backend, with injected faults, agree with the model."""
        run_cache_machine(self.make_backend, examples=self.examples, random_seed=self.random_seed)
