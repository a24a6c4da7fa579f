"""Real torch.compile through the bridge: hits, outages, black holes, wire compatibility."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import torch._inductor.remote_cache as trc

from bench import torch_outage
from remote_cache import CacheStats, RemoteFxGraphCache
from remote_cache.testing import OutageProxy, RedisServer
from remote_cache.testing._fixtures import MemoryFixture, OutageFixture
from remote_cache.testing._server_fixtures import RedisFixture
from remote_cache.testing._torch import TorchFixture
from tests.torch.conftest import compile_and_run, expected_grad, torch

# torch's compile path imports modules that warn about their own deprecations.
pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")]

FX_KEY = re.compile(r"pt2:fx-graph-v1::[0-9a-z]{52}:c1")


def check(grad: Any) -> None:
    """The compiled function's gradient is the eager one."""
    assert torch.allclose(grad, expected_grad())


class TestSecondCompileHits:
    """A second compile, as in a fresh process, is served by the remote caches."""

    def test_through_the_memory_fixture(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_memory: MemoryFixture,
        remote_cache_stats: CacheStats,
    ) -> None:
        grad, _ = compile_and_run()
        check(grad)
        fx, aot = (
            remote_cache_stats["RemoteFxGraphCache"],
            remote_cache_stats["RemoteAOTAutogradCache"],
        )
        assert (fx.hit, fx.miss, fx.put) == (0, 2, 2)  # forward and backward graphs
        assert (aot.hit, aot.miss, aot.put) == (0, 1, 1)
        assert sum(bool(FX_KEY.fullmatch(key)) for key in remote_cache_memory.entries) == 2
        remote_cache_torch.reset()
        grad, _ = compile_and_run()
        check(grad)
        fx, aot = (
            remote_cache_stats["RemoteFxGraphCache"],
            remote_cache_stats["RemoteAOTAutogradCache"],
        )
        assert (aot.hit, aot.miss, aot.put) == (1, 1, 1)
        assert (fx.hit, fx.put) == (2, 2)

    def test_through_a_real_redis_server_read_by_ours_and_by_plain_torch(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_redis: RedisFixture,
        remote_cache_stats: CacheStats,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        grad, _ = compile_and_run()
        check(grad)
        keys = sorted(k.decode() for k in remote_cache_redis.client.scan_iter("pt2:*"))
        fx_keys = [k for k in keys if FX_KEY.fullmatch(k)]
        assert len(fx_keys) == 2
        assert any(k.startswith("pt2:autograd-experimental::") for k in keys)
        remote_cache_torch.reset()
        grad, _ = compile_and_run()
        check(grad)
        assert remote_cache_stats["RemoteAOTAutogradCache"].hit == 1
        assert remote_cache_stats["backend:RedisRemoteCacheBackend"].hit >= 3
        # Our RemoteFxGraphCache reads what torch wrote through the bridge.
        for key in fx_keys:
            entry = RemoteFxGraphCache("fx-graph-v1").get(key[len("pt2:fx-graph-v1::") : -3])
            assert isinstance(entry, dict)
            assert set(entry) >= {"data", "time_taken_ms"}
        # Plain torch (no bridge, its own Redis backend) reads it too.
        remote_cache_torch.bridge.uninstall()
        monkeypatch.setenv("TORCHINDUCTOR_REDIS_URL", remote_cache_redis.url)
        remote_cache_torch.reset()
        before = trc.cache_stats._stats["RemoteAOTAutogradCache"].hit
        ours_before = remote_cache_stats["RemoteAOTAutogradCache"].hit
        grad, _ = compile_and_run()
        check(grad)
        assert trc.cache_stats._stats["RemoteAOTAutogradCache"].hit == before + 1
        assert remote_cache_stats["RemoteAOTAutogradCache"].hit == ours_before  # not via us
        remote_cache_torch.reset()  # drops plain torch's memoized cache (and its client)


class TestOutages:
    """No outage fails a compile through the bridge; without it, torch's compile fails."""

    def test_down_with_the_aot_remote_cache_on(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_outage: OutageFixture,
        remote_cache_stats: CacheStats,
    ) -> None:
        remote_cache_outage.down()
        grad, _ = compile_and_run()
        check(grad)
        aot = remote_cache_stats["RemoteAOTAutogradCache"]
        assert (aot.miss, aot.put, aot.fail_open) == (1, 0, 2)  # its get and its put
        assert remote_cache_stats["RemoteFxGraphCache"].fail_open == 4
        assert remote_cache_outage.entries == {}

    def test_without_the_bridge_a_failing_aot_put_fails_the_compile(
        self, remote_cache_torch: TorchFixture
    ) -> None:
        from torch._dynamo.exc import BackendCompilerFailed

        from remote_cache.exceptions import BackendUnavailableError
        from remote_cache.testing import FailingBackend, InMemoryBackend

        remote_cache_torch.bridge.uninstall()
        trc.RemoteAOTAutogradCache.backend_override_cls = FailingBackend
        trc.RemoteFxGraphCache.backend_override_cls = InMemoryBackend
        try:
            remote_cache_torch.reset()
            with pytest.raises(
                (BackendCompilerFailed, BackendUnavailableError), match="put failed"
            ):
                compile_and_run()
        finally:
            del trc.RemoteAOTAutogradCache.backend_override_cls
            del trc.RemoteFxGraphCache.backend_override_cls
            remote_cache_torch.reset()

    def test_a_black_hole_through_the_proxy_is_bounded(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_proxy: OutageProxy,
        remote_cache_stats: CacheStats,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_RETRY_AFTER", "30")
        remote_cache_proxy.blackhole()
        lost = [0.0]
        original = trc.RemoteCache.get, trc.RemoteCache.put

        def timed(index: int) -> Any:
            def call(self: Any, *args: Any) -> Any:
                start = torch_outage.time.perf_counter()
                try:
                    return original[index](self, *args)
                finally:
                    lost[0] += torch_outage.time.perf_counter() - start

            return call

        monkeypatch.setattr(trc.RemoteCache, "get", timed(0))
        monkeypatch.setattr(trc.RemoteCache, "put", timed(1))
        grad, _ = compile_and_run()
        check(grad)
        backend = remote_cache_stats["backend:RedisRemoteCacheBackend"]
        assert backend.exception == 1  # one timeout (0.3 s here); the breaker skips the rest
        assert backend.skipped == 5
        assert lost[0] < 0.3 + 1.0  # the timeout plus a generous margin
        remote_cache_torch.reset()
        lost[0] = 0.0
        grad, _ = compile_and_run()
        check(grad)
        assert lost[0] < 0.2  # the breaker is open: no network at all


class TestInstallInAFreshProcess:
    """install() in a new process against a black-holed and an OOM server: no crash, bounded."""

    def test_black_hole_and_out_of_memory(self, torch_dir: Any) -> None:
        with RedisServer() as server, OutageProxy.for_url(server.url) as proxy:
            proxy.blackhole()
            client = server.client()
            client.config_set("maxmemory", "1")
            client.config_set("maxmemory-policy", "noeviction")
            client.close()
            urls = f"{proxy.url},{server.url}"
            done = subprocess.run(
                [sys.executable, "-m", "bench.torch_outage", "child", urls, "2", "--bridge"],
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
                env={
                    **torch_outage.os.environ,
                    "TORCHINDUCTOR_CACHE_DIR": str(torch_dir),
                },
            )
        assert done.returncode == 0, done.stderr[-2000:]
        black_hole, oom = torch_outage.json.loads(done.stdout.strip().splitlines()[-1])
        results = {"black hole": black_hole, "oom": oom}
        for name, records in results.items():
            assert [r["error"] for r in records] == [None, None], name
        first, later = results["black hole"]
        assert first["lost"] < 1.0 + 0.2 + 0.5  # the timeout, the goal's 0.2 s, a margin
        assert later["lost"] < 0.05 + 0.1
        assert all(r["lost"] < 0.5 for r in results["oom"])
