"""The Redis path on loopback: ours against raw redis-py, batches against single calls.

- ``RedisRemoteCache.get/put`` (key format, JSON, stats, breaker) against raw redis-py
  ``GET``/``SET`` of the same key and bytes, on one local ``redis-server``; with redis-py's
  hiredis parser and with its pure-Python one.
- ``get_many``/``put_many`` of 100 keys against 100 single calls, in keys per second, on the
  standalone server and on a local 3-master cluster.
"""

from __future__ import annotations

from typing import Any

from bench._timing import ops_per_second
from remote_cache import RedisRemoteCache, RedisRemoteCacheBackend
from remote_cache.testing import RedisClusterServer, RedisServer

ROUNDS = 7
SINGLE_CALLS = 1500
BATCH = 100
VALUE: dict[str, Any] = {"data": "x" * 220, "time_taken_ms": 1234}


def _client(server: RedisServer, *, hiredis: bool) -> Any:
    import redis
    from redis._parsers import _HiredisParser, _RESP2Parser

    pool = redis.ConnectionPool(
        host=server.host,
        port=server.port,
        parser_class=_HiredisParser if hiredis else _RESP2Parser,
        socket_timeout=5,
    )
    return redis.Redis(connection_pool=pool)


def _single_loops(cache: RedisRemoteCache, raw: Any) -> dict[str, Any]:
    cache.put("k", VALUE)
    key = cache._get_key("k")
    data = raw.get(key)

    def ours_get(n: int) -> None:
        for _ in range(n):
            cache.get("k")

    def raw_get(n: int) -> None:
        for _ in range(n):
            raw.get(key)

    def ours_put(n: int) -> None:
        for _ in range(n):
            cache.put("k", VALUE)

    def raw_put(n: int) -> None:
        for _ in range(n):
            raw.set(key, data)

    return {"get": (ours_get, raw_get), "put": (ours_put, raw_put)}


def measure_against_raw(server: RedisServer) -> list[dict[str, Any]]:
    """Ops/s of ours and raw redis-py, for get and put, hiredis on and off."""
    rows = []
    for hiredis in (True, False):
        client = _client(server, hiredis=hiredis)
        cache = RedisRemoteCache("bench", backend=RedisRemoteCacheBackend(client=client))
        for operation, (ours, raw) in _single_loops(cache, client).items():
            rates = ops_per_second({"ours": ours, "raw": raw}, rounds=ROUNDS, number=SINGLE_CALLS)
            rows.append(
                {
                    "hiredis": hiredis,
                    "operation": operation,
                    "ours": rates["ours"],
                    "raw": rates["raw"],
                    "ratio": rates["ours"] / rates["raw"],
                    "target": 0.85,
                }
            )
        client.close()
    return rows


def _batch_loops(cache: RedisRemoteCache) -> dict[str, Any]:
    keys = [f"key-{i:03d}" for i in range(BATCH)]
    mapping = dict.fromkeys(keys, VALUE)
    cache.put_many(mapping)

    def single_get(n: int) -> None:
        for i in range(n):
            cache.get(keys[i % BATCH])

    def batch_get(n: int) -> None:
        for _ in range(n // BATCH):
            cache.get_many(keys)

    def single_put(n: int) -> None:
        for i in range(n):
            cache.put(keys[i % BATCH], VALUE)

    def batch_put(n: int) -> None:
        for _ in range(n // BATCH):
            cache.put_many(mapping)

    return {"get": (batch_get, single_get), "put": (batch_put, single_put)}


def measure_batches(where: str, backend: RedisRemoteCacheBackend) -> list[dict[str, Any]]:
    """Keys/s of 100-key batches and of single calls."""
    cache = RedisRemoteCache("bench-batch", backend=backend)
    rows = []
    for operation, (batch, single) in _batch_loops(cache).items():
        # 5 slices of 400 keys: a whole number of batches in each
        rates = ops_per_second(
            {"batch": batch, "single": single}, rounds=ROUNDS, number=2000, slices=5
        )
        rows.append(
            {
                "where": where,
                "operation": operation,
                "batch": rates["batch"],
                "single": rates["single"],
                "ratio": rates["batch"] / rates["single"],
                "target": 10.0,
            }
        )
    return rows


def measure() -> dict[str, list[dict[str, Any]]]:
    """Every Redis figure: against raw redis-py, and batches on a server and a cluster."""
    with RedisServer() as server:
        raw = measure_against_raw(server)
        batches = measure_batches("standalone", RedisRemoteCacheBackend(url=server.url, timeout=5))
    with RedisClusterServer() as cluster:
        batches += measure_batches(
            "cluster (3 masters)",
            RedisRemoteCacheBackend(url=cluster.url, cluster=True, timeout=5),
        )
    return {"raw": raw, "batches": batches}


def main() -> dict[str, list[dict[str, Any]]]:
    """Print the tables; return the rows."""
    results = measure()
    print(f"RedisRemoteCache vs raw redis-py on loopback (median of {ROUNDS} rounds)")
    for row in results["raw"]:
        parser = "hiredis" if row["hiredis"] else "python "
        verdict = "ok" if row["ratio"] >= row["target"] else "BELOW"
        print(
            f"  {parser} {row['operation']}  ours {row['ours']:8.0f}/s  raw {row['raw']:8.0f}/s"
            f"  ratio {row['ratio']:.2f}x (target {row['target']}x) {verdict}"
        )
    print(f"get_many/put_many of {BATCH} keys vs single calls, keys per second")
    for row in results["batches"]:
        verdict = "ok" if row["ratio"] >= row["target"] else "BELOW"
        print(
            f"  {row['where']:<20} {row['operation']}  batch {row['batch']:9.0f}/s  single "
            f"{row['single']:8.0f}/s  ratio {row['ratio']:5.1f}x (target {row['target']}x) "
            f"{verdict}"
        )
    return results


if __name__ == "__main__":
    main()
