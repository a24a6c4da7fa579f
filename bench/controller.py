"""The controller's overhead against PyTorch 2.13's ``RemoteCache``, same in-memory backend.

Both sides get a backend that keeps bytes in a dict and a 250-byte value, so what differs is
the controller: key checks, serde, stats, samples. A plain subclass of ``RemoteCache`` is
measured with each serde, and the shipped ``RemoteFxGraphCache`` (JSON, upstream's keys,
corrupt entries as misses) against PyTorch's own ``RemoteFxGraphCache``: what users get.
Without torch the comparison is skipped and our own figures are still printed.
"""

from __future__ import annotations

import json
from typing import Any

from bench._timing import ops_per_second
from remote_cache import (
    RemoteCache,
    RemoteCacheBackend,
    RemoteCacheJsonSerde,
    RemoteCachePassthroughSerde,
    RemoteFxGraphCache,
)

ROUNDS = 9
NUMBER = 50_000
VALUE: dict[str, Any] = {"data": "x" * 220, "time_taken_ms": 1234}
RAW = json.dumps(VALUE).encode()
TARGETS = {
    ("passthrough", "get"): 2.0,
    ("passthrough", "put"): 2.0,
    ("json", "get"): 1.3,
    ("json", "put"): 1.5,
    ("RemoteFxGraphCache", "get"): 1.5,
    ("RemoteFxGraphCache", "put"): 1.5,
}
SUBJECTS = ("passthrough", "json", "RemoteFxGraphCache")
"""A plain cache with each serde, then the shipped cache."""


class DictBackend(RemoteCacheBackend[Any]):
    """Ours: values in a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[str, Any] = {}

    def _get(self, key: str) -> Any:
        return self.store.get(key)

    def _put(self, key: str, data: Any) -> None:
        self.store[key] = data


class BenchCache(RemoteCache[Any]):
    """Our controller, counted under its own name."""


def _loops(cache: Any, value: Any) -> dict[str, Any]:
    cache.put("hit", value)

    def get(n: int) -> None:
        read = cache.get
        for _ in range(n):
            read("hit")

    def put(n: int) -> None:
        write = cache.put
        for _ in range(n):
            write("k", value)

    return {"get": get, "put": put}


def _torch_caches() -> dict[str, Any] | None:
    try:
        from torch._inductor import remote_cache as upstream
    except ImportError:
        return None

    class TorchDictBackend(upstream.RemoteCacheBackend[Any]):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.store: dict[str, Any] = {}

        def _get(self, key: str) -> Any:
            return self.store.get(key)

        def _put(self, key: str, data: Any) -> None:
            self.store[key] = data

    class TorchBenchCache(upstream.RemoteCache[Any]):  # type: ignore[misc]
        pass

    class TorchFxGraphCache(upstream.RemoteFxGraphCache):  # type: ignore[misc]
        """Upstream's own class; the override is how its tests give it a backend."""

        backend_override_cls = TorchDictBackend

    return {
        "passthrough": TorchBenchCache(TorchDictBackend(), upstream.RemoteCachePassthroughSerde()),
        "json": TorchBenchCache(TorchDictBackend(), upstream.RemoteCacheJsonSerde()),
        "RemoteFxGraphCache": TorchFxGraphCache("bench"),
    }


def measure() -> list[dict[str, Any]]:
    """Ops/s of ours and torch's for each serde and operation, and their ratio."""
    ours = {
        "passthrough": BenchCache(DictBackend(), RemoteCachePassthroughSerde()),
        "json": BenchCache(DictBackend(), RemoteCacheJsonSerde()),
        "RemoteFxGraphCache": RemoteFxGraphCache("bench", backend=DictBackend()),
    }
    theirs = _torch_caches()
    rows = []
    for serde in SUBJECTS:
        value = RAW if serde == "passthrough" else VALUE
        mine = _loops(ours[serde], value)
        upstream = _loops(theirs[serde], value) if theirs else {}
        for operation in ("get", "put"):
            subjects = {"ours": mine[operation]}
            if upstream:
                subjects["torch"] = upstream[operation]
            rates = ops_per_second(subjects, rounds=ROUNDS, number=NUMBER)
            torch_rate = rates.get("torch")
            rows.append(
                {
                    "serde": serde,
                    "operation": operation,
                    "ours": rates["ours"],
                    "torch": torch_rate,
                    "ratio": rates["ours"] / torch_rate if torch_rate else None,
                    "target": TARGETS[(serde, operation)],
                }
            )
    return rows


def main() -> list[dict[str, Any]]:
    """Print the table; return the rows."""
    rows = measure()
    print(
        "controller vs PyTorch 2.13 RemoteCache, and RemoteFxGraphCache vs its own "
        f"(median of {ROUNDS} rounds x {NUMBER})"
    )
    if rows[0]["torch"] is None:
        print("  torch is not importable (pip install torch==2.13.0): ours only")
    for row in rows:
        torch_part = (
            f"torch {row['torch'] / 1e3:7.0f}k/s  ratio {row['ratio']:.2f}x "
            f"(target {row['target']}x) {'ok' if row['ratio'] >= row['target'] else 'BELOW'}"
            if row["torch"]
            else ""
        )
        print(
            f"  {row['serde']:<18} {row['operation']}  ours {row['ours'] / 1e3:7.0f}k/s  "
            f"{torch_part}"
        )
    return rows


if __name__ == "__main__":
    main()
