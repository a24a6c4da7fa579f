"""What the bridge counts and logs is what torch's caches lived: nulls, shared outages."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch._inductor.remote_cache as trc

import remote_cache.torch as rct
from remote_cache import CacheStats
from remote_cache._breaker import reset_breakers
from remote_cache.testing import InMemoryBackend, OutageProxy
from remote_cache.testing._fixtures import MemoryFixture
from remote_cache.testing._torch import TorchFixture
from tests.torch.conftest import compile_and_run, expected_grad, torch

# torch's compile path imports modules that warn about their own deprecations.
pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")]

NAMES = ("RemoteFxGraphCache", "RemoteAOTAutogradCache")


def torch_counts(name: str) -> tuple[int, int]:
    """torch's own (hit, miss) for its cache class ``name``."""
    stat = trc.cache_stats._stats[name]
    return stat.hit, stat.miss


def check(grad: Any) -> None:
    """The compiled function's gradient is the eager one."""
    assert torch.allclose(grad, expected_grad())


class TestStoredNull:
    """A stored JSON null is a miss for torch, so it is a miss in our counters."""

    def test_torchs_class_over_a_null_entry(self, remote_cache_stats: CacheStats) -> None:
        store = InMemoryBackend()
        store.put("pt2:fx-graph-v1::k:c1", b"null")
        torch_before = torch_counts("RemoteFxGraphCache")
        with rct.install(lambda: store):
            assert trc.RemoteFxGraphCache("fx-graph-v1").get("k") is None
        torch_after = torch_counts("RemoteFxGraphCache")
        stat = remote_cache_stats["RemoteFxGraphCache"]
        assert (stat.hit, stat.miss, stat.corrupt) == (0, 1, 1)  # as our JSON caches count it
        # our counters moved as torch's did
        assert (stat.hit, stat.miss) == (
            torch_after[0] - torch_before[0],
            torch_after[1] - torch_before[1],
        )

    def test_a_compile_over_null_entries_is_no_hit(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_memory: MemoryFixture,
        remote_cache_stats: CacheStats,
    ) -> None:
        grad, _ = compile_and_run()
        check(grad)
        keys = list(remote_cache_memory.entries)
        assert keys  # the FX graphs and the AOTAutograd entry
        for key in keys:
            remote_cache_memory.backend.put(key, b"null")
        before = {name: torch_counts(name) for name in NAMES}
        ours = {name: remote_cache_stats[name].put for name in NAMES}
        remote_cache_torch.reset()
        grad, _ = compile_and_run()
        check(grad)
        for name in NAMES:
            stat = remote_cache_stats[name]
            assert stat.hit == 0, name
            assert stat.put > ours[name], name  # torch compiled again and stored the result
            hits, misses = torch_counts(name)
            assert hits == before[name][0], name  # torch was served nothing either
            assert misses > before[name][1], name


def cache_lines(records: list[logging.LogRecord], name: str, level: int) -> list[str]:
    """The messages at ``level`` about torch's cache ``name``."""
    return [
        r.getMessage()
        for r in records
        if r.levelno == level and r.getMessage().startswith(f"{name}:")
    ]


class TestSharedOutage:
    """torch's FX graph and AOTAutograd caches on one dead server: each warns once."""

    def test_each_cache_warns_once_and_logs_its_recovery(
        self,
        remote_cache_torch: TorchFixture,
        remote_cache_proxy: OutageProxy,
        remote_cache_stats: CacheStats,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # No retry during the outage, however slow the compiles: the first failure opens
        # the shared breaker and every later call of either cache is skipped.
        monkeypatch.setenv("REMOTE_CACHE_REDIS_RETRY_AFTER", "600")
        remote_cache_proxy.cut()
        with caplog.at_level(logging.INFO, logger="remote_cache"):
            grad, _ = compile_and_run()
            check(grad)
            remote_cache_torch.reset()
            grad, _ = compile_and_run()  # a second compile in the same outage
            check(grad)
            for name in NAMES:
                assert remote_cache_stats[name].fail_open >= 2, name  # its get and its put
                assert len(cache_lines(caplog.records, name, logging.WARNING)) == 1, name
                assert cache_lines(caplog.records, name, logging.INFO) == [], name
            remote_cache_proxy.restore()
            reset_breakers()  # as the cool-down ending: the next call tries the server
            remote_cache_torch.reset()
            grad, _ = compile_and_run()  # gets and puts work again, for both caches
            check(grad)
        for name in NAMES:
            assert remote_cache_stats[name].put >= 1, name
            assert len(cache_lines(caplog.records, name, logging.WARNING)) == 1, name
            assert cache_lines(caplog.records, name, logging.INFO) == [
                f"{name}: backend works again"
            ], name
