"""The project's tests: its compiles and torch's remote caches, under remote_cache's fixtures."""

from __future__ import annotations

import re

import torch
from tinymodel import scaled_sin, train_step

FX_KEY = re.compile(r"pt2:fx-graph-v1::[0-9a-z]{52}:c1")


def expected(x: torch.Tensor) -> torch.Tensor:
    """The gradient computed eagerly."""
    x = x.detach().requires_grad_(True)
    scaled_sin(x).sum().backward()
    assert x.grad is not None
    return x.grad


class TestRemoteCaches:
    """The second compile of the model, as in a fresh process, is a remote hit."""

    def test_second_compile_hits(self, remote_cache_torch, remote_cache_memory, remote_cache_stats):
        x = torch.arange(8.0)
        assert torch.allclose(train_step(x), expected(x))
        assert remote_cache_stats["RemoteFxGraphCache"].put == 2  # forward and backward
        assert remote_cache_stats["RemoteAOTAutogradCache"].put == 1
        assert sum(bool(FX_KEY.fullmatch(k)) for k in remote_cache_memory.entries) == 2

        remote_cache_torch.reset()  # as if the next run were a new process
        assert torch.allclose(train_step(x), expected(x))
        assert remote_cache_stats["RemoteAOTAutogradCache"].hit == 1
        assert remote_cache_stats["RemoteFxGraphCache"].hit == 2

    def test_calls_are_recorded(self, remote_cache_torch, remote_cache_recorder):
        train_step(torch.arange(8.0))
        ops = remote_cache_recorder.ops()
        assert ops.count("get") == 3
        assert ops.count("put") == 3
        assert remote_cache_recorder.calls[0].key.startswith("pt2:autograd-experimental::")


class TestOutage:
    """A cache server outage never fails a compile."""

    def test_down(self, remote_cache_torch, remote_cache_outage, remote_cache_stats):
        remote_cache_outage.down()
        x = torch.arange(8.0)
        assert torch.allclose(train_step(x), expected(x))
        assert remote_cache_stats["RemoteAOTAutogradCache"].fail_open == 2  # get and put
        assert remote_cache_stats["RemoteFxGraphCache"].fail_open == 4
