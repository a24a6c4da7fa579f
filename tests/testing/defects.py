"""A catalogue of realistic backend defects, each a small backend with one bug planted.

Each is the kind of bug real backends have (file systems that fold case or normalise
Unicode, memcached's 1 MiB and 250-byte limits, C strings, read caches, unlocked files).
``test_defect_catalogue.py`` runs the public suite on each and expects it to be caught.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import pickle
import sqlite3
import threading
import time
import unicodedata
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from remote_cache import BackendUnavailableError, RemoteCacheBackend, ValueTooLargeError, _clock

MIB = 1024 * 1024


class DictBackend(RemoteCacheBackend[bytes]):
    """A correct dict backend with hooks for the defects: how keys and values are stored."""

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[Any, Any] = {}
        self.lock = threading.Lock()

    def stored_key(self, key: str) -> Any:
        """The key the store files ``key`` under."""
        return key

    def _get(self, key: str) -> Any:
        with self.lock:
            return self.store.get(self.stored_key(key))

    def _put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.store[self.stored_key(key)] = data


# -- values -----------------------------------------------------------------------------------


class EmptyBytesIsMissing(DictBackend):
    """``b""`` read back as a miss: ``value or None``."""

    def _get(self, key: str) -> Any:
        return super()._get(key) or None


class DropsValuesOver1MiB(DictBackend):
    """Values over 1 MiB silently not stored (memcached's default item size)."""

    def _put(self, key: str, data: bytes) -> None:
        if len(data) <= MIB:
            super()._put(key, data)


class TruncatesAt1MiB(DictBackend):
    """Values cut to 1 MiB."""

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, data[:MIB])


class DeclaresMoreThanItHolds(DropsValuesOver1MiB):
    """Declares a 4 MiB limit, but the server behind it drops anything over 1 MiB."""

    max_value_bytes = 4 * MIB


class RefusesWithoutDeclaring(DictBackend):
    """Refuses values over 1 MiB with ``ValueTooLargeError`` but declares no limit."""

    def _put(self, key: str, data: bytes) -> None:
        if len(data) > MIB:
            raise ValueTooLargeError("too large", key=key, size=len(data), limit=MIB)
        super()._put(key, data)


class StripsTrailingNul(DictBackend):
    """Values handled as C strings: trailing NUL bytes stripped."""

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, data.rstrip(b"\x00"))


class ReturnsStr(DictBackend):
    """Values read back as ``str`` (decoded, as a text-mode client does)."""

    def _get(self, key: str) -> Any:
        data = super()._get(key)
        return None if data is None else data.decode("latin-1")


class ReturnsBytearray(DictBackend):
    """Values kept and read back as the store's ``bytearray``, not ``bytes``."""

    def _put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.store[self.stored_key(key)] = bytearray(data)


class ReusesWriteBuffer(DictBackend):
    """Each put copies into one reused buffer and keeps a reference to it: all keys alias."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()

    def _put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.buffer[:] = data
            self.store[key] = self.buffer

    def _get(self, key: str) -> Any:
        data = super()._get(key)
        return None if data is None else bytes(data)


# -- keys -------------------------------------------------------------------------------------


class CaseInsensitiveKeys(DictBackend):
    """Keys folded to lower case, as on macOS and Windows file systems."""

    def stored_key(self, key: str) -> Any:
        return key.lower()


class NormalisesUnicodeKeys(DictBackend):
    """Keys normalised to NFD, as HFS+ does to file names."""

    def stored_key(self, key: str) -> Any:
        return unicodedata.normalize("NFD", key)


class TruncatesKeysAt250Bytes(DictBackend):
    """Keys cut at 250 bytes, memcached's key limit."""

    def stored_key(self, key: str) -> Any:
        return key.encode("utf-8", "surrogatepass")[:250]


class ManglesNonAsciiKeys(DictBackend):
    """Keys sent through an ASCII codec that replaces what it cannot encode with ``?``."""

    def stored_key(self, key: str) -> Any:
        return key.encode("ascii", "replace")


class CutsKeysAtNul(DictBackend):
    """Keys handled as C strings: everything from the first NUL dropped."""

    def stored_key(self, key: str) -> Any:
        return key.split("\x00", 1)[0]


class StripsKeyWhitespace(DictBackend):
    """Keys stripped of surrounding whitespace."""

    def stored_key(self, key: str) -> Any:
        return key.strip()


class StripsCachePrefix(DictBackend):
    """Keys stored without their ``pt2:<cache id>::`` prefix, so cache ids collide."""

    def stored_key(self, key: str) -> Any:
        return key.rsplit("::", 1)[-1]


class SqliteTextKeys(RemoteCacheBackend[bytes]):
    """Keys in a TEXT column, which cannot hold a lone surrogate."""

    def __init__(self) -> None:
        super().__init__()
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        self.lock = threading.Lock()

    def _get(self, key: str) -> bytes | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (key, data))


# -- overwrites, batches, isolation ---------------------------------------------------------------


class KeepsFirstWrite(DictBackend):
    """A put never replaces a stored value."""

    def _put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.store.setdefault(key, data)


class StaleReadAfterOverwrite(DictBackend):
    """A read cache invalidated one read late: the first read after an overwrite is stale."""

    def __init__(self) -> None:
        super().__init__()
        self.read_cache: dict[str, Any] = {}
        self.outdated: set[str] = set()

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, data)
        with self.lock:
            self.outdated.add(key)

    def _get(self, key: str) -> Any:
        with self.lock:
            if key in self.read_cache:
                value = self.read_cache[key]
                if key in self.outdated:
                    self.outdated.discard(key)
                    del self.read_cache[key]
                return value
            value = self.store.get(key)
            self.read_cache[key] = value
            self.outdated.discard(key)
            return value


class GetManyMissesAsNone(DictBackend):
    """``get_many`` returns misses as ``None`` instead of leaving them out."""

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        return {key: self._get(key) for key in keys}


class GetManyMisaligned(DictBackend):
    """``get_many`` zips the keys with the found values only, shifting them after a miss."""

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        values = [value for value in (self._get(key) for key in keys) if value is not None]
        return dict(zip(keys, values, strict=False))


class KeepsOnlyTheLastBatchKey(DictBackend):
    """``put_many`` stores only its last item."""

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        *_, (key, data) = mapping.items()
        self._put(key, data)


class TruncatesBatchesAt999(DictBackend):
    """``get_many`` answers only the first 999 keys (SQLite's old parameter limit)."""

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        return super()._get_many(keys[:999])


class SharedStore(DictBackend):
    """Every instance shares one module-level store: backends are not isolated."""

    shared: ClassVar[dict[Any, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.store = SharedStore.shared


# -- files and concurrency ----------------------------------------------------------------------


class SingleFileNoLock(RemoteCacheBackend[bytes]):
    """Every entry in one pickle file, updated by read-modify-write without a lock."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _load(self) -> dict[str, bytes]:
        try:
            with open(self.path, "rb") as file:
                return dict(pickle.load(file))
        except (FileNotFoundError, EOFError):
            return {}

    def _get(self, key: str) -> bytes | None:
        return self._load().get(key)

    def _put(self, key: str, data: bytes) -> None:
        entries = self._load()
        entries[key] = data
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        with open(temporary, "wb") as file:
            pickle.dump(entries, file)
        os.replace(temporary, self.path)


class LocksOnlyWithinOneProcess(SingleFileNoLock):
    """The same file, locked for threads only, though it declares it is shared by processes."""

    shared_between_processes = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.lock = threading.Lock()

    def _put(self, key: str, data: bytes) -> None:
        with self.lock:
            super()._put(key, data)


class TornWrites(RemoteCacheBackend[bytes]):
    """One file per key, rewritten in place in 64 KiB chunks: readers can see a part."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _put(self, key: str, data: bytes) -> None:
        with open(self._path(key), "wb") as file:
            for start in range(0, len(data), 64 * 1024):
                file.write(data[start : start + 64 * 1024])
                file.flush()


# -- found by an outside review of the suite --------------------------------------------------


class CompressionSniffing(DictBackend):
    """Compresses values over 1 KiB, and decides how to read by sniffing for a zlib header:
    a caller's own compressed value (a small one, stored as is) is read back decompressed."""

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, zlib.compress(data) if len(data) > 1024 else data)

    def _get(self, key: str) -> Any:
        raw = super()._get(key)
        if raw is not None and raw[:2] in (b"x\x9c", b"x\x01", b"x\xda"):
            try:
                return zlib.decompress(raw)
            except zlib.error:
                return raw
        return raw


class KeyPlusValueLimit(DictBackend):
    """memcached-like: the item limit covers the key and a 48-byte header too; it declares
    1 MiB - 100 (true for short keys) and, with noreply, drops a larger item silently."""

    max_value_bytes = MIB - 100

    def _put(self, key: str, data: bytes) -> None:
        if len(key.encode("utf-8", "surrogatepass")) + len(data) + 48 <= MIB:
            super()._put(key, data)


class BackslashReplaceKeys(DictBackend):
    """Keys encoded with ``backslashreplace``: ``'x\\ud800'`` is stored as the text
    ``'x\\\\ud800'``, so the two keys collide."""

    def stored_key(self, key: str) -> Any:
        return key.encode("utf-8", "backslashreplace")


class PutManyDedupesCaseInsensitively(DictBackend):
    """``put_many`` drops keys that equal an earlier one of the batch but for case
    ("no duplicates in one MSET"): of two such keys only the first is written."""

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        kept: dict[str, tuple[str, bytes]] = {}
        for key, data in mapping.items():
            kept.setdefault(key.lower(), (key, data))
        for key, data in kept.values():
            self._put(key, data)


class SharedConnectionReplies(DictBackend):
    """One connection for all threads: requests are sent under a lock but replies are read
    outside it, so concurrent gets can take each other's replies."""

    def __init__(self) -> None:
        super().__init__()
        self.send_lock = threading.Lock()
        self.replies: collections.deque[Any] = collections.deque()
        self.reply_ready = threading.Condition()

    def _get(self, key: str) -> Any:
        with self.send_lock, self.reply_ready:
            self.replies.append(super()._get(key))  # the server answers in order
            self.reply_ready.notify_all()
        time.sleep(0)  # the network
        with self.reply_ready:
            while not self.replies:
                self.reply_ready.wait()
            return self.replies.popleft()  # the first reply, not necessarily ours


class LastReadCacheRacy(DictBackend):
    """A one-entry cache of the last key read, updated without a lock: a reader can get the
    value of another key between the two assignments."""

    def __init__(self) -> None:
        super().__init__()
        self.last_key: str | None = None
        self.last_value: Any = None

    def _get(self, key: str) -> Any:
        if key == self.last_key:
            return self.last_value
        value = super()._get(key)
        self.last_key = key
        time.sleep(0)  # anything that lets another thread run here
        self.last_value = value
        return value

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, data)
        if key == self.last_key:
            self.last_key = None


class _Folder(RemoteCacheBackend[bytes]):
    """One file per key in a folder, written to a temporary file, then renamed."""

    shared_between_processes = True

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    def _temporary(self, key: str) -> Path:
        return self.root / f".tmp-{os.getpid()}-{threading.get_ident()}"

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _put(self, key: str, data: bytes) -> None:
        temporary = self._temporary(key)
        with open(temporary, "wb") as file:
            for start in range(0, len(data), 64 * 1024):
                file.write(data[start : start + 64 * 1024])
                file.flush()
        os.replace(temporary, self._path(key))


class FolderFixedTempName(_Folder):
    """The temporary file is named after the key alone: concurrent writers of one key (several
    ranks compiling one graph) share it, and one's rename fails or moves the other's half."""

    def _temporary(self, key: str) -> Path:
        return self._path(key).with_suffix(".tmp")


class FolderNamedByHash(_Folder):
    """Files named by Python's ``hash(key)``, which differs between interpreters (its seed is
    random per process): another process looks for other names."""

    def _path(self, key: str) -> Path:
        return self.root / f"{hash(key) & 0xFFFFFFFFFFFFFFFF:016x}"


class FolderWithNearCache(_Folder):
    """Keeps every value read or written in a dict of its own, never invalidated: an
    overwrite made in another process is never seen by one that read the key before."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.near: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def _get(self, key: str) -> bytes | None:
        with self.lock:
            if key in self.near:
                return self.near[key]
        data = super()._get(key)
        if data is not None:
            with self.lock:
                self.near[key] = data
        return data

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, data)
        with self.lock:
            self.near[key] = data


# -- calls that never return -------------------------------------------------------------------


class HangsOnOneKey(DictBackend):
    """A get of a key with a NUL in it waits forever (a C library blocking on a bad name)."""

    never = threading.Event()

    def _get(self, key: str) -> Any:
        if "\x00" in key:
            self.never.wait()
        return super()._get(key)


class DeadlocksInPutMany(DictBackend):
    """``put_many`` holds the store's lock and calls ``put``, which takes it again."""

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        with self.lock:
            for key, data in mapping.items():
                self._put(key, data)  # the lock is not reentrant: waits forever


# -- failures: a store that cannot be reached -----------------------------------------------------


class StoreTimeout(BaseException):
    """What a driver raised on a deadline, derived from BaseException to pass every handler."""


class _Remote(DictBackend):
    """A store behind a connection; ``reachable=False`` is that store down (the driver raises)."""

    def __init__(self, reachable: bool = True) -> None:
        super().__init__()
        self.reachable = reachable

    def _reach(self) -> None:
        if not self.reachable:
            raise ConnectionRefusedError(111, "Connection refused")

    def _get(self, key: str) -> Any:
        self._reach()
        return super()._get(key)

    def _put(self, key: str, data: bytes) -> None:
        self._reach()
        super()._put(key, data)

    @classmethod
    def broken(cls) -> _Remote:
        """One whose store cannot be reached."""
        return cls(reachable=False)


class TranslatesStoreErrors(_Remote):
    """The bug-free twin: the driver's error becomes ``BackendUnavailableError``."""

    def _reach(self) -> None:
        try:
            super()._reach()
        except OSError as exc:
            raise BackendUnavailableError(
                f"the store: {exc}", backend="remote", operation="call"
            ) from exc


class LetsDriverErrorsOut(_Remote):
    """The driver's ``ConnectionRefusedError`` escapes: the caches do not fail open on it."""


class BaseExceptionOnDeadline(_Remote):
    """A driver timeout derived from ``BaseException``, which passes every handler."""

    def _reach(self) -> None:
        if not self.reachable:
            raise StoreTimeout("no answer within 5 s")


class MissesWhenDown(_Remote):
    """Every error swallowed: a miss for a get, an acknowledged put; the outage is invisible."""

    def _get(self, key: str) -> Any:
        try:
            return super()._get(key)
        except OSError:
            return None

    def _put(self, key: str, data: bytes) -> None:
        with contextlib.suppress(OSError):
            super()._put(key, data)


class HangsWhenDown(_Remote):
    """A connect without a timeout: a store that is down makes every call wait forever."""

    def _reach(self) -> None:
        if not self.reachable:
            HangsOnOneKey.never.wait()


class SqliteUntranslated(RemoteCacheBackend[bytes]):
    """SQLite in a file; ``sqlite3.OperationalError`` escapes (a newcomer's backend did)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self.db is None:
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("CREATE TABLE IF NOT EXISTS entries (key BLOB PRIMARY KEY, value BLOB)")
            self.db = db
        return self.db

    def _get(self, key: str) -> bytes | None:
        row = (
            self._connection()
            .execute(
                "SELECT value FROM entries WHERE key = ?", (key.encode("utf-8", "surrogatepass"),)
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def _put(self, key: str, data: bytes) -> None:
        with self._connection() as db:
            db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?)",
                (key.encode("utf-8", "surrogatepass"), data),
            )


# -- other instances ---------------------------------------------------------------------------


class FolderRemembersMisses(_Folder):
    """Each instance remembers the keys it missed, to spare the disk a lookup: a key another
    process writes afterwards stays a miss here."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.misses: set[str] = set()

    def _get(self, key: str) -> bytes | None:
        if key in self.misses:
            return None
        found = super()._get(key)
        if found is None:
            self.misses.add(key)
        return found

    def _put(self, key: str, data: bytes) -> None:
        self.misses.discard(key)
        super()._put(key, data)


# -- time --------------------------------------------------------------------------------------


class TtlInMilliseconds(DictBackend):
    """A one-hour TTL handed to an API that takes milliseconds: entries gone after 3.6 s...
    here 0.3 s (a 300 s TTL), the working set gone before the next compile reads it."""

    ttl_seconds = 300

    def __init__(self) -> None:
        super().__init__()
        self.deadlines: dict[str, float] = {}

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, data)
        self.deadlines[key] = time.monotonic() + self.ttl_seconds / 1000  # ms meant, s given

    def _get(self, key: str) -> Any:
        if time.monotonic() > self.deadlines.get(key, float("inf")):
            return None
        return super()._get(key)


class ExpiresEarlierThanDeclared(DictBackend):
    """Declares ``expire`` = 60 s but its store drops entries after a fifth of it (a TTL
    counted in the wrong unit on the test's clock too)."""

    expire = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[str, float] = {}

    def _put(self, key: str, data: bytes) -> None:
        super()._put(key, data)
        self.written[key] = _clock.monotonic()

    def _get(self, key: str) -> Any:
        if _clock.monotonic() - self.written.get(key, _clock.monotonic()) > self.expire / 5:
            return None
        return super()._get(key)


# -- key mapping and chunking -------------------------------------------------------------------


class JoinsBatchKeysWithComma(DictBackend):
    """``get_many`` sends the keys joined by "," (a text protocol) and splits them again:
    a key with a comma in it becomes two."""

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        found = {}
        for key in ",".join(keys).split(","):
            value = self._get(key)
            if value is not None:
                found[key] = value
        return {key: found[key] for key in keys if key in found}


class EscapesCommasOnly(DictBackend):
    """Commas escaped as %2C for a comma-separated store, but % itself left as it is: "a,b"
    and "a%2Cb" become one entry."""

    def stored_key(self, key: str) -> Any:
        return key.replace(",", "%2C")


class ChunksInTheKeySpace(DictBackend):
    """Values over 1 MiB split into 1 MiB chunks stored under "<key>.<n>", with the count under
    the key: a caller's key "big.0" overwrites a chunk."""

    CHUNK = 1024 * 1024

    def _put(self, key: str, data: bytes) -> None:
        if len(data) <= self.CHUNK:
            super()._put(key, b"v" + data)
            return
        chunks = [data[i : i + self.CHUNK] for i in range(0, len(data), self.CHUNK)]
        for index, chunk in enumerate(chunks):
            super()._put(f"{key}.{index}", b"v" + chunk)
        super()._put(key, b"c" + str(len(chunks)).encode())

    def _get(self, key: str) -> Any:
        stored = super()._get(key)
        if stored is None or stored[:1] == b"v":
            return None if stored is None else stored[1:]
        parts = [DictBackend._get(self, f"{key}.{index}") for index in range(int(stored[1:]))]
        if any(part is None for part in parts):
            return None
        return b"".join(part[1:] for part in parts if part is not None)


# -- capacity ----------------------------------------------------------------------------------


class _Capped(DictBackend):
    """A store of at most ``capacity_bytes`` of values, evicting when full."""

    capacity_bytes = 32 * 1024 * 1024  # above what check_values holds at once (about 16 MiB)

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def _put(self, key: str, data: bytes) -> None:
        with self.lock:
            if key in self.store:
                self.order.remove(key)
            self.store[key] = data
            self.order.append(key)
            while sum(len(v) for v in self.store.values()) > self.capacity_bytes:
                self._evict()

    def _evict(self) -> None:
        del self.store[self.order.pop(0)]  # the oldest: right


class EvictsNewestWhenFull(_Capped):
    """When full, drops the entry it has just written: every new result is lost."""

    def _evict(self) -> None:
        del self.store[self.order.pop()]


# -- messages ----------------------------------------------------------------------------------


class SqliteLikeLookup(RemoteCacheBackend[bytes]):
    """Looks keys up with ``LIKE`` instead of ``=``: ``_`` and ``%`` are wildcards, and ASCII
    case is ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        self.lock = threading.Lock()

    def _get(self, key: str) -> bytes | None:
        stored = key.encode("utf-8", "surrogatepass").decode("latin-1")  # one char per byte
        with self.lock:
            row = self.db.execute(
                "SELECT value FROM entries WHERE key LIKE ? ORDER BY rowid LIMIT 1", (stored,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, key: str, data: bytes) -> None:
        stored = key.encode("utf-8", "surrogatepass").decode("latin-1")
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (stored, data))


class NamesEntriesByShortMd5(DictBackend):
    """Entries filed under the first 8 hex digits of the key's md5 (a short file name): about
    one pair in 77,000 keys collides, and a whole build cache holds that many."""

    def stored_key(self, key: str) -> Any:
        return hashlib.md5(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]


class LocksInOppositeOrders(DictBackend):
    """``put_many`` takes the index lock then the data lock, ``get_many`` the other way round:
    two threads at once wait for each other forever (no call on the main thread hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.index_lock = threading.Lock()
        self.data_lock = threading.Lock()

    def _put_many(self, mapping: Mapping[str, bytes]) -> None:
        with self.index_lock:
            time.sleep(0.001)
            with self.data_lock:
                for key, data in mapping.items():
                    self.store[key] = data

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        with self.data_lock:
            time.sleep(0.001)
            with self.index_lock:
                return {key: self.store[key] for key in keys if key in self.store}
