"""``check_failures``: a backend whose store cannot be reached fails every call loudly.

The contract says a backend's failures raise ``BackendError`` subclasses: the caches count
them, fail open and log once; anything else is a bug in the caller's eyes (a builtin
``OSError`` or a driver's error escapes the cache's fail-open path), and a miss returned for
an unreachable store hides the outage from every counter. The backend's author says how to
reach its store broken (``make_broken_backend``: a backend pointed at a folder that is a
file, a closed database, an address where nothing listens); each operation must then raise a
``BackendError`` subclass within the call deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remote_cache import RemoteCacheBackend
from remote_cache.exceptions import BackendError
from remote_cache.testing._call_deadline import CallOverdue, bounded, overdue_message
from remote_cache.testing.conformance._diagnostics import (
    _bounded,
    _describe,
    _name,
    _violation,
)
from remote_cache.testing.conformance._probe import BackendFactory

__all__ = ["check_failures", "no_broken_store_note"]

_REPLAY = "check_failures(make_broken_backend) (deterministic)"

_CALLS: list[tuple[str, Callable[[RemoteCacheBackend[Any]], Any]]] = [
    ("get('failure-a')", lambda backend: backend.get("failure-a")),
    ("put('failure-a', 5 bytes)", lambda backend: backend.put("failure-a", b"value")),
    ("get_many(['failure-a', 'failure-b'])", lambda b: b.get_many(["failure-a", "failure-b"])),
    ("put_many({'failure-a': 5 bytes, 'failure-b': 5 bytes})",
     lambda b: b.put_many({"failure-a": b"value", "failure-b": b"value"})),
]  # fmt: skip


def no_broken_store_note(make_backend: object) -> str:
    """What the suite says when the backend offers no broken store."""
    name = getattr(make_backend, "__name__", type(make_backend).__name__)
    return (
        f"{name}: check_failures not run: no make_broken_backend given, so nothing checked "
        "that the backend's failures raise BackendError subclasses (pass "
        "make_broken_backend=, a factory of a backend whose store cannot be reached)"
    )


def check_failures(make_broken_backend: BackendFactory) -> None:
    """Every operation of a backend whose store cannot be reached raises a ``BackendError``
    subclass, within the call deadline: not a builtin or driver error, not a
    ``BaseException``, not a value (a miss would hide the outage from every counter)."""
    for operation, call in _CALLS:
        try:
            backend = make_broken_backend()
        except BackendError:
            return  # it reaches its store when built, and says so as it should
        except Exception as exc:
            raise AssertionError(
                f"check_failures: make_broken_backend() raised {type(exc).__name__}: "
                f"{_bounded(str(exc))}: a backend that reaches its store when built must "
                f"raise a BackendError subclass too\n  replay:   {_REPLAY}"
            ) from exc
        _expect_failure(backend, operation, call)


def _expect_failure(
    backend: RemoteCacheBackend[Any],
    operation: str,
    call: Callable[[RemoteCacheBackend[Any]], Any],
) -> None:
    expected = "a BackendError subclass raised (the caches count it and fail open)"
    try:
        with bounded(f"{_name(backend)}: check_failures: {operation} on a broken store"):
            result = call(backend)
    except BackendError:
        return
    except CallOverdue as exc:
        raise AssertionError(f"{overdue_message(exc)}\n  replay:   {_REPLAY}") from None
    except Exception as exc:
        raise _violation(
            backend,
            "check_failures",
            f"{operation} on a store that cannot be reached",
            expected=expected,
            actual=f"{type(exc).__name__}: {_bounded(str(exc))}",
            note=(
                "translate the store's errors: raise BackendUnavailableError(...) from exc "
                "(a builtin or driver error escapes the caches' fail-open path)"
            ),
            replay=_REPLAY,
        ) from exc
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise _violation(
            backend,
            "check_failures",
            f"{operation} on a store that cannot be reached",
            expected=expected,
            actual=f"{type(exc).__name__}, a BaseException: {_bounded(str(exc))}",
            note="a backend's failures are Exceptions (BackendError subclasses), never "
            "BaseExceptions, which pass every handler and end the caller's program",
            replay=_REPLAY,
        ) from exc
    answer = "the write acknowledged" if operation.startswith("put") else _describe(result)
    raise _violation(
        backend,
        "check_failures",
        f"{operation} on a store that cannot be reached",
        expected=expected,
        actual=f"no error: {answer}",
        note="a backend that answers for a store it cannot reach hides the outage: the "
        "caches count a miss (or a put) that never happened, and log nothing",
        replay=_REPLAY,
    )
