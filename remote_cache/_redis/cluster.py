"""Batches on a Redis Cluster: each master's keys in one round trip, all masters at once.

The keys are planned by the client's slot map (``_plan``), sent and read together
(``_cluster_round_trip``), and the slot map read again after a node failure
(``_refresh_slot_map``). A slot that moved sends the batch through redis-py instead. Also the
pipelined ``SET`` batch with an expiry, which standalone servers use too (``_pipelined_set``).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from remote_cache._process import on_reset
from remote_cache._redis.internals import checkout
from remote_cache._redis.replies import _oks_reply

log = logging.getLogger("remote_cache")


def _pipelined_set(client: Any, items: Mapping[bytes, bytes], expire: int | None) -> None:
    """``SET key value [EX expire]`` for every item, in one pipeline (one round trip each)."""
    pipeline = client.pipeline(transaction=False)
    for name, data in items.items():
        pipeline.set(name, data, ex=expire)
    _oks_reply(pipeline.execute(), items)


def _set_command(name: bytes, data: bytes, expire: int | None) -> tuple[Any, ...]:
    return ("SET", name, data) if expire is None else ("SET", name, data, "EX", expire)


class _Redirected(Exception):
    """A slot moved while a batch was under way (MOVED or ASK)."""


_stale_slot_maps: weakref.WeakSet[Any] = weakref.WeakSet()
on_reset(_stale_slot_maps.clear)
"""Cluster clients whose slot map a failed batch found stale and could not read again yet."""


def _refresh_slot_map(client: Any) -> bool:
    """Read the cluster's slot map again, through redis-py's own ``NodesManager.initialize()``.

    True if it was read. Never raises for a failure (the batch's own error is what the
    caller reports): the client stays marked, and its next batch reads the map first.
    """
    with contextlib.suppress(TypeError):  # a client that takes no weak reference
        _stale_slot_maps.add(client)
    try:
        client.nodes_manager.initialize()
    except Exception as exc:  # noqa: BLE001 - no node answered in time: the next batch asks
        log.debug("cluster slot map not refreshed: %s: %s", type(exc).__name__, exc)
        return False
    _stale_slot_maps.discard(client)
    return True


def _is_node_failure(exc: Exception) -> bool:
    """Whether ``exc`` says a node is gone or the slot map is wrong, not the request.

    A connection that failed or timed out, a cluster reporting itself down (CLUSTERDOWN,
    during a failover), a slot no node serves in the client's map. This process's own
    pool limit (``MaxConnectionsError``) says nothing about the node.
    """
    from redis.exceptions import (
        ClusterDownError,
        ConnectionError,
        MaxConnectionsError,
        SlotNotCoveredError,
        TimeoutError,
    )

    if isinstance(exc, MaxConnectionsError):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError, ClusterDownError, SlotNotCoveredError))


def _plan(client: Any, names: Mapping[bytes, Any]) -> dict[str, tuple[Any, list[bytes]]]:
    """The keys grouped by the master the client's slot map gives them: name -> (node, keys)."""
    by_node: dict[str, tuple[Any, list[bytes]]] = {}
    for name in names:
        node = client.get_node_from_key(name)
        by_node.setdefault(node.name, (node, []))[1].append(name)
    return by_node


def _cluster_round_trip(client: Any, commands: Mapping[bytes, tuple[Any, ...]]) -> list[Any]:
    """Send each key's command to the master of its slot, every master at once; the replies.

    One round trip in all: the commands for all masters are written before any reply is
    read. redis-py's cluster pipeline does the same with several times the Python work per
    key. Raises ``_Redirected`` when a slot moved (the caller then goes through redis-py,
    which follows redirections and refreshes its slot map), the first other error reply as
    redis-py raises it, and transport errors as they come.

    A node failure (``_is_node_failure``: a master down, a failover under way) makes the
    client read the slot map again, as redis-py does after a single command's failure;
    when the new map sends the keys to other masters (a replica was promoted), the batch
    is sent once more, within the same deadline. A map that could not be read is read
    before the client's next batch.
    """
    if client in _stale_slot_maps:
        _refresh_slot_map(client)
    routes: dict[str, list[bytes]] | None = None
    try:
        plan = _plan(client, commands)
        routes = _routes(plan)
        return _send_and_read(client, commands, plan)
    except Exception as exc:
        if not _is_node_failure(exc) or not _refresh_slot_map(client):
            raise
        failed = exc
    try:
        plan = _plan(client, commands)
    except Exception:  # noqa: BLE001 - the new map lacks a slot: the first error tells more
        raise failed from None
    if _routes(plan) == routes:
        raise failed  # the same masters for the same keys: it would fail the same way
    return _send_and_read(client, commands, plan)


def _routes(plan: dict[str, tuple[Any, list[bytes]]]) -> dict[str, list[bytes]]:
    """Which keys go to which master (by name), to tell whether a new slot map changed it."""
    return {name: names for name, (_, names) in plan.items()}


def _send_and_read(
    client: Any,
    commands: Mapping[bytes, tuple[Any, ...]],
    plan: dict[str, tuple[Any, list[bytes]]],
) -> list[Any]:
    """Write every master's commands, then read every reply (see ``_cluster_round_trip``)."""
    from redis.exceptions import AskError, ResponseError

    sent: list[tuple[Any, Any, list[bytes]]] = []
    replies: dict[bytes, Any] = {}
    errors: list[ResponseError] = []
    try:
        for node, names in plan.values():
            pool = client.get_redis_connection(node).connection_pool
            connection = checkout(pool)
            sent.append((pool, connection, names))
            connection.send_packed_command(
                connection.pack_commands([commands[name] for name in names])
            )
        for _, connection, names in sent:
            for name in names:
                try:
                    replies[name] = connection.read_response()
                except ResponseError as exc:
                    errors.append(exc)
    except BaseException:
        for _, connection, _ in sent:
            connection.disconnect()  # replies may still be on the way: never reuse it
        raise
    finally:
        for pool, connection, _ in sent:
            pool.release(connection)
    if errors:
        # redis-py parses MOVED and ASK replies into AskError (MovedError subclasses it), with
        # only "slot host:port" as the message: the class tells, never the text.
        if any(isinstance(exc, AskError) for exc in errors):
            raise _Redirected
        raise errors[0]
    return [replies[name] for name in commands]


def _cluster_set_many(client: Any, items: Mapping[bytes, bytes], expire: int | None) -> None:
    """SET every item on a cluster in one round trip (redis-py's pipeline if a slot moved)."""
    commands = {name: _set_command(name, data, expire) for name, data in items.items()}
    try:
        _oks_reply(_cluster_round_trip(client, commands), commands)
    except _Redirected:
        _pipelined_set(client, items, expire)


def _cluster_get_many(client: Any, names: list[bytes]) -> list[bytes | None]:
    """GET every key on a cluster in one round trip (redis-py's MGETs if a slot moved)."""
    try:
        return _cluster_round_trip(client, {name: ("GET", name) for name in names})
    except _Redirected:
        return client.mget_nonatomic(names)  # type: ignore[no-any-return]
