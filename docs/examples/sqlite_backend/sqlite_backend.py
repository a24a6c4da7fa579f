"""A third-party remote_cache backend: entries in one SQLite table.

The worked example of docs/backends.md. It shows the whole contract: ``_get`` and ``_put``
(required), ``_get_many`` and ``_put_many`` (one query each instead of a loop), and
SQLite's failures translated into ``BackendError`` subclasses so that caches fail open.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from remote_cache import BackendCommandError, BackendUnavailableError, RemoteCacheBackend

__all__ = ["SqliteBackend"]

# SQLite caps the number of ? parameters in one statement (999 on old builds).
_BATCH = 500


def _key_bytes(key: str) -> bytes:
    # Keys are stored as BLOBs: a TEXT column cannot hold a lone surrogate ("\ud800"),
    # which is a valid Python str. The conformance suite finds that key on its own.
    return key.encode("utf-8", "surrogatepass")


class SqliteBackend(RemoteCacheBackend[bytes]):
    """Bytes in a SQLite database (a file, or ``":memory:"``), one row per key."""

    def __init__(self, path: str | Path = ":memory:", *, timeout: float = 1.0) -> None:
        super().__init__()
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (key BLOB PRIMARY KEY, value BLOB NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise self._translate(exc, "connect", None) from exc

    def __repr__(self) -> str:
        return f"SqliteBackend({self.path!r})"

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def _translate(self, exc: sqlite3.Error, operation: str, key: str | None) -> Exception:
        """SQLite's errors as the BackendError the caches expect."""
        # A locked or unreadable database is an outage; anything else is a failed command.
        cls = (
            BackendUnavailableError
            if isinstance(exc, sqlite3.OperationalError)
            else BackendCommandError
        )
        return cls(
            f"{self.path}: {type(exc).__name__}: {exc}",
            backend="sqlite",
            operation=operation,
            key=key,
        )

    def _get(self, key: str) -> bytes | None:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT value FROM entries WHERE key = ?", (_key_bytes(key),)
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._translate(exc, "get", key) from exc
        return None if row is None else bytes(row[0])

    def _put(self, key: str, data: bytes) -> None:
        self._put_many({key: data})

    def _get_many(self, keys: list[str]) -> dict[str, bytes]:
        by_blob = {_key_bytes(key): key for key in keys}
        blobs = list(by_blob)
        found: dict[str, bytes] = {}
        try:
            with self._lock:
                for start in range(0, len(blobs), _BATCH):
                    chunk = blobs[start : start + _BATCH]
                    marks = ", ".join("?" * len(chunk))
                    rows = self._db.execute(
                        f"SELECT key, value FROM entries WHERE key IN ({marks})", chunk
                    )
                    for blob, value in rows:
                        found[by_blob[bytes(blob)]] = bytes(value)
        except sqlite3.Error as exc:
            raise self._translate(exc, "get_many", None) from exc
        return found

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        rows = [(_key_bytes(key), sqlite3.Binary(data)) for key, data in mapping.items()]
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany(
                        "INSERT INTO entries (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        rows,
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._translate(exc, "put_many", None) from exc
