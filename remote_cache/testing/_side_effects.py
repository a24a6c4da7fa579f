"""What a simulated failure raises: the ``SideEffect`` vocabulary the fake backends share.

``FailingBackend`` (``_backends``) and ``FaultInjectingBackend`` (``_fault_injection``) turn a
``SideEffect`` into the exception they raise here, and fail with a simulated outage by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from remote_cache import BackendUnavailableError

__all__ = ["OPERATIONS", "SideEffect"]

OPERATIONS = ("get", "put", "get_many", "put_many")

SideEffect = BaseException | type[BaseException] | Callable[[str, Any], BaseException]
"""What a failure raises, with ``unittest.mock``'s meaning: an exception, an exception type
(called with a message), or a callable ``(operation, key)`` returning the exception."""


def _make_error(side_effect: SideEffect, operation: str, key: Any) -> BaseException:
    if isinstance(side_effect, BaseException):
        return side_effect
    if isinstance(side_effect, type) and issubclass(side_effect, BaseException):
        return side_effect(f"simulated failure of {operation}")
    if callable(side_effect):
        make_error = cast(Callable[[str, Any], BaseException], side_effect)
        return make_error(operation, key)
    raise TypeError(f"Expected an exception, exception type or callable but got {side_effect!r}")


def _raise(side_effect: SideEffect, operation: str, key: Any) -> None:
    raise _make_error(side_effect, operation, key)


def _simulated_outage(operation: str, key: Any) -> BaseException:
    return BackendUnavailableError(
        f"simulated outage: {operation} failed", backend="simulated", operation=operation,
        key=key if isinstance(key, str) else None,
    )  # fmt: skip
