"""Shared pieces of the torch tests: torch imported quietly, a tiny model, one cache folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remote_cache.testing._torch import import_torch

torch = import_torch()


def tiny(x: Any) -> Any:
    """Two operations: enough for a forward and a backward graph."""
    return (x.sin() + 1) * 2


def compile_and_run(fn: Callable[[Any], Any] = tiny) -> tuple[Any, float]:
    """Compile ``fn``, run it forward and backward once; (the gradient, seconds taken)."""
    x = torch.arange(8, dtype=torch.float32, requires_grad=True)
    start = time.perf_counter()
    y = torch.compile(fn)(x)
    y.sum().backward()
    return x.grad, time.perf_counter() - start


def expected_grad() -> Any:
    """The gradient of ``tiny`` computed eagerly."""
    x = torch.arange(8, dtype=torch.float32, requires_grad=True)
    tiny(x).sum().backward()
    return x.grad


@pytest.fixture(scope="session")
def _remote_cache_torch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torch cache folder for every xdist worker: compiled kernels are built once."""
    root = tmp_path_factory.getbasetemp()
    if root.name.startswith("popen-gw"):
        root = root.parent
    folder = root / "torchinductor-shared"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def torch_dir(_remote_cache_torch_dir: Path) -> Path:
    """The shared torch cache folder, for tests that start their own processes."""
    return _remote_cache_torch_dir
