"""remote_cache.torch without compiling: install/uninstall, fail-open, counters, overrides."""

from __future__ import annotations

import gc
import inspect
import itertools
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
import torch._inductor.remote_cache as trc
from torch._functorch._aot_autograd.autograd_cache import AOTAutogradCache

import remote_cache.torch as rct
from remote_cache import (
    CacheStats,
    ConfigurationError,
    LocalCacheBackend,
    RemoteFxGraphCache,
    cache_stats,
)
from remote_cache.exceptions import BackendUnavailableError
from remote_cache.testing import (
    FailingBackend,
    InMemoryBackend,
    override_backends,
)
from remote_cache.testing._fixtures import FakeRedisFixture, MemoryFixture
from remote_cache.testing._torch import TorchFixture

pytestmark = pytest.mark.torch

ALL_TORCH = [*rct.torch_cache_classes(), trc.RemoteCache, trc.LocalCache, trc.LocalAutotuneCache]


def overrides() -> dict[str, object]:
    """Each torch cache class's own ``backend_override_cls`` (absent: a marker)."""
    return {cls.__name__: vars(cls).get("backend_override_cls", "<absent>") for cls in ALL_TORCH}


class TestInstall:
    """install() covers torch's Redis-backed classes only and uninstall() restores exactly."""

    def test_install_sets_redis_classes_and_uninstall_restores(self) -> None:
        before = overrides()
        assert before["RemoteCache"] is None  # torch's base defines the attribute itself
        bridge = rct.install(InMemoryBackend)
        during = overrides()
        for name in rct.TORCH_CACHE_CLASSES:
            assert during[name] is not before[name]
            assert callable(getattr(trc, name).backend_override_cls)
        for name in ("RemoteCache", "LocalCache", "LocalAutotuneCache"):
            assert during[name] is before[name]  # local caches use file paths as keys
        bridge.uninstall()
        assert overrides() == before
        bridge.uninstall()  # idempotent
        assert overrides() == before

    def test_restores_an_override_that_was_there(self) -> None:
        def mine() -> InMemoryBackend:
            return InMemoryBackend()

        trc.RemoteFxGraphCache.backend_override_cls = mine
        try:
            with rct.install(InMemoryBackend):
                assert trc.RemoteFxGraphCache.backend_override_cls is not mine
            assert vars(trc.RemoteFxGraphCache)["backend_override_cls"] is mine
        finally:
            del trc.RemoteFxGraphCache.backend_override_cls
        assert "backend_override_cls" not in vars(trc.RemoteFxGraphCache)

    def test_context_manager_and_garbage_collection(self) -> None:
        before = overrides()
        rct.install(InMemoryBackend)  # the object is dropped at once
        gc.collect()
        assert overrides() != before  # still installed: no silent undo
        bridge = rct._installed[-1]
        assert bridge.installed
        assert "installed" in repr(bridge)
        bridge.uninstall()
        assert overrides() == before
        with rct.install(InMemoryBackend) as inner:
            assert inner.installed
        assert not inner.installed
        assert overrides() == before

    def test_nested_bridges_uninstall_in_any_order(self) -> None:
        before = overrides()
        outer = rct.install(InMemoryBackend)
        inner = rct.install(InMemoryBackend)
        outer.uninstall()
        assert overrides() != before  # the inner one is still in force
        assert rct._installed == [inner]
        inner.uninstall()
        assert overrides() == before
        assert rct._installed == []

    def test_install_and_uninstall_drop_the_memoized_aot_cache(self) -> None:
        with override_backends(InMemoryBackend, [trc.RemoteAOTAutogradCache]):
            first = AOTAutogradCache.get_remote_cache()
            assert AOTAutogradCache.get_remote_cache() is first  # memoized by torch
            with rct.install(InMemoryBackend):
                during = AOTAutogradCache.get_remote_cache()
                assert during is not first
                assert isinstance(during.backend, rct.FailOpenTorchBackend)
            assert AOTAutogradCache.get_remote_cache() is not during
        AOTAutogradCache.get_remote_cache.cache_clear()

    def test_bad_settings_and_bad_factory_fail_at_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        before = overrides()
        monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", "soon")
        with pytest.raises(ConfigurationError, match="REMOTE_CACHE_REDIS_TIMEOUT"):
            rct.install()
        with pytest.raises(TypeError, match="callable"):
            rct.install(backend_factory=42)  # type: ignore[arg-type]
        assert overrides() == before

    def test_default_backend_is_ours_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TORCHINDUCTOR_REDIS_URL", "redis://127.0.0.1:1/0")
        with rct.install():
            cache = trc.RemoteFxGraphCache("fx-graph-v1")
        assert isinstance(cache.backend, rct.FailOpenTorchBackend)
        inner = cache.backend.backend
        assert type(inner).__name__ == "RedisRemoteCacheBackend"
        assert "127.0.0.1:1" in repr(inner)
        assert inner.settings.timeout == 1.0

    def test_unsupported_versions_are_a_clear_error(self) -> None:
        for version in ("2.12.1", "2.14.0", "3.0.0", "nightly"):
            with pytest.raises(rct.UnsupportedTorchError, match=r"torch>=2\.13,<2\.14"):
                rct._check_version(version)
        rct._check_version("2.13.0+cpu")
        assert issubclass(rct.UnsupportedTorchError, ImportError)


class TestUndoneOutOfOrder:
    """Bridges and override_backends blocks undone in any order restore torch exactly."""

    @pytest.mark.parametrize("own", [False, True], ids=["no-own-value", "own-value"])
    def test_every_interleaving(self, own: bool) -> None:
        def mine() -> InMemoryBackend:
            return InMemoryBackend()

        if own:
            trc.RemoteFxGraphCache.backend_override_cls = mine
        try:
            before = overrides()
            starts = ("bridge", "override", "bridge2")
            for order in itertools.permutations(starts):
                for ends in itertools.permutations(starts):
                    entered: dict[str, Any] = {}
                    for step in order:
                        if step == "override":
                            block = override_backends(
                                InMemoryBackend, [trc.RemoteFxGraphCache, trc.RemoteCache]
                            )
                            block.__enter__()
                            entered[step] = block
                        else:
                            entered[step] = rct.install(InMemoryBackend)
                        assert overrides() != before
                    for step in ends:
                        if step == "override":
                            entered[step].__exit__(None, None, None)
                        else:
                            entered[step].uninstall()
                    assert overrides() == before, (order, ends)
                    assert rct._installed == []
            if own:
                assert vars(trc.RemoteFxGraphCache)["backend_override_cls"] is mine
        finally:
            if own:
                del trc.RemoteFxGraphCache.backend_override_cls
        assert "backend_override_cls" not in vars(trc.RemoteFxGraphCache)

    def test_the_attack_sequence(self) -> None:
        before = overrides()
        bridge = rct.install(InMemoryBackend)
        block = override_backends(InMemoryBackend, [trc.RemoteFxGraphCache])
        block.__enter__()
        bridge.uninstall()
        # the block is still in force: torch's class keeps its backend until it exits
        cache = trc.RemoteFxGraphCache("fx-graph-v1")
        assert isinstance(cache.backend.backend, InMemoryBackend)
        block.__exit__(None, None, None)
        bridge.uninstall()
        assert overrides() == before
        assert not isinstance(
            trc.RemoteFxGraphCache("fx-graph-v1").backend, rct.FailOpenTorchBackend
        )

    def test_fixtures_in_either_order(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(
            "[pytest]\n"
            "filterwarnings =\n"
            "    error\n"
            "    ignore:Failed to initialize NumPy:UserWarning\n"
            "    ignore::DeprecationWarning:torch.*\n"
        )
        pytester.makepyfile(
            test_order="""
            import torch._inductor.remote_cache as trc

            class Mem:
                def get(self, key):
                    return None

                def put(self, key, data):
                    pass

            def hooks():
                return {
                    name: vars(getattr(trc, name)).get("backend_override_cls")
                    for name in ("RemoteFxGraphCache", "RemoteAOTAutogradCache")
                }

            BEFORE = hooks()

            def test_override_first(remote_cache_override, remote_cache_torch):
                remote_cache_override(trc.RemoteFxGraphCache, Mem)

            def test_restored_after_override_first():
                assert hooks() == BEFORE == {
                    "RemoteFxGraphCache": None, "RemoteAOTAutogradCache": None
                }

            def test_torch_first(remote_cache_torch, remote_cache_override):
                remote_cache_override(trc.RemoteFxGraphCache, Mem)

            def test_restored_after_torch_first():
                assert hooks() == BEFORE
            """
        )
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180)
        result.assert_outcomes(passed=4)


class TestFailOpen:
    """Through the bridge a failing or corrupt backend is a miss or a dropped put, counted."""

    def test_failed_get_and_put_are_a_miss_and_a_drop(
        self, remote_cache_stats: CacheStats, caplog: pytest.LogCaptureFixture
    ) -> None:
        torch_before = trc.cache_stats._stats["RemoteFxGraphCache"].exception
        with rct.install(FailingBackend):
            cache = trc.RemoteFxGraphCache("fx-graph-v1")
            with caplog.at_level(logging.WARNING, logger="remote_cache"):
                assert cache.get("k") is None
                cache.put("k", {"data": "x"})
                cache.put("k", {"data": "x"})
        stat = remote_cache_stats["RemoteFxGraphCache"]
        assert (stat.miss, stat.put, stat.fail_open) == (1, 0, 3)
        assert trc.cache_stats._stats["RemoteFxGraphCache"].exception == torch_before + 3
        warnings = [r for r in caplog.records if "failing open" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not per call

    def test_any_exception_of_a_backend_fails_open(self, remote_cache_stats: CacheStats) -> None:
        class Broken:
            def get(self, key: str) -> Any:
                raise KeyError(key)

            def put(self, key: str, data: Any) -> None:
                raise RuntimeError("bug")

        backend = rct.FailOpenTorchBackend("RemoteAOTAutogradCache", Broken())
        assert backend.get("k") is None
        backend.put("k", b"{}")
        assert remote_cache_stats["RemoteAOTAutogradCache"].fail_open == 2
        assert "Broken" in repr(backend)

    def test_corrupt_entries_are_misses(
        self, remote_cache_stats: CacheStats, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = InMemoryBackend()
        with rct.install(lambda: store):
            cache = trc.RemoteFxGraphCache("fx-graph-v1")
            store.put("pt2:fx-graph-v1::bad:c1", b"{not json")
            store.put("pt2:fx-graph-v1::latin:c1", b"\xff\xfe")
            store.put("pt2:fx-graph-v1::good:c1", b'{"data": "x"}')
            with caplog.at_level(logging.WARNING, logger="remote_cache"):
                assert cache.get("bad") is None
                assert cache.get("latin") is None
            assert cache.get("good") == {"data": "x"}
        stat = remote_cache_stats["RemoteFxGraphCache"]
        assert (stat.hit, stat.miss, stat.corrupt) == (1, 2, 2)
        assert sum("corrupt entry" in r.getMessage() for r in caplog.records) == 2
        assert all(r.exc_info is None for r in caplog.records)

    def test_recovery_is_logged_and_counts_resume(
        self, remote_cache_stats: CacheStats, caplog: pytest.LogCaptureFixture
    ) -> None:
        memory = MemoryFixture()
        failing = [True]

        class Switch:
            def get(self, key: str) -> Any:
                if failing[0]:
                    raise BackendUnavailableError("down", backend="switch", operation="get")
                return memory.backend.get(key)

            def put(self, key: str, data: Any) -> None:
                memory.backend.put(key, data)

        with rct.install(Switch), caplog.at_level(logging.INFO, logger="remote_cache"):
            cache = trc.RemoteFxGraphCache("fx-graph-v1")
            assert cache.get("k") is None
            failing[0] = False
            cache.put("k", {"data": 1})
            assert cache.get("k") == {"data": 1}
        assert any("works again" in r.getMessage() for r in caplog.records)
        assert remote_cache_stats["RemoteFxGraphCache"].hit == 1

    def test_failing_puts_with_working_gets_log_once(
        self, remote_cache_stats: CacheStats, caplog: pytest.LogCaptureFixture
    ) -> None:
        from remote_cache.testing import FaultInjectingBackend

        injector = FaultInjectingBackend(InMemoryBackend())
        injector.fail_always(operations=["put"], error=RuntimeError("OOM command not allowed"))
        backend = rct.FailOpenTorchBackend("RemoteFxGraphCache", injector)
        with caplog.at_level(logging.DEBUG, logger="remote_cache"):
            for i in range(5):  # five compiles: a lookup (a miss), then a dropped put
                assert backend.get(f"pt2:fx-graph-v1::k{i}:c1") is None
                backend.put(f"pt2:fx-graph-v1::k{i}:c1", b"{}")
            messages = [r.getMessage() for r in caplog.records]
            assert len(messages) == 1, messages
            assert "failed on put" in messages[0]
            injector.clear()
            backend.put("pt2:fx-graph-v1::k0:c1", b"{}")
        assert [r.getMessage() for r in caplog.records][1:] == [
            "RemoteFxGraphCache: backend works again"
        ]
        stat = remote_cache_stats["RemoteFxGraphCache"]
        assert (stat.miss, stat.put, stat.fail_open) == (5, 1, 5)

    @pytest.mark.parametrize(
        "value", [5, {"data": "x"}, [1], 1.5, object()], ids=lambda v: type(v).__name__
    )
    def test_a_get_that_is_not_bytes_is_corrupt(
        self, value: Any, remote_cache_stats: CacheStats, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Junk:
            def get(self, key: str) -> Any:
                return value

            def put(self, key: str, data: Any) -> None:
                pass

        with rct.install(Junk), caplog.at_level(logging.WARNING, logger="remote_cache"):
            for cls in (trc.RemoteFxGraphCache, trc.RemoteAutotuneCache):
                assert cls("v1").get("k") is None  # torch's json.loads would raise
        for name in ("RemoteFxGraphCache", "RemoteAutotuneCache"):
            stat = remote_cache_stats[name]
            assert (stat.hit, stat.miss, stat.corrupt) == (0, 1, 1)
        assert sum("corrupt entry" in r.getMessage() for r in caplog.records) == 2
        assert type(value).__name__ in caplog.records[0].getMessage()

    def test_bytes_like_gets_are_given_as_bytes(self, remote_cache_stats: CacheStats) -> None:
        values = iter(
            [memoryview(b'{"data": 1}'), bytearray(b'{"data": 2}'), memoryview(b"not json")]
        )

        class Views:
            def get(self, key: str) -> Any:
                return next(values)

            def put(self, key: str, data: Any) -> None:
                pass

        backend = rct.FailOpenTorchBackend("RemoteFxGraphCache", Views())
        first, second = backend.get("a"), backend.get("b")
        assert (first, second) == (b'{"data": 1}', b'{"data": 2}')
        assert type(first) is bytes
        assert type(second) is bytes
        assert backend.get("c") is None
        stat = remote_cache_stats["RemoteFxGraphCache"]
        assert (stat.hit, stat.miss, stat.corrupt) == (2, 1, 1)

    def test_a_factory_that_raises_fails_open_counted(
        self, remote_cache_stats: CacheStats, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls = []

        def factory() -> Any:
            calls.append(1)
            raise RuntimeError("factory boom")

        with rct.install(factory), caplog.at_level(logging.WARNING, logger="remote_cache"):
            cache = trc.create_cache("fx-graph-v1", False, "x", "RemoteFxGraphCache")
            assert cache is not None  # torch would have dropped the remote cache, uncounted
            assert cache.get("k") is None
            cache.put("k", {"data": "x"})
            assert trc.RemoteFxGraphCache("fx-graph-v1").get("k") is None
        assert len(calls) == 2  # each cache torch builds tries the factory again
        stat = remote_cache_stats["RemoteFxGraphCache"]
        assert (stat.miss, stat.fail_open) == (2, 3)
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1
        assert "factory boom" in warnings[0]


class TestHarness:
    """Our overrides and backend fixtures reach torch's caches."""

    def test_override_backends_accepts_torch_classes(self, remote_cache_stats: CacheStats) -> None:
        before = overrides()
        store = InMemoryBackend()
        with override_backends(lambda: store, [trc.RemoteFxGraphCache, RemoteFxGraphCache]):
            torch_cache = trc.RemoteFxGraphCache("fx-graph-v1")
            assert isinstance(torch_cache.backend, rct.FailOpenTorchBackend)
            torch_cache.put("k", {"v": 1})
            assert RemoteFxGraphCache("fx-graph-v1").get("k") == {"v": 1}  # same bytes
        assert overrides() == before
        assert remote_cache_stats["RemoteFxGraphCache"].put == 1
        with (
            pytest.raises(TypeError, match="ours or torch's"),
            override_backends(InMemoryBackend, [int]),  # type: ignore[list-item]
        ):
            pass

    def test_our_overrides_win_over_the_bridge_factory(self) -> None:
        store = InMemoryBackend()
        with rct.install(lambda: LocalCacheBackend("/nonexistent/never-used")):
            with override_backends(lambda: store):
                cache = trc.RemoteDynamoPGOCache("dynamo-pgo")
                cache.put("job:0:tag", {"data": "x"})
            assert store.entries == {"pt2:dynamo-pgo::job:0:tag:c1": b'{"data": "x"}'}

    def test_local_backend_through_the_factory(self, tmp_path: Any) -> None:
        with rct.install(lambda: LocalCacheBackend(tmp_path)):
            trc.RemoteAOTAutogradCache("autograd-experimental").put("h", {"data": "x"})
            assert trc.RemoteAOTAutogradCache("autograd-experimental").get("h") == {"data": "x"}
        assert len(list(tmp_path.iterdir())) == 1

    def test_memory_fixture_reaches_torch_caches(self, remote_cache_memory: MemoryFixture) -> None:
        with rct.install():
            trc.RemoteFxGraphCache("fx-graph-v1").put("k", {"v": 2})
        assert remote_cache_memory.entries == {"pt2:fx-graph-v1::k:c1": b'{"v": 2}'}
        assert cache_stats["backend:InMemoryBackend"].put == 1


class TestRunner:
    """``python -m remote_cache.torch`` runs a program unchanged with the bridge installed."""

    def test_script_and_module_run_with_the_bridge(
        self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        before = overrides()
        script = tmp_path / "prog.py"
        script.write_text(
            "import sys\n"
            "import remote_cache.torch as rct\n"
            "RESULT = (sys.argv[:], len(rct._installed))\n"
            "sys.modules['remote_cache.torch']._seen = RESULT\n"
        )
        saved_argv = sys.argv[:]
        rct.main([str(script), "--flag", "x"])
        assert rct._seen == ([str(script), "--flag", "x"], 1)  # type: ignore[attr-defined]
        assert sys.argv == saved_argv
        assert overrides() == before  # uninstalled when the program returned
        monkeypatch.syspath_prepend(str(tmp_path))
        rct.main(["-m", "prog", "y"])
        assert rct._seen[1] == 1  # type: ignore[attr-defined]
        assert rct._seen[0][1:] == ["y"]  # type: ignore[attr-defined]
        del rct._seen  # type: ignore[attr-defined]
        sys.modules.pop("prog", None)

    def test_a_script_sees_what_plain_python_shows_it(self, tmp_path: Any) -> None:
        folder = tmp_path / "sub"
        folder.mkdir()
        (folder / "helper.py").write_text("VALUE = 'sibling imported'\n")
        (folder / "prog.py").write_text(
            "import sys\n"
            "import helper  # a sibling module\n"
            "print(repr((sys.argv, sys.path[0], __file__, __name__, helper.VALUE)))\n"
            f"print({str(tmp_path)!r} in sys.path or '' in sys.path)\n"
            "sys.exit(7)\n"
        )
        env = {**os.environ, "REMOTE_CACHE_REDIS_URL": "redis://127.0.0.1:1/0"}
        runs = [
            subprocess.run(
                [sys.executable, *runner, "sub/prog.py", "a", "b"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            for runner in ([], ["-m", "remote_cache.torch"])
        ]
        plain, bridged = runs
        assert plain.returncode == bridged.returncode == 7, bridged.stderr
        assert plain.stdout == bridged.stdout
        assert "sibling imported" in plain.stdout
        assert repr(str(folder)) in plain.stdout  # sys.path[0] and __file__ absolute
        assert "False" in plain.stdout  # the working folder is not on sys.path

    def test_usage(self) -> None:
        for argv in ([], ["-h"], ["-m"]):
            with pytest.raises(SystemExit, match=r"usage: python -m remote_cache\.torch"):
                rct.main(argv)


class TestSurface:
    """Only remote_cache.torch imports torch; its public names are documented."""

    def test_nothing_else_imports_torch(self) -> None:
        code = (
            "import sys, remote_cache, remote_cache.testing, remote_cache.testing.pytest_plugin\n"
            "import remote_cache.testing._torch, remote_cache.testing._override\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr

    def test_needs_only_what_the_torch_extra_installs(self) -> None:
        """remote_cache.torch imports neither the test harness nor its dependencies."""
        code = (
            "import sys\n"
            "for name in ('hypothesis', 'fakeredis', 'pytest'): sys.modules[name] = None\n"
            "import remote_cache.torch\n"
            "loaded = [m for m in sys.modules if m.startswith('remote_cache.testing')]\n"
            "assert not loaded, loaded\n"
        )
        done = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", code],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def test_all_resolvable_and_documented(self) -> None:
        assert len(set(rct.__all__)) == len(rct.__all__)  # ruff (RUF022) keeps it sorted
        for name in rct.__all__:
            item = getattr(rct, name)
            if inspect.isclass(item) or inspect.isfunction(item):
                assert (item.__doc__ or "").strip(), name


class TestFixtures:
    """The plugin's backend fixtures reach torch's caches under ``remote_cache_torch``."""

    def test_fakeredis(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_fakeredis: FakeRedisFixture,
        remote_cache_stats: CacheStats,
    ) -> None:
        trc.RemoteFxGraphCache("fx-graph-v1").put("k", {"v": 1})
        assert remote_cache_fakeredis.entries == {b"pt2:fx-graph-v1::k:c1": b'{"v": 1}'}
        remote_cache_fakeredis.disconnect()
        assert trc.RemoteFxGraphCache("fx-graph-v1").get("k") is None
        remote_cache_fakeredis.reconnect()
        assert remote_cache_stats["RemoteFxGraphCache"].fail_open == 1

    def test_override_a_torch_class(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_override: Any,
        remote_cache_stats: CacheStats,
    ) -> None:
        remote_cache_override(trc.RemoteAOTAutogradCache, FailingBackend)
        cache = trc.RemoteAOTAutogradCache("autograd-experimental")
        cache.put("h", {"data": "x"})  # dropped, not raised: torch would fail the compile
        assert remote_cache_stats["RemoteAOTAutogradCache"].fail_open == 1

    def test_reset_and_settings(self, remote_cache_torch: TorchFixture) -> None:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        assert inductor_config.fx_graph_remote_cache is True
        assert inductor_config.fx_graph_cache is False
        assert functorch_config.enable_remote_autograd_cache is True
        assert functorch_config.enable_autograd_cache is False
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(remote_cache_torch.cache_dir)
        assert remote_cache_torch.bridge.installed
        first = AOTAutogradCache.get_remote_cache()
        assert AOTAutogradCache.get_remote_cache() is first
        remote_cache_torch.reset()
        assert AOTAutogradCache.get_remote_cache() is not first

    def test_everything_is_restored_after(
        self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        from remote_cache.testing._torch import torch_caches

        monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        settings = (
            inductor_config.fx_graph_remote_cache,
            inductor_config.fx_graph_cache,
            functorch_config.enable_remote_autograd_cache,
            functorch_config.enable_autograd_cache,
        )
        before = overrides()
        with torch_caches(tmp_path) as handle:
            assert handle.bridge.installed
        assert not handle.bridge.installed
        assert overrides() == before
        assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
        assert settings == (
            inductor_config.fx_graph_remote_cache,
            inductor_config.fx_graph_cache,
            functorch_config.enable_remote_autograd_cache,
            functorch_config.enable_autograd_cache,
        )


class TestTorchFixtureAlone:
    """With no backend fixture, torch's caches never reach a server the environment names."""

    def test_a_fresh_memory_store_not_the_environments_server(
        self,
        remote_cache_torch: object,
        remote_cache_stats: CacheStats,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("TORCHINDUCTOR_REDIS_HOST", "127.0.0.1")
        monkeypatch.setenv("TORCHINDUCTOR_REDIS_PORT", "1")  # refused, were it reached
        cache = trc.RemoteFxGraphCache("fx-graph-v1")
        cache.put("k", {"data": "x"})
        assert cache.get("k") == {"data": "x"}
        stat = remote_cache_stats["RemoteFxGraphCache"]
        assert (stat.hit, stat.put, stat.fail_open) == (1, 1, 0)
