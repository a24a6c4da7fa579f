"""Framework-free set-up behind the ``remote_cache_torch`` fixture (imports torch when used)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remote_cache.torch import TorchBridge

__all__ = ["TorchFixture", "import_torch", "torch_caches"]

INSTALL_HINT = "pip install 'remote-cache[torch]'"


def import_torch() -> ModuleType:
    """Import torch (and ``remote_cache.torch``); quiet about a missing NumPy.

    torch warns at import when NumPy is missing, which a suite that turns warnings into
    errors would report against whatever test imported it first.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Failed to initialize NumPy", UserWarning)
        import importlib

        torch = importlib.import_module("torch")
        import remote_cache.torch  # noqa: F401 - checks the torch version
    return torch


class TorchFixture:
    """torch's FX graph and AOTAutograd remote caches are on and go through ``bridge``."""

    def __init__(self, bridge: TorchBridge, cache_dir: Path) -> None:
        self.bridge = bridge
        self.cache_dir = cache_dir
        """torch's cache folder for the test (``TORCHINDUCTOR_CACHE_DIR``)."""

    def reset(self) -> None:
        """Drop what torch keeps in the process: the next compile runs as in a fresh one.

        Compiled frames (``torch._dynamo.reset()``) and memoized cache objects go; the
        remote store and the cache folder (compiled kernels) stay.
        """
        import torch._dynamo

        from remote_cache.torch import clear_memoized_caches

        torch._dynamo.reset()
        clear_memoized_caches()


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@contextlib.contextmanager
def torch_caches(cache_dir: str | os.PathLike[str]) -> Iterator[TorchFixture]:
    """Turn on torch's FX graph and AOTAutograd remote caches, through the bridge.

    Local caches are off, ``TORCHINDUCTOR_CACHE_DIR`` is ``cache_dir``; torch's compiled
    frames and memoized caches are dropped before and after. Everything is restored on exit.
    """
    import_torch()
    import importlib

    from remote_cache.torch import install

    folder = Path(cache_dir)
    inductor: Any = importlib.import_module("torch._inductor.config")
    functorch: Any = importlib.import_module("torch._functorch.config")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environment("TORCHINDUCTOR_CACHE_DIR", str(folder)))
        stack.enter_context(inductor.patch(fx_graph_cache=False, fx_graph_remote_cache=True))
        stack.enter_context(
            functorch.patch(enable_autograd_cache=False, enable_remote_autograd_cache=True)
        )
        bridge = stack.enter_context(install())
        handle = TorchFixture(bridge, folder)
        handle.reset()
        stack.callback(handle.reset)
        yield handle
