"""Exceptions raised by remote_cache.

The tree::

    RemoteCacheError
    ├── ConfigurationError          (also ValueError) a bad setting or argument value
    ├── MissingDependencyError      (also ImportError) an optional package is not installed
    ├── ValueTooLargeError          (also ValueError) a value over max_value_bytes, not stored
    └── BackendError                a backend call failed
        ├── BackendUnavailableError (also ConnectionError) the server cannot be reached
        │   ├── BackendTimeoutError (also TimeoutError) no answer within the timeout
        │   └── CircuitOpenError    skipped: the circuit breaker is open
        └── BackendCommandError     the server answered the command with an error

Caches that fail open (``RedisRemoteCache``, ``LocalCache`` and their subclasses) catch
``BackendError``: a get becomes a miss and a put is dropped, both counted in ``cache_stats``.
A plain ``RemoteCache`` re-raises, as upstream does.
"""

from __future__ import annotations

__all__ = [
    "BackendCommandError",
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CircuitOpenError",
    "ConfigurationError",
    "MissingDependencyError",
    "RemoteCacheError",
    "ValueTooLargeError",
]


class RemoteCacheError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(RemoteCacheError, ValueError):
    """A setting (constructor argument or environment variable) has a bad value.

    ``name`` is the argument or variable, ``value`` the rejected value (passwords are
    never put here).
    """

    def __init__(self, message: str, *, name: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.name = name
        self.value = value


class MissingDependencyError(RemoteCacheError, ImportError):
    """An optional dependency is needed but not installed; the message names the extra."""


class ValueTooLargeError(RemoteCacheError, ValueError):
    """A value encodes to more than the cache's ``max_value_bytes``; nothing was written.

    ``size`` is the encoded size, ``limit`` the limit, ``key`` the key.
    """

    def __init__(self, message: str, *, key: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.key = key
        self.size = size
        self.limit = limit


class BackendError(RemoteCacheError):
    """A backend call failed.

    ``backend`` describes the backend (never with a password), ``operation`` is the call
    (``"get"``, ``"put"``, ``"get_many"``, ``"put_many"``) and ``key`` the key when there
    is one.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        operation: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.operation = operation
        self.key = key


class BackendUnavailableError(BackendError, ConnectionError):
    """The backend cannot be reached: refused, reset, timed out, TLS or authentication failed.

    It is a built-in ``ConnectionError`` too, so ``except ConnectionError`` catches real and
    simulated outages alike.
    """


class BackendTimeoutError(BackendUnavailableError, TimeoutError):
    """The backend did not answer within the configured timeout."""


class CircuitOpenError(BackendUnavailableError):
    """The call was skipped without touching the network: the circuit breaker is open."""


class BackendCommandError(BackendError):
    """The server is alive but refused the command (out of memory, read-only, wrong type)."""
