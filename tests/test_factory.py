"""create_cache: upstream's call forms, class lookup, and never raising."""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path

import pytest

import remote_cache
from remote_cache import LocalCache, RemoteCache, RemoteFxGraphCache, create_cache
from remote_cache import _factory as factory_module
from remote_cache._factory import resolve_cache_class


class Custom(LocalCache):
    """A cache class found by 'module:Class'."""


class TestLookup:
    """Names, module paths and entry points."""

    def test_name_in_package(self) -> None:
        assert resolve_cache_class("RemoteFxGraphCache") is RemoteFxGraphCache

    def test_module_path(self) -> None:
        assert resolve_cache_class("tests.test_factory:Custom") is Custom

    def test_entry_point(self, monkeypatch: pytest.MonkeyPatch) -> None:
        points = EntryPoints(
            [
                EntryPoint(
                    name="mine",
                    value="tests.test_factory:Custom",
                    group=factory_module.ENTRY_POINT_GROUP,
                )
            ]
        )
        monkeypatch.setattr(
            factory_module,
            "entry_points",
            lambda group, name: points.select(group=group, name=name),
        )
        assert resolve_cache_class("mine") is Custom

    @pytest.mark.parametrize(
        ("name", "error"),
        [
            ("NoSuchCache", LookupError),
            ("cache_stats", LookupError),  # exported by remote_cache, but not a cache class
            ("tests.test_factory:TestLookup", TypeError),
            ("", TypeError),
            ("no_such_module_xyz:C", ImportError),
        ],
    )
    def test_bad_names(self, name: str, error: type[Exception]) -> None:
        with pytest.raises(error):
            resolve_cache_class(name)

    def test_every_exported_cache_class_by_its_name(self) -> None:
        exported = {
            name: value
            for name in remote_cache.__all__
            if isinstance(value := getattr(remote_cache, name), type)
            and issubclass(value, RemoteCache)
        }
        assert exported
        for name, cls in exported.items():
            assert resolve_cache_class(name) is cls


class TestCreateCache:
    """Upstream's call forms work; failures are one warning and None."""

    def test_positional_upstream_form(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_LOCAL_DIR", str(tmp_path))
        cache = create_cache("id", False, "FbCache", "LocalCache")
        assert isinstance(cache, LocalCache)
        assert (
            create_cache(
                "id", is_fbcode=True, fb_cache_cls="LocalAutotuneCache", oss_cache_cls="X"
            ).__class__.__name__
            == "LocalAutotuneCache"
        )

    def test_builds_redis_cache_without_connecting(self) -> None:
        cache = create_cache("fx-graph-v1", False, "", "RemoteFxGraphCache")
        assert isinstance(cache, RemoteFxGraphCache)

    def test_unknown_class_warns_once(self, caplog_rc: pytest.LogCaptureFixture) -> None:
        assert create_cache("id", False, "A", "NoSuchCache") is None
        warnings = [r for r in caplog_rc.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "NoSuchCache" in warnings[0].getMessage()
        assert warnings[0].exc_info is None

    def test_no_class_named(self, caplog_rc: pytest.LogCaptureFixture) -> None:
        assert create_cache("id") is None
        assert "no cache class named" in caplog_rc.text

    def test_local_fallback(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_LOCAL_DIR", str(tmp_path))
        monkeypatch.setenv("REMOTE_CACHE_REDIS_PORT", "bad")
        cache = create_cache("id", False, None, "RemoteFxGraphCache", local_cache_cls="LocalCache")
        assert isinstance(cache, LocalCache)
        warnings = [r for r in caplog_rc.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "using LocalCache" in warnings[0].getMessage()
        assert isinstance(create_cache("id", local_cache_cls="LocalCache"), LocalCache)

    def test_local_fallback_failing_too(self, caplog_rc: pytest.LogCaptureFixture) -> None:
        assert create_cache("id", False, None, "Nope", local_cache_cls="AlsoNope") is None
        warnings = [r for r in caplog_rc.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "AlsoNope" in warnings[0].getMessage()


class TestWithoutRedis:
    """Nothing but the standard library is needed to import the package."""

    def test_import_and_create_cache_without_redis(self) -> None:
        script = (
            "import sys, logging\n"
            "sys.modules['redis'] = None  # any 'import redis' now raises ImportError\n"
            "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')\n"
            "import remote_cache\n"
            "from remote_cache import RemoteFxGraphCache, create_cache, MissingDependencyError\n"
            "assert create_cache('fx', False, None, 'RemoteFxGraphCache') is None\n"
            "try:\n"
            "    RemoteFxGraphCache('fx')\n"
            "except MissingDependencyError as e:\n"
            "    print('missing:', e)\n"
            "heavy = ('redis', 'fakeredis', 'pytest', 'hypothesis')\n"
            "loaded = [m for m, mod in sys.modules.items() if mod and m.split('.')[0] in heavy]\n"
            "print('ok', sorted(loaded))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "ok []" in result.stdout
        assert "remote-cache[redis]" in result.stdout
        warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == 1
        assert "redis-py" in warnings[0]
