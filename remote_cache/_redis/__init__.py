"""The Redis backend: the only production package that imports redis-py, and only when used.

Its modules, lowest first:

- ``internals``: every redis-py internal relied on, what is assumed of each, and why.
- ``errors``: importing redis-py, and mapping its exceptions to our ``BackendError``s.
- ``deadline``: the deadline of a backend call, and the socket that keeps it.
- ``connections``: redis-py connection and pool classes that keep the deadline.
- ``clients``: building clients, one shared per server and timeout, and fork handling.
- ``replies``: checks that a reply has the shape Redis sends.
- ``cluster``: batches on a Redis Cluster, one round trip for all masters.
- ``backend``: ``RedisRemoteCacheBackend``.
"""

from __future__ import annotations

from remote_cache._redis.backend import RedisRemoteCacheBackend
from remote_cache._redis.clients import build_client, close_shared_clients
from remote_cache._redis.errors import INSTALL_HINT, import_redis, translate_redis_error

__all__ = [
    "INSTALL_HINT",
    "RedisRemoteCacheBackend",
    "build_client",
    "close_shared_clients",
    "import_redis",
    "translate_redis_error",
]
