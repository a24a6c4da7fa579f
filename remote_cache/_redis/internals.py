"""Every redis-py internal the Redis backend relies on, what it assumes of each, and why.

redis-py's public extension points do most of the work: the pool's ``connection_class``
(every connection of ours is a ``_DeadlineConnectionMixin`` subclass), socket timeouts,
``Retry`` (no retries), ``ConnectionPool.from_url`` and ``RedisCluster``'s
``connection_pool_class``. What they cannot do is listed in ``INTERNALS``, and the code that
touches a private member goes through the functions below (``_DeadlineConnectionMixin``
overrides the listed methods). ``tests/test_redis_internals.py`` checks every entry on the
lowest redis-py declared (5.0.0) and the newest, so that a release changing one fails there
rather than in a user's build.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "INTERNALS",
    "Internal",
    "checkout",
    "is_connected",
    "no_cluster_retries",
    "only_tls_records_waiting",
    "python_command_packer",
    "quiet_handshake_options",
    "renew_cluster_locks",
]


@dataclass(frozen=True)
class Internal:
    """One redis-py internal: its name, what we assume of it, and what needs it."""

    name: str
    assumption: str
    needed_for: str


INTERNALS: Final[tuple[Internal, ...]] = (
    Internal(
        "AbstractConnection._connect()",
        "Opens and returns the connected socket (TLS-wrapped for SSLConnection), reading "
        "self.socket_connect_timeout and self.socket_timeout when called; connect() goes "
        "through it; nothing else keeps the socket.",
        "The call's deadline: the socket is wrapped (_DeadlineSocket) and the connect's "
        "timeouts are cut to the time left. No public hook sees the socket.",
    ),
    Internal(
        "AbstractConnection._construct_command_packer(packer)",
        "Called once by __init__ with its command_packer argument, once encoder and "
        "_buffer_cutoff are set; returns an object whose pack(*args) gives a list of bytes.",
        "redis-py's own serializer instead of hiredis's, which crashes the process when an "
        "interrupt lands while it packs (python_command_packer).",
    ),
    Internal(
        "AbstractConnection._buffer_cutoff, AbstractConnection.encoder",
        "An int, and an object whose encode(value) gives bytes: the two arguments of "
        "redis.connection.PythonRespSerializer.",
        "python_command_packer.",
    ),
    Internal(
        "AbstractConnection._sock",
        "None exactly while not connected: set before the handshake runs, None again "
        "after disconnect().",
        "The owed-reply guard connects before it counts a command's reply (is_connected).",
    ),
    Internal(
        "AbstractConnection.connect() and connect_check_health() (redis-py 6 and later)",
        "Every handshake command (AUTH, HELLO, CLIENT SETNAME, SELECT...) is sent and its "
        "reply read inside one of them; redis-py 8 sends several before reading any.",
        "The owed-reply guard is off inside them, and a connect failing in any way disconnects.",
    ),
    Internal(
        "send_command, pack_commands, send_packed_command, read_response, check_health",
        "send_command and a pipeline's pack_commands end in self.send_packed_command; "
        "send_packed_command calls self.check_health() when its check_health is true; "
        "read_response raises an error reply as ResponseError.",
        "The owed-reply guard counts the replies a connection owes.",
    ),
    Internal(
        "AbstractConnection._parser; the hiredis parser's _reader (has_data()), "
        "_next_response (redis-py before 6) and read_from_socket(timeout, raise_on_timeout)",
        "The hiredis parser's can_read() answers True when the socket polls readable, "
        "though on a TLS socket that may be a record carrying no data; read_from_socket("
        "timeout=0, raise_on_timeout=False) reads what is there without waiting, keeps any "
        "data in the reader, and answers whether data came.",
        "A fresh TLS 1.3 connection whose handshake read nothing (RESP2, db 0, no name) "
        "polls readable once the server's session tickets arrive: redis-py 8.2 takes that "
        "for an unread reply and refuses the connection ('Connection not ready'), an "
        "outage that is not one (only_tls_records_waiting).",
    ),
    Internal(
        "AbstractConnection.__init__ parameters driver_info / lib_name, lib_version",
        "driver_info=None (redis-py 8) or lib_name=None and lib_version=None (5 to 7) "
        "keep CLIENT SETINFO out of the handshake; redis-py 8 warns about lib_name.",
        "A handshake without optional round trips (quiet_handshake_options).",
    ),
    Internal(
        "redis.maint_notifications.MaintNotificationsConfig (redis-py 7 and later)",
        "maint_notifications_config=MaintNotificationsConfig(enabled=False) keeps CLIENT "
        "MAINT_NOTIFICATIONS out of a RESP3 handshake (7.0 and 8.0 fail on unix sockets "
        "with it on).",
        "quiet_handshake_options.",
    ),
    Internal(
        "RedisCluster._lock, NodesManager._lock, NodesManager._initialization_lock",
        "The only locks a cluster client's close() takes (redis-py 5.0 has no "
        "_initialization_lock).",
        "A forked child gives an inherited cluster client new locks, which a thread of the "
        "parent may have held at the fork (renew_cluster_locks).",
    ),
    Internal(
        "ConnectionPool.get_connection(command_name)",
        "redis-py before 5.3 requires command_name (and ignores it); later releases make "
        "it optional, and warn when it is given.",
        "Batches on a cluster take one connection per master (checkout).",
    ),
    Internal(
        "ConnectionPool.reset(), make_connection(), max_connections, _created_connections, "
        "_available_connections",
        "reset() runs from __init__ (and in a forked child); get_connection() calls "
        "make_connection() when no idle connection is left, which raises once "
        "_created_connections reaches max_connections; released connections wait in "
        "_available_connections.",
        "A backend call waits for a connection of a full pool until its deadline, instead "
        "of failing at once.",
    ),
    Internal(
        "RedisCluster.cluster_error_retry_attempts (redis-py before 6)",
        "How many times execute_command and a pipeline (which copies it when made) retry a "
        "command that failed on a connection error, re-reading the slot map each time (3); "
        "later releases have no such attribute and retry as the client's retry says.",
        "A cluster call tries once, so that a dead master costs one timeout (no_cluster_retries).",
    ),
    Internal(
        "NodesManager.initialize()",
        "Reads the cluster's slot map again from the startup nodes, replacing the cached one.",
        "Cluster batches refresh the slot map after a connection error (a failover).",
    ),
    Internal(
        "RedisCluster.get_node_from_key(key), RedisCluster.get_redis_connection(node)",
        "The master that the cached slot map gives a key's slot, and that node's client, "
        "whose connection_pool is one of ours (connection_pool_class).",
        "Cluster batches: one MGET or pipeline per master, in one round trip.",
    ),
    Internal(
        "Redis.auto_close_connection_pool",
        "When true, close() also closes the pool the client was given; redis-py 5.0 has "
        "no such attribute (close_shared_clients disconnects the pool itself).",
        "A standalone client built on our pool closes it as from_url's does.",
    ),
    Internal(
        "ConnectionPool.connection_kwargs",
        "The keyword arguments every connection is made with (host, port, path...).",
        "remote_cache.testing's key namespace tells servers apart.",
    ),
)
"""Every redis-py internal we rely on; tests/test_redis_internals.py checks each."""


def is_connected(connection: Any) -> bool:
    """Whether ``connection`` has a socket (``_sock``): set from before the handshake on."""
    return getattr(connection, "_sock", None) is not None


def only_tls_records_waiting(connection: Any) -> bool:
    """Whether all that made ``connection``'s parser answer ``can_read()`` is TLS records
    carrying no data (a TLS 1.3 server's session tickets), now read and dropped.

    Only a hiredis parser on a TLS socket can answer so (redis-py 8.2's polls the socket);
    the pure-Python parsers read before they answer. Any data read here stays in the
    parser's reader, for the next reply; a socket the server closed raises
    ``ConnectionError``, as ``can_read`` would have.
    """
    parser: Any = getattr(connection, "_parser", None)
    sock: Any = getattr(connection, "_sock", None)
    reader = getattr(parser, "_reader", None)
    if reader is None or not hasattr(reader, "has_data") or not hasattr(sock, "pending"):
        return False  # a pure-Python parser, or no TLS socket
    if getattr(parser, "_next_response", False) is not False:  # redis-py 5: a reply parsed
        return False
    if reader.has_data() or sock.pending():
        return False
    return not parser.read_from_socket(timeout=0, raise_on_timeout=False)


def python_command_packer(connection: Any) -> Any:
    """redis-py's pure-Python command serializer for ``connection``, whatever is installed."""
    from redis.connection import PythonRespSerializer

    return PythonRespSerializer(connection._buffer_cutoff, connection.encoder.encode)


def quiet_handshake_options() -> dict[str, Any]:
    """Connection options keeping ``CLIENT SETINFO`` and ``CLIENT MAINT_NOTIFICATIONS`` out
    of the handshake, in the spelling the installed redis-py takes."""
    from redis.connection import AbstractConnection

    parameters = inspect.signature(AbstractConnection.__init__).parameters
    options: dict[str, Any] = {}
    if "driver_info" in parameters:
        options["driver_info"] = None
    elif "lib_name" in parameters:
        options["lib_name"] = options["lib_version"] = None
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # redis-py 5 and 6: no such handshake command
        return options
    options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return options


def checkout(pool: Any) -> Any:
    """A connection from ``pool`` (``get_connection``, as the installed redis-py calls it)."""
    if _get_connection_wants_a_command_name():
        return pool.get_connection("_")  # redis-py before 5.3: required, and ignored
    return pool.get_connection()


@functools.cache
def _get_connection_wants_a_command_name() -> bool:
    """Whether the installed redis-py's ``get_connection`` requires ``command_name``."""
    from redis.connection import ConnectionPool

    # redis-py's own signature: a subclass of ours may take ``*args``.
    parameters = inspect.signature(ConnectionPool.get_connection).parameters
    command_name = parameters.get("command_name")
    return command_name is not None and command_name.default is inspect.Parameter.empty


def no_cluster_retries(client: Any) -> None:
    """Make a cluster client try each command once, as ``Retry(..., 0)`` does on redis-py 6+."""
    if hasattr(client, "cluster_error_retry_attempts"):
        client.cluster_error_retry_attempts = 0


def renew_cluster_locks(client: Any, new_lock: Any) -> None:
    """Give a cluster client (and its nodes manager) the locks ``new_lock()`` makes.

    Nothing for a standalone client, nor for locks this redis-py does not have.
    """
    manager = getattr(client, "nodes_manager", None)
    if manager is None or not hasattr(client, "_lock"):
        return
    lock = new_lock()
    client._lock = lock
    if hasattr(manager, "_lock"):
        manager._lock = lock
    if hasattr(manager, "_initialization_lock"):
        manager._initialization_lock = new_lock()
