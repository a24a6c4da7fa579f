"""install(), uninstall() and the fixture's reset() racing torch's own imports in other threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch._inductor.remote_cache as trc
from torch._functorch._aot_autograd.autograd_cache import AOTAutogradCache

import remote_cache.torch as rct
from remote_cache.testing import InMemoryBackend
from remote_cache.testing._torch import TorchFixture

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[2]
AOT_MODULE = "torch._functorch._aot_autograd.autograd_cache"


def overrides() -> dict[str, object]:
    """Each torch cache class's own ``backend_override_cls`` (absent: a marker)."""
    return {
        name: vars(getattr(trc, name)).get("backend_override_cls", "<absent>")
        for name in ("RemoteCache", *rct.TORCH_CACHE_CLASSES)
    }


@pytest.fixture(autouse=True)
def _no_bridge_left() -> Iterator[None]:
    """A failing test does not leave its bridges (or their overrides) to the next ones."""
    before = list(rct._installed)
    yield
    for bridge in [b for b in rct._installed if b not in before]:
        bridge.uninstall()


@pytest.fixture
def half_imported() -> Iterator[types.ModuleType]:
    """The AOTAutograd cache module as another thread's import leaves it half-way."""
    real = sys.modules[AOT_MODULE]
    half = types.ModuleType(AOT_MODULE)  # in sys.modules, its classes not defined yet
    sys.modules[AOT_MODULE] = half
    try:
        yield half
    finally:
        sys.modules[AOT_MODULE] = real
        AOTAutogradCache.get_remote_cache.cache_clear()


class TestHalfImportedModule:
    """A module another thread is importing neither fails nor leaks a bridge."""

    def test_install_uninstall_and_reset_do_not_raise(
        self, half_imported: types.ModuleType, tmp_path: Path
    ) -> None:
        before = overrides()
        bridge = rct.install(InMemoryBackend)
        assert bridge.installed
        TorchFixture(bridge, tmp_path).reset()
        rct.clear_memoized_caches()
        bridge.uninstall()
        assert overrides() == before
        assert rct._installed == []


class TestAllOrNothing:
    """install() that fails after setting overrides leaves nothing behind."""

    @pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
    def test_a_failure_after_the_overrides_undoes_them(
        self, error: BaseException, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def clear() -> None:
            raise error

        before = overrides()
        monkeypatch.setattr(rct, "clear_memoized_caches", clear)
        with pytest.raises(type(error)):
            rct.install(InMemoryBackend)
        assert overrides() == before
        assert rct._installed == []


CHILD = r"""
import importlib.abc
import importlib.machinery
import json
import random
import sys
import threading
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch
import torch._dynamo
import torch._inductor.remote_cache as trc

import remote_cache.torch as rct
from remote_cache.testing import InMemoryBackend
from remote_cache.testing._torch import TorchFixture

TARGET = "torch._functorch._aot_autograd.autograd_cache"
started, release = threading.Event(), threading.Event()


class Held(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        started.set()
        release.wait(30)
        self.real.exec_module(module)


class Hold(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = Held(spec.loader)
        return spec


def overrides():
    return {n: vars(getattr(trc, n)).get("backend_override_cls") for n in rct.TORCH_CACHE_CLASSES}


BEFORE = overrides()
errors = []


def cycle(reset=False):
    try:
        bridge = rct.install(InMemoryBackend)
    except Exception as exc:
        errors.append(f"install: {exc!r}")
        return
    try:
        if reset:
            TorchFixture(bridge, Path(".")).reset()
    except Exception as exc:
        errors.append(f"reset: {exc!r}")
    try:
        bridge.uninstall()
    except Exception as exc:
        errors.append(f"uninstall: {exc!r}")


def first_import():
    importlib.import_module(TARGET)


sys.meta_path.insert(0, Hold())
thread = threading.Thread(target=first_import, daemon=True)
thread.start()
assert started.wait(30)
module = sys.modules.get(TARGET)
held = module is not None and not hasattr(module, "AOTAutogradCache")
for _ in range(20):  # deterministic: the module is half-imported throughout
    cycle()
cycle(reset=True)
# then at random: the import completes (0.3 s of real work) while cycles go on
release_after = random.randrange(50)
cycles, deadline = 0, time.monotonic() + 20
while cycles < 20000 and time.monotonic() < deadline:
    cycle()
    cycles += 1
    if cycles == release_after:
        release.set()
    if release.is_set() and not thread.is_alive() and cycles > release_after + 20:
        break
release.set()
thread.join(30)

from torch._functorch._aot_autograd.autograd_cache import AOTAutogradCache

with rct.install(InMemoryBackend):
    bridged = isinstance(AOTAutogradCache.get_remote_cache().backend, rct.FailOpenTorchBackend)
after = AOTAutogradCache.get_remote_cache()
plain = after is None or not isinstance(after.backend, rct.FailOpenTorchBackend)
print(json.dumps({
    "held": held, "errors": errors[:5], "error_count": len(errors), "cycles": cycles,
    "imported": not thread.is_alive(), "left": len(rct._installed),
    "restored": overrides() == BEFORE, "bridged": bridged, "plain_after": plain,
}))
"""


class TestRealRace:
    """A real first import of torch's AOTAutograd cache module in another thread."""

    def test_install_and_uninstall_in_a_loop_meanwhile(self, torch_dir: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-c", CHILD],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
            env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(torch_dir)},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["held"], result  # the first cycles ran against a half-imported module
        assert result["imported"], result
        assert (result["error_count"], result["errors"]) == (0, []), result
        assert result["left"] == 0, result  # no bridge record piles up
        assert result["restored"], result  # no override is left after the last uninstall
        assert result["bridged"], result  # the cache built after the import has the bridge
        assert result["plain_after"], result  # and uninstall() dropped it again
