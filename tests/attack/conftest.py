"""Real servers for the attack layer, started once per module and always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from remote_cache._process import reset_process_state
from remote_cache.testing import OutageProxy, RedisClusterServer, RedisServer
from tests.attack._harness import Baseline

ADMIN_NAME = "attack-admin"
"""The CLIENT SETNAME of the admin clients, left out of the server's connection count."""


def fresh_process_state() -> None:
    """What each Hypothesis example starts from: no counters, breakers closed, no clients.

    The suite's autouse fixture does this once per test; a test runs many examples.
    """
    reset_process_state()


@pytest.fixture(scope="module")
def attack_server() -> Iterator[RedisServer]:
    """A redis-server of the module's own, which schedules kill and restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def attack_admin(attack_server: RedisServer) -> Iterator[Any]:
    """A client straight to the server (not through the proxy), to count its connections."""
    admin = attack_server.client(client_name=ADMIN_NAME, socket_timeout=2.0)
    yield admin
    admin.close()


@pytest.fixture(scope="module")
def attack_proxy(attack_server: RedisServer) -> Iterator[OutageProxy]:
    """An ``OutageProxy`` in front of ``attack_server``: the faults are made here."""
    with OutageProxy.for_url(attack_server.url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def dead_address() -> Iterator[OutageProxy]:
    """A black-holed proxy: accepts connections and never answers (a hung cluster)."""
    with RedisServer() as server, OutageProxy.for_url(server.url) as proxy:
        proxy.blackhole()
        yield proxy


@pytest.fixture(scope="module")
def attack_cluster() -> Iterator[RedisClusterServer]:
    """A 3-master cluster of the module's own, whose slots the schedules move."""
    with RedisClusterServer() as cluster:
        yield cluster


@pytest.fixture
def leaks() -> Baseline:
    """Descriptors and threads after a test's first example, kept for all its examples."""
    return Baseline()
