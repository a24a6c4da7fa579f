"""The deterministic checks of the basic contract: ``check_contract``, ``check_batches``,
``check_overwrites`` and ``check_stats`` (absent keys, falsy values, overwrites, batches,
isolation of the factory's backends, exact counters)."""

from __future__ import annotations

import random
from typing import Any

from remote_cache import RemoteCacheBackend
from remote_cache.testing._override import isolated_cache_stats
from remote_cache.testing.conformance._diagnostics import (
    _call,
    _crash,
    _describe,
    _deterministic,
    _fail,
    _is,
    _violation,
)
from remote_cache.testing.conformance._probe import BackendFactory, _Probe

_VALUES = [b"", b"\x00", b"v", bytes(range(256)), b"x" * 1024, b"y" * 1025, b"z" * 200_000]


# -- the contract ---------------------------------------------------------------------------


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
    probe = _Probe(backend, "check_contract", _deterministic("check_contract"))
    absent = backend.get("absent-key")
    probe.expect("get('absent-key') of a key never written", "absent-key", absent, None)
    for index, value in enumerate(_VALUES):
        key = f"value-{index}"
        backend.put(key, value)
        probe.written[value] = key
        got = backend.get(key)
        if not _is(got, value):
            raise _violation(
                backend,
                "check_contract",
                f"wrote {len(value)} bytes under {key!r}, then get({key!r})",
                key=key,
                expected=_describe(value),
                actual=_describe(got),
                replay=probe.replay,
            )
    backend.put("overwritten", b"first")
    backend.put("overwritten", b"second")
    got = backend.get("overwritten")
    if not _is(got, b"second"):
        raise _violation(
            backend,
            "check_contract",
            "put('overwritten', b'first'), put('overwritten', b'second'), then get: "
            "the second write to a key did not replace the first",
            key="overwritten",
            expected=_describe(b"second"),
            actual=_describe(got),
            replay=probe.replay,
        )
    probe.put_many({"batch-a": b"", "batch-b": b"b"})
    found = backend.get_many(["batch-a", "batch-b", "batch-absent", "batch-a"])
    if not isinstance(found, dict) or set(found) != {"batch-a", "batch-b"}:
        raise _violation(
            backend,
            "check_contract",
            "get_many(['batch-a', 'batch-b', 'batch-absent', 'batch-a']) after "
            "put_many({'batch-a': b'', 'batch-b': b'b'})",
            expected="{'batch-a': b'', 'batch-b': b'b'}, the two stored keys only",
            actual=_describe(found),
            replay=probe.replay,
        )
    probe.expect("get_many([... 'batch-a' ...])", "batch-a", found["batch-a"], b"")
    probe.expect("get_many([... 'batch-b' ...])", "batch-b", found["batch-b"], b"b")
    other = make_backend()  # after the writes: factories may empty a shared server
    seen = other.get("value-2")
    if seen is not None:
        raise _violation(
            backend,
            "check_contract",
            "a second backend from the factory, get('value-2'), written by the first",
            key="value-2",
            expected="None: each backend from the factory starts empty and isolated",
            actual=_describe(seen),
            note="backends from one factory share a store (a class-level or module-level dict?)",
            replay=probe.replay,
        )


# -- batches and overwrites -----------------------------------------------------------------------


def check_batches(make_backend: BackendFactory) -> None:
    """``get_many`` returns exactly the stored keys asked for, each with its own value.

    Misses are left out (never ``None``), duplicates and absent keys are mixed in, order is
    shuffled, and batches of 1,200 keys (beyond SQLite's 999 parameters) are read whole.
    """
    check = "check_batches"
    probe = _Probe(make_backend(), check, _deterministic(check))
    stored = {f"batch-{i}": f"value {i}".encode() for i in range(8)}
    stored["batch-empty"] = b""
    probe.put_many(stored)
    probe.get_many([], {})
    probe.get_many(["batch-absent"], {})
    asked = ["batch-3", "batch-absent-1", "batch-0", "batch-empty", "batch-7", "batch-absent-2"]
    asked += ["batch-3", "batch-5"]
    probe.get_many(asked, {key: stored[key] for key in asked if key in stored})
    probe.get_many(["batch-1"], {"batch-1": stored["batch-1"]})
    probe.put_many({"batch-1": b"new 1", "batch-new": b"new"})
    probe.get_many(
        ["batch-new", "batch-1", "batch-2"],
        {"batch-new": b"new", "batch-1": b"new 1", "batch-2": stored["batch-2"]},
        after="put_many over a stored key, then ",
    )
    big = {f"many-{i:04d}": i.to_bytes(2, "big") * 3 for i in range(1_200)}
    probe.put_many(big)
    keys = [*big, "many-absent"]
    random.Random(0).shuffle(keys)
    probe.get_many(keys, big, after="put_many of 1,200 keys, then ")


def check_overwrites(make_backend: BackendFactory) -> None:
    """Each read after an overwrite sees the new value: no stale reads, whatever was read before.

    Reads before the overwrite (by ``get`` and ``get_many``) prime any read cache a
    backend keeps; the next read must not return the old value.
    """
    check = "check_overwrites"
    probe = _Probe(make_backend(), check, _deterministic(check))
    probe.put("ow", b"first")
    probe.get("ow", b"first")
    probe.put("ow", b"second")
    probe.get("ow", b"second", after="put(b'first'), get, put(b'second'), then ")
    probe.get("ow", b"second", after="a second read after the overwrite: ")
    probe.get_many(["ow"], {"ow": b"second"})
    probe.put_many({"ow": b"third"})
    probe.get_many(["ow"], {"ow": b"third"}, after="get_many, put_many(b'third'), then ")
    probe.get("ow", b"third", after="put_many(b'third'), then ")
    probe.put("ow", b"")
    probe.get("ow", b"", after="an overwrite with b'', then ")
    probe.put("ow", b"fourth")
    probe.get("ow", b"fourth", after="an overwrite of b'' with b'fourth', then ")
    probe.get("ow-absent", None)
    probe.put("ow-absent", b"now stored")
    probe.get("ow-absent", b"now stored", after="a miss, a put, then ")


# -- counters -----------------------------------------------------------------------------------


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
