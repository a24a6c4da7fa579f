"""The Redis backend's error mapping: redis-py (and socket) exceptions to our ``BackendError``s.

Also where redis-py is imported from (``import_redis``), and what to install when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from remote_cache._guard import ReenteredError
from remote_cache._settings import scrub
from remote_cache.exceptions import (
    BackendCommandError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["INSTALL_HINT", "import_redis", "translate_redis_error"]

INSTALL_HINT = "pip install 'remote-cache[redis]'"


def import_redis() -> ModuleType:
    """Import redis-py, or raise ``MissingDependencyError`` saying what to install."""
    try:
        import redis
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Redis backend needs redis-py, which is not installed: {INSTALL_HINT}"
        ) from exc
    return redis


def translate_redis_error(
    exc: BaseException,
    *,
    backend: str,
    operation: str,
    key: str | None = None,
    secrets: list[str] | tuple[str, ...] = (),
) -> BackendError | None:
    """Map a redis-py (or socket) exception to our most specific ``BackendError``.

    Transport failures (refused, reset, timeout, TLS, authentication, cluster down) become
    ``BackendUnavailableError`` (``BackendTimeoutError`` for timeouts); errors the server
    answered a command with (OOM, READONLY, WRONGTYPE, NOPERM) become
    ``BackendCommandError``. A limit of this process, not the server's, is neither: a pool
    with every connection in use (``MaxConnectionsError``), a call re-entering the thread's
    own client build (``ReenteredError``), a stack too deep to make the call (deep recursion,
    nested signal handlers: ``RecursionError``) give a plain ``BackendError``, which opens no
    breaker.
    Returns None for anything else, which is a bug to re-raise.
    """
    import redis.exceptions as rexc

    message = scrub(f"{backend}: {type(exc).__name__}: {exc}", secrets)
    error_class: type[BackendError]
    if isinstance(exc, (rexc.MaxConnectionsError, ReenteredError, RecursionError)):
        error_class = BackendError  # a limit of our own process, not the server's
    elif isinstance(exc, (rexc.TimeoutError, TimeoutError)):
        error_class = BackendTimeoutError
    elif isinstance(exc, rexc.AuthenticationWrongNumberOfArgsError):
        error_class = BackendUnavailableError
    elif isinstance(
        exc,
        (
            rexc.ConnectionError,
            rexc.ClusterError,
            rexc.RedisClusterException,
            rexc.InvalidResponse,
            OSError,
        ),
    ):
        # ClusterDownError is also a ResponseError, so the cluster test comes first.
        error_class = BackendUnavailableError
    elif isinstance(exc, rexc.RedisError):
        error_class = BackendCommandError
    else:
        return None
    return error_class(message, backend=backend, operation=operation, key=key)


def _protocol_error(
    exc: Exception,
    *,
    backend: str,
    operation: str,
    key: str | None = None,
    secrets: list[str] | tuple[str, ...] = (),
) -> BackendUnavailableError:
    """A failure ``translate_redis_error`` does not know, as a protocol error.

    A reply of the wrong shape (``_BadReply``), or any exception raised inside the client
    while it parsed one (``AttributeError``, ``ValueError``...): the server does not speak
    Redis, which is a transport failure, so it opens the breaker.
    """
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    message = scrub(f"{backend}: protocol error: {type(exc).__name__}: {text}", secrets)
    return BackendUnavailableError(message, backend=backend, operation=operation, key=key)
