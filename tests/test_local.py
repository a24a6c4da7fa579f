"""The local cache: files under a root, atomic writes, keys that cannot escape."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_cache import (
    BackendCommandError,
    ConfigurationError,
    LocalAutotuneCache,
    LocalCache,
    LocalCacheBackend,
    cache_stats,
)
from remote_cache._local import default_local_root, key_of, safe_name

ESCAPING_KEYS = [
    "..",
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "a\x00b",
    "\\x\\..",
    ".hidden",
    "C:\\x",
]


class TestNames:
    """Every key maps to one file name inside the folder, and back where it can."""

    @pytest.mark.parametrize("key", ESCAPING_KEYS)
    def test_escaping_keys_stay_inside(self, key: str) -> None:
        name = safe_name(key)
        assert "/" not in name
        assert "\\" not in name
        assert "\x00" not in name
        assert name not in (".", "..")
        assert key_of(name) == key

    def test_hash_keys_are_readable(self) -> None:
        assert safe_name("abc123" * 8) == "abc123" * 8

    def test_case_differences_stay_apart(self) -> None:
        assert safe_name("ABC").lower() != safe_name("abc").lower()

    def test_long_keys_are_hashed(self) -> None:
        name = safe_name("K" * 1000)
        assert len(name) < 100
        assert key_of(name) is None
        assert safe_name("K" * 1000) != safe_name("K" * 1001)

    def test_surrogates_and_unicode(self) -> None:
        for key in ["\ud800", "ключ", "🚀 key\nwith newline"]:
            assert key_of(safe_name(key)) == key

    def test_unreadable_names(self) -> None:
        assert key_of(".tmp-123") is None
        assert key_of("=k!!") is None


class TestLocalCache:
    """Round trips, corrupt entries, the root, and I/O failures."""

    def test_round_trip(self, tmp_path: Path) -> None:
        cache = LocalCache("fx-graph-v1", root=tmp_path)
        cache.put("k", {"a": [1, 2.5, "é"]})
        assert LocalCache("fx-graph-v1", root=tmp_path).get("k") == {"a": [1, 2.5, "é"]}
        assert (tmp_path / "fx-graph-v1" / "k").read_bytes() == b'{"a": [1, 2.5, "\\u00e9"]}'
        assert cache.get("absent") is None
        cache.put_many({"x": 1, "y": 0})
        assert cache.get_many(["x", "y", "z"]) == {"x": 1, "y": 0}

    @pytest.mark.parametrize("key", ESCAPING_KEYS)
    def test_escaping_keys_write_inside_root(self, tmp_path: Path, key: str) -> None:
        root = tmp_path / "root"
        cache = LocalCache("id", root=root)
        cache.put(key, [key])
        assert cache.get(key) == [key]
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(written) == 1
        assert written[0].parent == root / "id"

    @pytest.mark.parametrize("cache_id", ["../escape", "/abs", "a/b", ".."])
    def test_cache_id_cannot_escape(self, tmp_path: Path, cache_id: str) -> None:
        cache = LocalCache(cache_id, root=tmp_path / "root")
        cache.put("k", 1)
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(files) == 1
        assert files[0].parent.parent == tmp_path / "root"

    def test_corrupt_file_is_a_miss(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="remote_cache")
        cache = LocalAutotuneCache("autotune", root=tmp_path)
        cache.put("k", 1)
        (tmp_path / "autotune" / "k").write_bytes(b"\x80garbage")
        assert cache.get("k") is None
        assert cache_stats["LocalAutotuneCache"].corrupt == 1
        assert len(caplog.records) == 1

    def test_overwrite_leaves_no_temporary_files(self, tmp_path: Path) -> None:
        cache = LocalCache("id", root=tmp_path)
        for i in range(5):
            cache.put("k", i)
        assert sorted(os.listdir(tmp_path / "id")) == ["k"]
        assert cache.get("k") == 4

    def test_default_root_from_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_LOCAL_DIR", str(tmp_path / "configured"))
        assert default_local_root() == tmp_path / "configured"
        LocalCache("id").put("k", 1)
        assert (tmp_path / "configured" / "id" / "k").exists()
        monkeypatch.setenv("REMOTE_CACHE_LOCAL_DIR", "")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_local_root() == tmp_path / "xdg" / "remote_cache"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert default_local_root() == tmp_path / "home" / ".cache" / "remote_cache"

    def test_io_failures_fail_open(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        cache = LocalCache("id", root=blocker)
        cache.put("k", 1)
        assert cache.get("k") is None
        stat = cache_stats["LocalCache"]
        assert (stat.fail_open, stat.put, stat.miss) == (2, 0, 1)
        assert cache_stats["backend:LocalCacheBackend"].exception == 2

    def test_backend_errors(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        backend = LocalCacheBackend(blocker)
        with pytest.raises(BackendCommandError) as info:
            backend.put("k", b"v")
        assert info.value.operation == "put"
        with pytest.raises(BackendCommandError):
            backend.get("k")
        with pytest.raises(TypeError, match="Expected bytes"):
            LocalCacheBackend(tmp_path).put("k", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Expected a path"):
            LocalCacheBackend(3)  # type: ignore[arg-type]

    def test_keys_listing(self, tmp_path: Path) -> None:
        backend = LocalCacheBackend(tmp_path / "x")
        assert list(backend.keys()) == []
        backend.put("b", b"1")
        backend.put("A/..", b"2")
        backend.put("L" * 500, b"3")
        assert sorted(backend.keys()) == ["A/..", "b"]
        assert "LocalCacheBackend(" in repr(backend)


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process's umask after a test that sets it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask")
class TestMode:
    """Entries follow the umask like any new file, or the mode asked for, so a team can share."""

    @pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
    def test_entries_follow_the_umask(self, tmp_path: Path, mask: int, expected: int) -> None:
        os.umask(mask)
        cache = LocalCache("id", root=tmp_path)
        cache.put("k", 1)
        assert mode_of(tmp_path / "id" / "k") == expected
        if not mask & stat.S_IRGRP:
            assert mode_of(tmp_path / "id" / "k") & stat.S_IRGRP  # the group can read it
        assert mode_of(tmp_path / "id") == 0o777 & ~mask

    def test_explicit_mode_whatever_the_umask(self, tmp_path: Path) -> None:
        os.umask(0o077)
        backend = LocalCacheBackend(tmp_path / "shared", mode=0o664)
        backend.put("k", b"v")
        backend.put("k", b"w")  # an overwrite too
        assert mode_of(tmp_path / "shared" / "k") == 0o664
        assert mode_of(tmp_path / "shared") == 0o775  # search where read
        assert backend.mode == 0o664
        assert repr(backend).endswith(", mode=0o664)")

    def test_local_cache_passes_its_mode_on(self, tmp_path: Path) -> None:
        os.umask(0o077)
        LocalCache("team", root=tmp_path, mode=0o664).put("k", 1)
        assert mode_of(tmp_path / "team" / "k") == 0o664

    def test_mode_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        os.umask(0o077)
        for value, expected in [("640", 0o640), ("0o664", 0o664), (" 0660 ", 0o660)]:
            monkeypatch.setenv("REMOTE_CACHE_LOCAL_MODE", value)
            cache = LocalCache(f"id{expected:o}", root=tmp_path)
            cache.put("k", 1)
            assert mode_of(tmp_path / f"id{expected:o}" / "k") == expected
        # An argument wins over the variable.
        LocalCacheBackend(tmp_path / "arg", mode=0o600).put("k", b"v")
        assert mode_of(tmp_path / "arg" / "k") == 0o600

    @pytest.mark.parametrize("value", ["9", "rw-r--r--", "0o1000", "-644", "0x1a4"])
    def test_bad_environment_value(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv("REMOTE_CACHE_LOCAL_MODE", value)
        with pytest.raises(ConfigurationError, match="REMOTE_CACHE_LOCAL_MODE") as info:
            LocalCache("id", root="unused")
        assert info.value.name == "REMOTE_CACHE_LOCAL_MODE"

    def test_bad_argument(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="mode=512"):
            LocalCacheBackend(tmp_path, mode=0o1000)
        with pytest.raises(TypeError, match="Expected int but got mode='644'"):
            LocalCacheBackend(tmp_path, mode="644")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Expected int"):
            LocalCacheBackend(tmp_path, mode=True)
