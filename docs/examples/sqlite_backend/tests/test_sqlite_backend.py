"""The SQLite backend passes remote_cache's conformance and property suite."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from sqlite_backend import SqliteBackend

from remote_cache import BackendUnavailableError, RemoteFxGraphCache, cache_stats
from remote_cache.testing.conformance import BackendConformance, check_backend


class TestInMemoryDatabase(BackendConformance):
    """Every conformance test, each a test of its own, on a fresh in-memory database."""

    def make_backend(self) -> SqliteBackend:
        return SqliteBackend(":memory:")

    def make_broken_backend(self) -> SqliteBackend:
        return SqliteBackend("/nonexistent-folder/cache.sqlite")  # cannot be opened


class TestDatabaseFile(BackendConformance):
    """The same on files: each backend gets a database file of its own."""

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path
        self.counter = itertools.count()

    def make_backend(self) -> SqliteBackend:
        return SqliteBackend(self.folder / f"cache-{next(self.counter)}.sqlite")

    def make_broken_backend(self) -> SqliteBackend:
        return SqliteBackend(self.folder / "no-such-folder" / "cache.sqlite")


def test_check_backend_in_one_call() -> None:
    """``check_backend`` runs the same suite from a script, without pytest."""
    check_backend(SqliteBackend, examples=50, random_seed=0)


def test_entries_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first = RemoteFxGraphCache("graphs", backend=SqliteBackend(path))
    first.put("graph-hash", {"data": "kernel", "time_taken_ms": 12})
    second = RemoteFxGraphCache("graphs", backend=SqliteBackend(path))
    assert second.get("graph-hash") == {"data": "kernel", "time_taken_ms": 12}


def test_a_locked_database_fails_open(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    backend = SqliteBackend(path, timeout=0.05)
    cache = RemoteFxGraphCache("graphs", backend=backend)
    cache.put("kept", {"v": 1})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        with pytest.raises(BackendUnavailableError, match="locked"):
            backend.put("k", b"v")
        cache.put("dropped", {"v": 2})  # the cache swallows it: a dropped put, counted
        assert cache_stats["RemoteFxGraphCache"].fail_open >= 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cache.get("kept") == {"v": 1}
    assert cache.get("dropped") is None


def test_large_batches_are_chunked() -> None:
    backend = SqliteBackend()
    mapping = {f"k{i}": bytes([i % 256]) for i in range(1_500)}
    backend.put_many(mapping)
    assert backend.get_many([*mapping, "absent"]) == mapping
