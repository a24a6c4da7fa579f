"""Child processes that die with the test run: reaped at exit and on the parent's death."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import signal
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["free_port", "spawn", "stop_process"]

_live: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()
_live_lock = threading.Lock()

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start ``argv``; it is killed at interpreter exit, and (on Linux) when this process dies."""
    if sys.platform.startswith("linux"):
        options.setdefault("preexec_fn", _die_with_parent)
    process: subprocess.Popen[bytes] = subprocess.Popen(list(argv), **options)
    with _live_lock:
        _live.add(process)
    return process


def stop_process(process: subprocess.Popen[bytes], *, graceful: bool = False) -> None:
    """Stop ``process`` (SIGTERM first when ``graceful``, else SIGKILL) and reap it."""
    if process.poll() is None:
        if graceful:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        else:
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with _live_lock:
        _live.discard(process)


@atexit.register
def _reap_all() -> None:
    with _live_lock:
        processes = list(_live)
    for process in processes:
        stop_process(process)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
