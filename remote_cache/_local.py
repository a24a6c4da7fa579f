"""The local backend: one file per entry under a root folder, written atomically."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

from remote_cache import _clock
from remote_cache._backend import RemoteCacheBackend
from remote_cache._process import on_reset
from remote_cache.exceptions import BackendCommandError, ConfigurationError

__all__ = ["LocalCacheBackend", "default_local_root", "safe_name", "sweep_temporary_files"]

_READABLE = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,199}")
_ENCODED_PREFIX = "="  # never in a readable name, so the two forms cannot collide
_MAX_ENCODED = 200
_TEMP_PREFIX = ".tmp-"  # a leading dot: never a readable key's name
_TEMP_NAME = re.compile(r"\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>[1-9][0-9]{0,9})-[0-9a-f]{12}")
"""``.tmp-<host>-<pid>-<random>``: the writer's host (a hash of its name) and process id."""


def _host_identity() -> str:
    """8 hex digits naming where a writer's process id means something: host, pid namespace."""
    # The host name, and on Linux the pid namespace: a container sharing the host's name
    # (``--network host``) numbers its processes on its own.
    identity = socket.gethostname()
    with contextlib.suppress(OSError):
        identity += os.readlink("/proc/self/ns/pid")
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:8]


_HOST = _host_identity()
STALE_SECONDS = 3600.0
"""A temporary file untouched for this long is stale whoever wrote it (a live writer's file
changes with every write)."""
SWEEP_SECONDS = 600.0
"""How often one process looks for stale temporary files in one folder (on a put)."""
_last_sweep: dict[Path, float] = {}
"""Folder -> ``_clock.monotonic()`` of this process's last sweep there. No lock: two threads
sweeping the same folder at once do no harm."""
_MODE_VARIABLE = "REMOTE_CACHE_LOCAL_MODE"
on_reset(_last_sweep.clear)  # the next put in each folder sweeps it again


def safe_name(key: str) -> str:
    """Return a file name for ``key`` that cannot leave its folder, nor collide with another key's.

    Keys of lower-case letters, digits, ``_``, ``-`` and ``.`` (not leading) are their own
    name, so hashes stay readable; any other key is ``=k`` and its base32, or ``=h`` and a
    SHA-256 of it when that would be too long. Base32 is case-free, so keys differing only
    in case cannot meet on a case-insensitive file system.
    """
    if _READABLE.fullmatch(key):
        return key
    raw = key.encode("utf-8", "surrogatepass")
    encoded = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(encoded) <= _MAX_ENCODED:
        return f"{_ENCODED_PREFIX}k{encoded}"
    return f"{_ENCODED_PREFIX}h{hashlib.sha256(raw).hexdigest()}"


def key_of(name: str) -> str | None:
    """Return the key a file name stands for, or None when it cannot be told (hashed, temporary)."""
    if _READABLE.fullmatch(name):
        return name
    if name.startswith(f"{_ENCODED_PREFIX}k"):
        encoded = name[2:].upper()
        padded = encoded + "=" * (-len(encoded) % 8)
        try:
            return base64.b32decode(padded).decode("utf-8", "surrogatepass")
        except ValueError:
            return None
    return None


def default_local_root() -> Path:
    """``REMOTE_CACHE_LOCAL_DIR``, else ``$XDG_CACHE_HOME/remote_cache``, else ``~/.cache/...``."""
    configured = os.environ.get("REMOTE_CACHE_LOCAL_DIR", "").strip()
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "remote_cache"


def _writer_is_gone(name: str) -> bool:
    """Whether the temporary file ``name`` was written by a process of this host that ended."""
    match = _TEMP_NAME.fullmatch(name)
    if match is None or match["host"] != _HOST or os.name != "posix":
        return False  # another host's process ids mean nothing here
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: it exists, as another user
        return False
    return False


def sweep_temporary_files(folder: str | os.PathLike[str], *, now: float | None = None) -> int:
    """Delete the stale temporary files a killed writer left in ``folder``; return how many.

    A temporary file is stale when its writer was a process of this host that no longer
    exists, or when it was not modified for ``STALE_SECONDS`` (an hour). A live writer's
    file is neither, so sweeping never races a write in progress. I/O errors are ignored.
    """
    now = _clock.wall() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(_TEMP_PREFIX):
            continue
        try:
            stale = _writer_is_gone(entry.name) or (
                now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS
            )
            if stale:
                os.unlink(entry.path)
                removed += 1
        except OSError:  # gone already (renamed by its writer, or swept by another process)
            continue
    return removed


def _check_mode(mode: object, name: str) -> int:
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"Expected int but got {name}={mode!r} (type={type(mode).__name__})")
    if not 0 <= mode <= 0o777:
        raise ConfigurationError(
            f"{name}={mode!r} is not valid: expected permission bits from 0o000 to 0o777",
            name=name,
            value=mode,
        )
    return mode


def _mode_from_environment() -> int | None:
    value = os.environ.get(_MODE_VARIABLE, "").strip()
    if not value:
        return None
    digits = value[2:] if value[:2].lower() == "0o" else value
    if not (digits.isascii() and digits.isdigit() and set(digits) <= set("01234567")):
        raise ConfigurationError(
            f"{_MODE_VARIABLE}={value!r} is not valid: expected octal permission bits "
            "such as 664 or 0o664",
            name=_MODE_VARIABLE,
            value=value,
        )
    return _check_mode(int(digits, 8), _MODE_VARIABLE)


_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


class LocalCacheBackend(RemoteCacheBackend[bytes]):
    """Bytes in files under ``root``: one file per key, named by ``safe_name``.

    A write goes to a temporary file in the same folder (``.tmp-<host>-<pid>-<random>``)
    that is then renamed over the entry, so a reader sees the old bytes or the new ones,
    never a part. The folder is created on the first write. Temporary files left by killed
    writers are deleted by a later put (see ``sweep_temporary_files``). An I/O failure
    (permissions, a full disk) is raised as ``BackendCommandError``.

    ``mode`` is the entries' permission bits. By default (None) it is
    ``REMOTE_CACHE_LOCAL_MODE`` (octal, such as ``664``) when set, else whatever the umask
    gives a new file (``0o666 & ~umask``, as ``open`` does). An explicit mode is applied as
    given, whatever the umask, and a folder the backend creates gets the same bits plus
    search (``x``) where there is read. ``ConfigurationError`` for a bad value.
    """

    shared_between_processes = True
    """Every process that opens the same folder sees the same entries."""

    def __init__(self, root: str | os.PathLike[str], *, mode: int | None = None) -> None:
        super().__init__()
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"Expected a path but got root={root!r} (type={type(root).__name__})")
        self.root = Path(root)
        self.mode = _mode_from_environment() if mode is None else _check_mode(mode, "mode")
        """The entries' permission bits, or None to follow the umask."""

    def __repr__(self) -> str:
        mode = "" if self.mode is None else f", mode={self.mode:#o}"
        return f"{type(self).__name__}({str(self.root)!r}{mode})"

    def path_of(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.root / safe_name(key)

    def _error(self, operation: str, key: str, exc: OSError) -> BackendCommandError:
        return BackendCommandError(
            f"{self.root}: {type(exc).__name__}: {exc.strerror or exc}",
            backend=str(self.root),
            operation=operation,
            key=key,
        )

    def _get(self, key: str) -> bytes | None:
        try:
            with open(self.path_of(key), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("get", key, exc) from exc

    def _put(self, key: str, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"Expected bytes but got data of type {type(data).__name__} (key={key!r})"
            )
        path = self.path_of(key)
        self._sweep_now_and_then()
        temporary: str | None = None
        try:
            self._make_folder()
            name = str(self.root / f"{_TEMP_PREFIX}{_HOST}-{os.getpid()}-{secrets.token_hex(6)}")
            descriptor = os.open(name, _CREATE_FLAGS, 0o666 if self.mode is None else self.mode)
            temporary = name
            with open(descriptor, "wb") as file:
                if self.mode is not None:  # the umask took bits away from the mode asked for
                    os.chmod(temporary, self.mode)
                file.write(data)
            os.replace(temporary, path)
            temporary = None
        except OSError as exc:
            raise self._error("put", key, exc) from exc
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):  # already gone
                    os.unlink(temporary)

    def _make_folder(self) -> None:
        try:
            self.root.mkdir(parents=True)
        except FileExistsError:
            if not self.root.is_dir():
                raise
            return
        if self.mode is not None:
            os.chmod(self.root, self.mode | (self.mode & 0o444) >> 2)

    def _sweep_now_and_then(self) -> None:
        """Sweep this folder on this process's first put there, then every ``SWEEP_SECONDS``."""
        now = _clock.monotonic()
        last = _last_sweep.get(self.root)
        if last is not None and now - last < SWEEP_SECONDS:
            return
        _last_sweep[self.root] = now
        sweep_temporary_files(self.root)

    def keys(self) -> Iterator[str]:
        """The stored keys whose names can be read back (hashed long keys cannot)."""
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return
        for name in names:
            key = key_of(name)
            if key is not None:
                yield key
