"""The steps of ``remote-cache check`` on a target: round trips of sample values, the upstream
wire format, batches, a corrupt entry, the outage and black-hole drills, and fresh empty backends
for the conformance and property suites."""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Callable, Mapping

from remote_cache import (
    LocalCache,
    RedisRemoteCache,
    RedisRemoteCacheBackend,
    RemoteCacheBackend,
    RemoteFxGraphCache,
)
from remote_cache._serde import JsonDataTy
from remote_cache.testing._check_report import NotApplicable
from remote_cache.testing._check_target import Target
from remote_cache.testing._fakeredis import new_fake_server

__all__ = ["SAMPLE_VALUES"]

SAMPLE_VALUES: dict[str, JsonDataTy] = {
    "fx-graph-entry": {"data": "gASVAAAAAAAAAACMBHRlc3SULg==", "time_taken_ms": 1234},
    "non-ascii": {"é": "ü", "snow": "☃", "rocket": "🚀"},
    "nested": {"a": [1, [2, [3, {"b": None}]]], "c": {"d": {"e": []}}},
    "floats": [0.1, -0.0, 1e308, 5e-324],
    "big-ints": [2**64, -(2**70)],
    "zero": 0,
    "empty-string": "",
    "empty-list": [],
    "false": False,
}


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _round_trip(target: Target, cache_cls: type[RedisRemoteCache]) -> str:
    cache = cache_cls(target.cache_id(cache_cls.__name__), backend=target.backend())
    for key, value in SAMPLE_VALUES.items():
        cache.put(key, value)
    for key, value in SAMPLE_VALUES.items():
        got = cache.get(key)
        _expect(got == value and type(got) is type(value), f"{key}: wrote {value!r}, read {got!r}")
    _expect(cache.get("absent-key") is None, "an absent key did not read as None")
    return f"{len(SAMPLE_VALUES)} values"


def _local_round_trip(cache_cls: type[LocalCache]) -> str:
    with tempfile.TemporaryDirectory(prefix="remote-cache-check-") as root:
        cache = cache_cls("check", root=root)
        for key, value in SAMPLE_VALUES.items():
            cache.put(key, value)
        fresh = cache_cls("check", root=root)
        for key, value in SAMPLE_VALUES.items():
            got = fresh.get(key)
            _expect(got == value, f"{key}: wrote {value!r}, read {got!r}")
        _expect(fresh.get("../escape") is None, "a key read outside its folder")
    return f"{len(SAMPLE_VALUES)} values"


def _wire_format(target: Target) -> str:
    cache_id = target.cache_id("wire")
    backend = target.backend()
    cache = RemoteFxGraphCache(cache_id, backend=backend)
    value = SAMPLE_VALUES["non-ascii"]
    cache.put("k", value)
    stored = target.raw_get(backend, f"pt2:{cache_id}::k:c1")
    expected = bytes(json.dumps(value), "ascii")
    _expect(stored == expected, f"stored {stored!r}, upstream writes {expected!r}")
    return "pt2:{cache_id}::{key}:c1, ASCII JSON"


def _batch(target: Target) -> str:
    cache = RemoteFxGraphCache(target.cache_id("batch"), backend=target.backend())
    mapping: dict[str, JsonDataTy] = {f"k{i}": {"i": i} for i in range(100)}
    cache.put_many(mapping)
    found = cache.get_many([*mapping, "absent"])
    _expect(found == mapping, f"get_many returned {len(found)} of {len(mapping)} entries")
    return "100 keys"


def _corrupt(target: Target) -> str:
    cache_id = target.cache_id("corrupt")
    backend = target.backend()
    target.raw_set(backend, f"pt2:{cache_id}::k:c1", b"\xff not json")
    cache = RemoteFxGraphCache(cache_id, backend=backend)
    _expect(cache.get("k") is None, "a corrupt entry did not read as a miss")
    return "read as a miss"


def _outage(target: Target) -> str:
    cache = RemoteFxGraphCache(target.cache_id("outage"), backend=target.backend())
    cache.put("kept", {"v": 1})
    if not target.down():
        raise NotApplicable(target.no_drills)
    try:
        started = time.monotonic()
        got = cache.get("kept")
        cache.put("dropped", {"v": 2})
        elapsed = time.monotonic() - started
    finally:
        target.up()
    _expect(got is None, f"read {got!r} from a server that is down")
    _expect(elapsed < 2 * target.timeout + 1, f"the outage cost {elapsed:.2f} s")
    recovered = cache.get("kept")
    _expect(recovered == {"v": 1}, f"after recovery read {recovered!r}")
    _expect(cache.get("dropped") is None, "a put made during the outage was stored")
    cache.put("after", {"v": 3})
    _expect(cache.get("after") == {"v": 3}, "writes do not work after recovery")
    return f"failed open in {elapsed * 1000:.0f} ms, recovered, nothing lost"


def _black_hole(target: Target) -> str:
    cache = RemoteFxGraphCache(target.cache_id("hang"), backend=target.backend())
    if not target.hang():
        raise NotApplicable(target.no_drills)
    try:
        started = time.monotonic()
        got = cache.get("k")
        elapsed = time.monotonic() - started
    finally:
        target.up()
    _expect(got is None, "a hung server returned a value")
    _expect(elapsed < target.timeout + 0.5, f"a hung server held a get for {elapsed:.2f} s")
    return f"bounded at {elapsed * 1000:.0f} ms"


class _PrefixedBackend(RemoteCacheBackend[bytes]):
    """``inner`` with every key under ``prefix``: the check's own corner of a real server."""

    def __init__(self, inner: RemoteCacheBackend[bytes], prefix: str) -> None:
        super().__init__()
        self.inner = inner
        self.prefix = prefix

    def _get(self, key: str) -> bytes | None:
        return self.inner.get(self.prefix + key)

    def _put(self, key: str, data: bytes) -> None:
        self.inner.put(self.prefix + key, data)

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        found = self.inner.get_many([self.prefix + key for key in keys])
        return {key[len(self.prefix) :]: data for key, data in found.items()}

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        self.inner.put_many({self.prefix + key: data for key, data in mapping.items()})


def _fresh_backends(target: Target) -> Callable[[], RemoteCacheBackend[bytes]]:
    """A factory of empty backends: a new fakeredis server each, or a new prefix each."""
    counter = itertools.count()

    def make() -> RemoteCacheBackend[bytes]:
        if target.factory is not None:
            return target.factory()
        if target.url is None:
            import fakeredis

            client = fakeredis.FakeRedis(server=new_fake_server())
            return RedisRemoteCacheBackend(client=client, retry_after=0, breaker=target.breaker)
        return _PrefixedBackend(target.backend(), f"pt2:{target.run_id}-p{next(counter)}:")

    return make
