"""The local backend: one file per entry under a root folder, written atomically."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from remote_cache._backend import RemoteCacheBackend
from remote_cache.exceptions import BackendCommandError

__all__ = ["LocalCacheBackend", "default_local_root", "safe_name"]

_READABLE = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,199}")
_ENCODED_PREFIX = "="  # never in a readable name, so the two forms cannot collide
_MAX_ENCODED = 200
_TEMP_PREFIX = ".tmp-"


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


class LocalCacheBackend(RemoteCacheBackend[bytes]):
    """Bytes in files under ``root``: one file per key, named by ``safe_name``.

    A write goes to a temporary file in the same folder that is then renamed over the
    entry, so a reader sees the old bytes or the new ones, never a part. The folder is
    created on the first write. An I/O failure (permissions, a full disk) is raised as
    ``BackendCommandError``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"Expected a path but got root={root!r} (type={type(root).__name__})")
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

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
        temporary: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.root)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
            temporary = None
        except OSError as exc:
            raise self._error("put", key, exc) from exc
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):  # already gone
                    os.unlink(temporary)

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
