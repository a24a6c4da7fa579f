"""Test harness for code that uses remote_cache: fakes, fault injection, real servers.

Framework-free: usable from unittest or a script. The pytest fixtures live in
``remote_cache.testing.pytest_plugin`` and load automatically when the package is installed.
"""

from __future__ import annotations

from remote_cache.testing._backends import (
    BackendCall,
    FailingBackend,
    InMemoryBackend,
    NoopBackend,
    RecordingBackend,
)
from remote_cache.testing._clock import VirtualClock
from remote_cache.testing._fault_injection import FaultInjectingBackend, FaultPlan
from remote_cache.testing._fixtures import (
    FakeRedisFixture,
    MemoryFixture,
    OutageFixture,
    RecorderFixture,
    fakeredis_backends,
    memory_backends,
    outage_backends,
    recording_backends,
    redis_environment,
)
from remote_cache.testing._override import (
    all_cache_classes,
    isolated_cache_stats,
    override_backends,
)
from remote_cache.testing._proxy import OutageProxy
from remote_cache.testing._redis_cluster import RedisClusterServer
from remote_cache.testing._redis_server import RedisServer
from remote_cache.testing._server_builds import (
    RedisServerError,
    ServerBuild,
    find_redis_server,
    find_valkey_server,
)
from remote_cache.testing._server_fixtures import RedisClusterFixture, RedisFixture
from remote_cache.testing._side_effects import SideEffect

__all__ = [
    "BackendCall",
    "FailingBackend",
    "FakeRedisFixture",
    "FaultInjectingBackend",
    "FaultPlan",
    "InMemoryBackend",
    "MemoryFixture",
    "NoopBackend",
    "OutageFixture",
    "OutageProxy",
    "RecorderFixture",
    "RecordingBackend",
    "RedisClusterFixture",
    "RedisClusterServer",
    "RedisFixture",
    "RedisServer",
    "RedisServerError",
    "ServerBuild",
    "SideEffect",
    "VirtualClock",
    "all_cache_classes",
    "fakeredis_backends",
    "find_redis_server",
    "find_valkey_server",
    "isolated_cache_stats",
    "memory_backends",
    "outage_backends",
    "override_backends",
    "recording_backends",
    "redis_environment",
]
