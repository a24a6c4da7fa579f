"""PyTorch's own remote caches, fail-open through remote_cache (the ``torch`` extra).

``install()`` sets upstream's ``backend_override_cls`` hook on torch's Redis-backed cache
classes (never on its ``RemoteCache`` base, whose local subclasses use file paths as keys),
so that every call goes through our Redis backend (timeouts, one client and one circuit
breaker per server, TLS, cluster; configured from ``REMOTE_CACHE_REDIS_*`` and
``TORCHINDUCTOR_REDIS_*``), wrapped fail-open: a failed get is a miss, a failed put is
dropped, a corrupt entry is a miss; each is counted and logged once per outage.

This is the only module outside the harness that imports torch (the harness's
``testing/_torch.py`` does when the ``remote_cache_torch`` fixture is used).

It is one job, the bridge, and over 400 lines on purpose: the version check, the fail-open
backend, the install/uninstall registry and ``python -m remote_cache.torch`` (which runs a
program with the bridge installed) all need torch imported and checked first, and share one
lock and one registry of installed bridges per process. Split into modules, each would import
torch on its own, and tests that patch ``remote_cache.torch.clear_memoized_caches`` would have
to find the module that calls it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pkgutil
import sys
import threading
import types
from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch
import torch._inductor.remote_cache as torch_remote_cache

from remote_cache import _caches
from remote_cache._controller import GET, PUT, RemoteCache, note_failure, note_recovery
from remote_cache._override_layers import OverrideLayer, pop_override, push_override
from remote_cache._process import at_fork
from remote_cache._redis import RedisRemoteCacheBackend, import_redis
from remote_cache._settings import resolve_redis_settings
from remote_cache._stats import cache_stats
from remote_cache.exceptions import RemoteCacheError

__all__ = [
    "SUPPORTED_TORCH",
    "TORCH_CACHE_CLASSES",
    "FailOpenTorchBackend",
    "TorchBridge",
    "UnsupportedTorchError",
    "clear_memoized_caches",
    "install",
    "main",
    "torch_cache_classes",
]

log = logging.getLogger("remote_cache")

SUPPORTED_TORCH = ((2, 13), (2, 14))
"""The torch versions this module supports: from the first (inclusive) to the second."""

TORCH_CACHE_CLASSES = (
    "RedisRemoteCache",
    "RemoteAutotuneCache",
    "RemoteBundledAutotuneCache",
    "RemoteFxGraphCache",
    "RemoteAOTAutogradCache",
    "RemoteDynamoPGOCache",
)
"""The Redis-backed cache classes of ``torch._inductor.remote_cache`` the bridge covers."""

BackendFactory = Callable[[], Any]


class UnsupportedTorchError(RemoteCacheError, ImportError):
    """The installed torch is outside ``SUPPORTED_TORCH``."""


def _supported_range() -> str:
    (low_major, low_minor), (high_major, high_minor) = SUPPORTED_TORCH
    return f">={low_major}.{low_minor},<{high_major}.{high_minor}"


def _check_version(version: str) -> None:
    """Raise ``UnsupportedTorchError`` unless ``version`` is in ``SUPPORTED_TORCH``."""
    try:
        found = tuple(int(part) for part in version.split("+", maxsplit=1)[0].split(".")[:2])
    except ValueError:
        found = ()
    low, high = SUPPORTED_TORCH
    if not (len(found) == 2 and low <= found < high):
        raise UnsupportedTorchError(
            f"remote_cache.torch supports torch{_supported_range()}, but torch {version} "
            f"is installed: pip install 'remote-cache[torch]'"
        )


_check_version(torch.__version__)


def torch_cache_classes() -> list[type[Any]]:
    """torch's Redis-backed cache classes (``TORCH_CACHE_CLASSES``), as torch defines them."""
    return [getattr(torch_remote_cache, name) for name in TORCH_CACHE_CLASSES]


_AOT_MODULE = "torch._functorch._aot_autograd.autograd_cache"


def clear_memoized_caches() -> None:
    """Forget the cache objects torch keeps per process (AOTAutograd's remote cache).

    The next compile then builds them again, with the backend in force at that time.
    A module not imported yet, or that another thread is still importing (in
    ``sys.modules`` before its class is defined), has memoized nothing: there is
    nothing to clear, and its cache is built at first use, after its import completes,
    with the backend in force then. It is not imported here: that would cost a process
    that never compiles the import, and wait on another thread's import.
    """
    cls = getattr(sys.modules.get(_AOT_MODULE), "AOTAutogradCache", None)
    if cls is not None:
        cls.get_remote_cache.cache_clear()


def _our_class(name: str) -> type[RemoteCache[Any]]:
    """Our cache class of the same name as a torch cache class (``TORCH_CACHE_CLASSES``)."""
    cls: type[RemoteCache[Any]] = getattr(_caches, name)
    return cls


_CORRUPT = (ValueError, RecursionError)


class FailOpenTorchBackend:
    """What torch's cache ``name`` gets as its backend: ``backend``, wrapped fail-open.

    A get that fails is a miss and a put that fails is dropped, whatever the backend
    raises; an entry that is not JSON (or not bytes, ``str`` or a bytes-like object) is a
    miss. Counted in our ``cache_stats`` under ``name`` (``hit``, ``miss``, ``put``,
    ``fail_open``, ``corrupt``) and, for the failures, as ``exception`` in torch's own
    counters; logged once per outage.
    """

    def __init__(self, name: str, backend: Any) -> None:
        self.name = name
        self.backend = backend

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.backend!r})"

    def _failed(self, exc: Exception, kind: str) -> None:
        cache_stats.fail_open(self.name)
        torch_remote_cache.cache_stats.exception(self.name)
        note_failure(self.name, exc, kind)

    def _corrupt(self, key: str, reason: str, *, torch_sees_none: bool = False) -> None:
        """Count and log a corrupt entry read as a miss; torch counts an exception for it,
        except for what torch decodes to None itself (a stored null: its own miss)."""
        cache_stats.corrupt(self.name)
        cache_stats.miss(self.name)
        if not torch_sees_none:
            torch_remote_cache.cache_stats.exception(self.name)
        log.warning("%s: corrupt entry %r read as a miss (%s)", self.name, key, reason)

    def get(self, key: str) -> Any:
        """The stored bytes under ``key``, or None (not stored, failed, corrupt, or null).

        A ``bytearray`` or ``memoryview`` is given to torch as ``bytes``; a stored JSON
        ``null``, which torch reads as a miss, is a corrupt miss (``corrupt`` and ``miss``),
        as in our own JSON caches.
        """
        try:
            data = self.backend.get(key)
        except Exception as exc:  # noqa: BLE001 - fail open: a cache never fails a compile
            self._failed(exc, GET)
            cache_stats.miss(self.name)
            return None
        if data is not None:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            if not isinstance(data, (bytes, str)):
                # torch's json.loads would raise TypeError, unguarded on some paths.
                self._corrupt(key, f"the backend returned a {type(data).__name__}")
                return None
            try:
                decoded = json.loads(data)
            except _CORRUPT as exc:
                self._corrupt(key, f"{type(exc).__name__}: {exc}")
                return None
            if decoded is None:  # a corrupt miss, as in our caches
                self._corrupt(key, "a stored JSON null cannot be served", torch_sees_none=True)
                note_recovery(self.name, GET)  # the server answered
                return None
        cache_stats.get(self.name, data)
        note_recovery(self.name, GET)
        return data

    def put(self, key: str, data: Any) -> None:
        """Store ``data`` under ``key``; a failure drops it."""
        try:
            self.backend.put(key, data)
        except Exception as exc:  # noqa: BLE001 - fail open: a cache never fails a compile
            self._failed(exc, PUT)
            return
        cache_stats.put(self.name)
        note_recovery(self.name, PUT)


class _FactoryFailed(RuntimeError):
    """A backend factory raised: what every call of ``_NoBackend`` raises."""


class _NoBackend:
    """Stands in for a backend whose factory raised: each call fails (and so fails open)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"<no backend: {type(self.error).__name__}: {self.error}>"

    def _raise(self) -> Any:
        raise _FactoryFailed(
            f"the backend factory raised {type(self.error).__name__}: {self.error}"
        )

    def get(self, key: str) -> Any:
        return self._raise()

    def put(self, key: str, data: Any) -> None:
        self._raise()


_lock = threading.Lock()
_installed: list[TorchBridge] = []


def _after_fork_in_child() -> None:
    """A new lock for a forked child: a thread that held it in the parent does not exist here."""
    global _lock  # noqa: PLW0603 - the parent's may be held by a thread not here
    _lock = threading.Lock()


at_fork(after_in_child=_after_fork_in_child)


class TorchBridge:
    """An installed bridge: ``uninstall()`` (or leaving the ``with`` block) undoes it exactly.

    It stays installed when the object is garbage-collected: only ``uninstall()`` undoes it.
    """

    def __init__(self, backend_factory: BackendFactory | None) -> None:
        self.backend_factory = backend_factory
        self.classes: tuple[type[Any], ...] = tuple(torch_cache_classes())
        self._layers: list[OverrideLayer] = []
        self.installed = False
        """Whether the bridge is in force now."""

    def __repr__(self) -> str:
        state = "installed" if self.installed else "uninstalled"
        return f"<TorchBridge {state}, backend_factory={self.backend_factory!r}>"

    def backend_for(self, name: str) -> FailOpenTorchBackend:
        """The backend torch's cache class ``name`` gets now, wrapped fail-open.

        In order: the backend our cache class of that name would get from an override
        (the test harness's fixtures and ``override_backends``), else ``backend_factory()``,
        else our Redis backend configured from the environment.

        If that raises, the cache still gets a backend, whose every call fails open
        (counted as ``fail_open``, logged once per outage) and tells what the factory raised;
        the next cache torch builds calls the factory again.
        """
        override = _our_class(name).backend_override_cls
        backend: Any
        try:
            if override is not None:
                backend = override()
            elif self.backend_factory is not None:
                backend = self.backend_factory()
            else:
                backend = RedisRemoteCacheBackend()
        except Exception as exc:  # noqa: BLE001 - torch would drop the cache, uncounted
            backend = _NoBackend(exc)
        return FailOpenTorchBackend(name, backend)

    def _factory(self, name: str) -> BackendFactory:
        def factory() -> FailOpenTorchBackend:
            return self.backend_for(name)

        factory.__qualname__ = f"TorchBridge.backend_for[{name}]"
        return factory

    def _install(self) -> None:
        """Set the overrides and drop torch's memoized caches, all or nothing.

        Whatever raises on the way (even ``KeyboardInterrupt``), the overrides already set
        are undone and the bridge is forgotten before the exception leaves.
        """
        try:
            with _lock:
                self.installed = True
                _installed.append(self)
                for cls in self.classes:
                    factory = staticmethod(self._factory(cls.__name__))
                    self._layers.append(push_override(cls, factory))
            clear_memoized_caches()
        except BaseException:
            self._undo()
            with contextlib.suppress(Exception):  # the first exception is the one to see
                clear_memoized_caches()
            raise

    def _undo(self) -> bool:
        """Pop this bridge's overrides and forget it; False when it was not installed."""
        with _lock:
            if not self.installed:
                return False
            for layer in reversed(self._layers):
                pop_override(layer)
            self._layers = []
            if self in _installed:
                _installed.remove(self)
            self.installed = False
        return True

    def uninstall(self) -> None:
        """Give torch's classes back exactly what they had; idempotent.

        Bridges and ``override_backends`` blocks may be undone in any order: once all are
        undone, each class has exactly what it had before them.
        """
        if self._undo():
            clear_memoized_caches()

    def __enter__(self) -> TorchBridge:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.uninstall()


def install(backend_factory: BackendFactory | None = None) -> TorchBridge:
    """Make torch's Redis-backed caches use our backend, fail-open; returns the bridge.

    ``backend_factory`` (no arguments, returns a backend with ``get``/``put``) replaces
    our Redis backend: ``LocalCacheBackend``, a user's own. Without it the Redis settings
    are checked now (``ConfigurationError`` for a bad one, ``MissingDependencyError``
    without redis-py), so that a mistake is not found one compile at a time.
    """
    if backend_factory is None:
        resolve_redis_settings()
        import_redis()
    elif not callable(backend_factory):
        raise TypeError(
            f"Expected a callable but got backend_factory={backend_factory!r} "
            f"(type={type(backend_factory).__name__})"
        )
    bridge = TorchBridge(backend_factory)
    bridge._install()
    return bridge


USAGE = "usage: python -m remote_cache.torch (SCRIPT | -m MODULE) [ARGS...]"


def _script_folder(script: str) -> str | None:
    """What ``python SCRIPT`` puts first on ``sys.path``: the script's real folder (None
    for a folder or zip file, which ``runpy.run_path`` puts there itself, or with ``-P``)."""
    if sys.flags.safe_path or pkgutil.get_importer(script) is not None:
        return None
    return os.path.dirname(os.path.realpath(script))


def _run_script(path: str) -> None:
    """Run the source file ``path`` as ``__main__``, as ``python SCRIPT`` does.

    Not ``runpy.run_path``: it sets ``sys.argv[0]`` to the path it is given, and
    ``python SCRIPT`` has ``__file__`` absolute but ``sys.argv[0]`` as typed.
    """
    with io.open_code(path) as file:
        source = file.read()
    code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=path, __cached__=None, __package__=None)
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)  # running the user's program is the point
    finally:
        if saved is None:
            del sys.modules["__main__"]
        else:
            sys.modules["__main__"] = saved


def main(argv: list[str] | None = None) -> None:
    """``python -m remote_cache.torch SCRIPT|-m MODULE ARGS``: run a program with the bridge.

    The program itself is not changed: the bridge is installed (from the environment) in
    this process, then the script or module runs as ``__main__`` as if it had been started
    directly: ``sys.argv`` as given, and for a script its folder first on ``sys.path`` and
    ``__file__`` absolute, as ``python SCRIPT`` has them. The bridge is uninstalled, and
    ``sys.argv`` and ``sys.path`` restored, when it returns.
    """
    import runpy

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or (args[0] == "-m" and len(args) < 2):
        raise SystemExit(USAGE)
    saved_argv, saved_path = sys.argv, sys.path[:]
    with install():
        try:
            if args[0] == "-m":
                sys.argv = args[1:]
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = args
                folder = _script_folder(args[0])
                if folder is None or args[0].endswith((".pyc", ".pyo")):
                    runpy.run_path(args[0], run_name="__main__")
                else:
                    sys.path.insert(0, folder)
                    _run_script(os.path.abspath(args[0]))
        finally:
            sys.argv = saved_argv
            sys.path[:] = saved_path


if __name__ == "__main__":  # pragma: no cover - run as a program; main() is tested
    import importlib

    # The installed module, not this copy run as __main__: one bridge registry per process.
    _module = importlib.import_module("remote_cache.torch")
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-") and sys.path[:1] == [os.getcwd()]:
        # `python -m` put the working folder first; `python SCRIPT` has the script's there.
        del sys.path[0]
    _module.main()
