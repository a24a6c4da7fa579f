"""``check_backend``: the backend contract, checked against any backend factory, pytest-free."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from remote_cache import RemoteCacheBackend
from remote_cache.testing._override import isolated_cache_stats
from remote_cache.testing.strategies import cache_keys

__all__ = ["check_backend"]

BackendFactory = Callable[[], RemoteCacheBackend[Any]]

_VALUES = [b"", b"\x00", b"v", bytes(range(256)), b"x" * 1024, b"y" * 1025, b"z" * 200_000]


def _fail(backend: RemoteCacheBackend[Any], message: str) -> None:
    raise AssertionError(f"{type(backend).__name__}: {message}")


def _check_contract(make_backend: BackendFactory) -> None:
    backend = make_backend()
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
    other = make_backend()
    if other.get("value-2") is not None:
        _fail(backend, "a fresh backend from the factory saw another backend's data")


def _check_stats(make_backend: BackendFactory) -> None:
    with isolated_cache_stats() as stats:
        backend = make_backend()
        backend.put("k", b"")
        backend.get("k")
        backend.get("absent")
        backend.get_many(["k", "absent"])
        backend.put_many({"a": b"1", "b": b"2"})
        stat = stats[f"backend:{type(backend).__name__}"]
    counted = (stat.hit, stat.miss, stat.put, stat.exception)
    if counted != (2, 2, 3, 0):
        _fail(backend, f"counted (hit, miss, put, exception) = {counted}, expected (2, 2, 3, 0)")


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), cache_keys(), st.binary(max_size=2048)),
        st.tuples(st.just("get"), cache_keys(), st.none()),
        st.tuples(st.just("get_many"), st.lists(cache_keys(), max_size=4), st.none()),
        st.tuples(
            st.just("put_many"),
            st.dictionaries(cache_keys(), st.binary(max_size=64), max_size=4),
            st.none(),
        ),
    ),
    max_size=25,
)


def _check_model(make_backend: BackendFactory, examples: int, random_seed: int | None) -> None:
    @settings(max_examples=examples, deadline=None, database=None)
    @given(_operations)
    def agrees_with_a_dict(operations: list[tuple[str, Any, Any]]) -> None:
        backend = make_backend()
        model: dict[str, bytes] = {}
        for operation, argument, data in operations:
            if operation == "put":
                backend.put(argument, data)
                model[argument] = data
            elif operation == "put_many":
                backend.put_many(argument)
                model.update(argument)
            elif operation == "get":
                got = backend.get(argument)
                if got != model.get(argument):
                    _fail(backend, f"get({argument!r}) = {got!r}, expected {model.get(argument)!r}")
            else:
                found = backend.get_many(argument)
                expected = {key: model[key] for key in argument if key in model}
                if found != expected:
                    _fail(backend, f"get_many({argument!r}) = {found!r}, expected {expected!r}")

    test = agrees_with_a_dict if random_seed is None else seed(random_seed)(agrees_with_a_dict)
    test()


def check_backend(
    make_backend: BackendFactory, *, examples: int = 100, random_seed: int | None = None
) -> None:
    """Check the backend contract against backends from ``make_backend`` (fresh, empty each call).

    Checks: an absent key reads as None; values (``b""``, binary, 1 KB boundaries, 200 KB)
    read back equal; the last write wins; batches return just the stored keys; factories
    give isolated backends; stats count hits, misses and puts exactly; and, with Hypothesis
    (``examples`` sequences, repeatable with ``random_seed``), that any sequence of gets and
    puts agrees with a dict. Raises ``AssertionError`` at the first violation. pytest-free.
    """
    _check_contract(make_backend)
    _check_stats(make_backend)
    _check_model(make_backend, examples, random_seed)
