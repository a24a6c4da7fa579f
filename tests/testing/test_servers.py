"""RedisServer and OutageProxy against real processes."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from remote_cache.testing import OutageProxy, RedisServer, find_redis_server

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
