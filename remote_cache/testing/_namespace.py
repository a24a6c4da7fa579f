"""A shared server's keys under a per-test prefix: the isolation of ``remote_cache_redis``
on a server the plugin does not own (``--remote-cache-redis-url``).

``KeyNamespace`` rewrites the keys of every redis-py command (their positions from the
server's ``COMMAND`` table) and takes the prefix off replies; ``NamespacedClient`` and
``NamespacedPipeline`` are redis-py clients that run inside one.
"""

from __future__ import annotations

import inspect
import itertools
import os
import types
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["KeyNamespace", "NamespacedClient", "NamespacedPipeline", "unique_key_prefix"]

_session_token = uuid.uuid4().hex[:12]
_test_numbers = itertools.count(1)


def unique_key_prefix() -> str:
    """A key prefix unique to this test, run and xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"remote-cache-test:{_session_token}:{worker}:{next(_test_numbers)}:"


_COMMAND_TABLES: dict[str, dict[str, tuple[int, int, int, bool]]] = {}
"""Each server's key positions per command (``COMMAND``), fetched once per process."""


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    return str(value).encode()


class KeyNamespace:
    """Put every key of every redis-py command under ``prefix``, and take it off replies.

    The isolation of ``remote_cache_redis`` on a server the plugin does not own: each test
    gets its own prefix, so runs, xdist workers and tests sharing one server never see each
    other's keys, and ``cleanup()`` deletes exactly what the test wrote. Key positions come
    from the server's ``COMMAND`` table (``COMMAND GETKEYS`` for commands with movable keys);
    ``KEYS``, ``SCAN``, ``RANDOMKEY``, ``DBSIZE``, ``FLUSHDB`` and ``FLUSHALL`` act on the
    prefix only. Scripts see prefixed key names.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        """A plain client of the server: key positions, clean-up."""
        self.prefix = prefix.encode()

    def _positions(self, name: str) -> tuple[int, int, int, bool]:
        where = self.client.connection_pool.connection_kwargs
        identity = f"{where.get('host')}:{where.get('port')}:{where.get('path')}"
        table = _COMMAND_TABLES.get(identity)
        if table is None:
            table = {}
            for command, info in self.client.command().items():
                table[command.upper()] = (
                    info["first_key_pos"],
                    info["last_key_pos"],
                    info["step_count"],
                    "movablekeys" in info["flags"],
                )
            _COMMAND_TABLES[identity] = table
        return table.get(name, (0, 0, 0, False))

    def _indexes_from_the_server(self, words: list[str], args: tuple[Any, ...]) -> list[int]:
        """Where ``COMMAND GETKEYS`` says the keys are (none when it says there are none)."""
        import redis

        try:
            keys = self.client.execute_command("COMMAND GETKEYS", *words, *args[1:])
        except redis.ResponseError:  # "The command has no key arguments", or no such command
            return []
        wanted = [_as_bytes(key) for key in keys]
        indexes = []
        for index in range(1, len(args)):
            if wanted and _as_bytes(args[index]) == wanted[0]:
                indexes.append(index)
                wanted.pop(0)
        return indexes

    def _key_indexes(self, args: tuple[Any, ...]) -> list[int]:
        words = _as_bytes(args[0]).decode().upper().split()
        name, extra = words[0], len(words) - 1
        first, last, step, movable = self._positions(name)
        if movable or (first <= 0 and len(args) + extra > 1):
            # Movable keys, or a container command (OBJECT, MEMORY, XINFO, ...): the table
            # has no positions for its subcommands, the server knows them.
            return self._indexes_from_the_server(words, args)
        if first <= 0:
            return []
        count = len(args) + extra  # positions count the words of the command name
        last = count + last if last < 0 else last
        positions = range(first - extra, last - extra + 1, max(step, 1))
        return [index for index in positions if 0 < index < len(args)]

    def key(self, key: Any) -> bytes:
        """``key`` under the prefix."""
        return self.prefix + _as_bytes(key)

    def strip(self, key: Any) -> Any:
        """``key`` without the prefix (as str if it came as str)."""
        raw = _as_bytes(key)
        if not raw.startswith(self.prefix):
            return key
        stripped = raw[len(self.prefix) :]
        return stripped.decode() if isinstance(key, str) else stripped

    def pattern(self, pattern: Any) -> bytes:
        """A glob ``pattern`` under the prefix (the prefix's own glob characters escaped)."""
        special = b"*?[]\\"
        escaped = b"".join(b"\\" * (c in special) + bytes([c]) for c in self.prefix)
        return escaped + _as_bytes(pattern)

    def own_keys(self) -> list[bytes]:
        """Every key under the prefix (SCAN, never KEYS)."""
        return list(self.client.scan_iter(match=self.pattern(b"*"), count=1000))

    def cleanup(self) -> int:
        """Delete every key under the prefix; return how many."""
        keys = self.own_keys()
        for start in range(0, len(keys), 500):
            self.client.delete(*keys[start : start + 500])
        return len(keys)

    def rewrite(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The command ``args`` with their keys under the prefix."""
        name = _as_bytes(args[0]).decode().upper()
        if name in ("KEYS",) and len(args) > 1:
            return (args[0], self.pattern(args[1]), *args[2:])
        if name == "SCAN":
            rest = list(args[1:])
            words = [_as_bytes(a).upper() if isinstance(a, (str, bytes)) else b"" for a in rest]
            if b"MATCH" in words:  # redis-py sends it as bytes, a user may send str
                at = words.index(b"MATCH") + 1
                rest[at] = self.pattern(rest[at])
            else:
                rest += ["MATCH", self.pattern(b"*")]
            return (args[0], *rest)
        indexes = self._key_indexes(args)
        if not indexes:
            return args
        changed = list(args)
        for index in indexes:
            changed[index] = self.key(changed[index])
        return tuple(changed)

    def execute(self, execute: Callable[..., Any], args: tuple[Any, ...], options: Any) -> Any:
        """Run one command through ``execute`` inside the namespace."""
        name = _as_bytes(args[0]).decode().upper()
        if name in ("FLUSHDB", "FLUSHALL"):
            self.cleanup()
            return True
        if name == "DBSIZE":
            return len(self.own_keys())
        options.pop("keys", None)  # client-side caching hints, in the caller's key names
        result = execute(*self.rewrite(args), **options)
        if name == "KEYS":
            return [self.strip(key) for key in result]
        if name == "SCAN":
            cursor, keys = result
            return cursor, [self.strip(key) for key in keys]
        if name == "RANDOMKEY":
            keys = self.own_keys()
            return self.strip(keys[0]) if keys else None
        return result


def _bind(owner: Any, cls: type, name: str) -> Any:
    attribute = inspect.getattr_static(cls, name, None)
    if inspect.isfunction(attribute):
        return types.MethodType(attribute, owner)  # runs with the owner's execute_command
    return None


class NamespacedPipeline:
    """A redis-py pipeline whose commands run inside a ``KeyNamespace``."""

    def __init__(self, pipeline: Any, namespace: KeyNamespace) -> None:
        self._pipeline = pipeline
        self._namespace = namespace

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Queue one command, its keys under the prefix."""
        options.pop("keys", None)
        self._pipeline.execute_command(*self._namespace.rewrite(args), **options)
        return self

    def execute(self, raise_on_error: bool = True) -> Any:
        """Send the queued commands."""
        return self._pipeline.execute(raise_on_error=raise_on_error)

    def __enter__(self) -> NamespacedPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pipeline.reset()

    def __getattr__(self, name: str) -> Any:
        return _bind(self, type(self._pipeline), name) or getattr(self._pipeline, name)


class NamespacedClient:
    """A redis-py client whose every command runs inside a ``KeyNamespace``."""

    def __init__(self, client: Any, namespace: KeyNamespace) -> None:
        self._client = client
        self._namespace = namespace

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command, its keys under the prefix."""
        return self._namespace.execute(self._client.execute_command, args, options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> NamespacedPipeline:
        """A pipeline inside the same namespace."""
        return NamespacedPipeline(self._client.pipeline(transaction, shard_hint), self._namespace)

    def close(self) -> None:
        """Close the underlying client."""
        self._client.close()

    def __getattr__(self, name: str) -> Any:
        return _bind(self, type(self._client), name) or getattr(self._client, name)
