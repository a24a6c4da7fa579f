"""Failure messages of the conformance checks: what failed, where, what was expected, how to replay.

Every check raises the ``AssertionError`` built here, so the messages read alike: the
backend's class, the check, the first failing operation, the key (shortened when long,
escaped when its Unicode is decomposed), what was expected and what came back, a note on the
likely cause, and how to replay the run.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

from remote_cache import RemoteCacheBackend
from remote_cache.testing._call_deadline import bounded

_R = TypeVar("_R")


def _utf8(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def _short(key: object) -> str:
    """``key`` as ``repr``, shortened when long, with its length."""
    if not isinstance(key, str):
        return repr(key)
    # Decomposed text looks like its composed twin: escape it so the two read differently.
    show = ascii if unicodedata.normalize("NFC", key) != key else repr
    if len(key) <= 40:
        return show(key)
    return f"{show(key[:20])}…{show(key[-8:])} ({len(key):,} characters, {len(_utf8(key)):,} bytes)"


def _preview(data: bytes) -> str:
    return repr(data) if len(data) <= 24 else f"{data[:16]!r}…{data[-4:]!r}"


def _describe(value: object) -> str:
    """A value as a failure message shows it: its type when not bytes, its size, its start."""
    if value is None:
        return "None (a miss)"
    if isinstance(value, bytes):
        return f"{len(value):,} bytes {_preview(value)}"
    if isinstance(value, (bytearray, memoryview)):
        raw = bytes(value)
        return f"a {type(value).__name__} (not bytes) of {len(raw):,} bytes {_preview(raw)}"
    if isinstance(value, str):
        return f"a str (not bytes) of {len(value):,} characters {value[:24]!r}"
    if isinstance(value, dict):
        items = list(value.items())
        shown = ", ".join(f"{_short(k)}: {_describe(v)}" for k, v in items[:6])
        more = f", … {len(items) - 6} more" if len(items) > 6 else ""
        return f"{{{shown}{more}}}"
    return f"a {type(value).__name__} {value!r:.60}"


def _name(backend: object) -> str:
    return type(backend).__name__ if isinstance(backend, RemoteCacheBackend) else repr(backend)


def _violation(
    backend: object,
    check: str,
    operation: str,
    *,
    expected: str,
    actual: str,
    replay: str,
    key: str | None = None,
    note: str | None = None,
) -> AssertionError:
    """The failure message every check raises: what, where, expected, actual, how to replay."""
    lines = [f"{_name(backend)}: {check}: {operation}"]
    if key is not None:
        lines.append(f"  key:      {_short(key)}")
    lines.append(f"  expected: {expected}")
    lines.append(f"  actual:   {actual}")
    if note:
        lines.append(f"  {note}")
    lines.append(f"  replay:   {replay}")
    return AssertionError("\n".join(lines))


def _fail(backend: RemoteCacheBackend[Any], message: str) -> None:
    raise AssertionError(f"{type(backend).__name__}: {message}")


def _crash(backend: object, during: str, exc: BaseException) -> AssertionError:
    """A backend that raises on valid input violates the contract; say where."""
    return AssertionError(f"{_name(backend)}: {during} raised {_raised(exc)}")


def _bounded(text: str, most: int = 300) -> str:
    """``text``, cut to ``most`` characters (an error may carry a whole page)."""
    return text if len(text) <= most else f"{text[:most]}… ({len(text):,} characters)"


def _hint(exc: BaseException) -> str:
    """What to do about an error the checks know the usual cause of ("" for others)."""
    if isinstance(exc, UnicodeEncodeError) and "surrogate" in str(exc):
        return (
            "\n  note:     keys may hold lone surrogates (any str is a key): encode them with "
            'key.encode("utf-8", "surrogatepass") (see docs/backends.md, "Keys")'
        )
    return ""


def _raised(exc: BaseException) -> str:
    """What a backend raised, for a message: its class, its text cut short, a hint."""
    return f"{type(exc).__name__}: {_bounded(str(exc))}{_hint(exc)}"


def _call(
    backend: RemoteCacheBackend[Any], during: str, method: Callable[..., _R], *args: Any
) -> _R:
    try:
        with bounded(f"{_name(backend)}: {during}"):
            return method(*args)
    except (Exception, SystemExit) as exc:  # a backend's exit would end the run unsaid
        raise _crash(backend, during, exc) from exc


def _is(got: object, expected: bytes | None) -> bool:
    """``got`` is exactly ``expected``: None for None, else ``bytes`` (not a subclass) equal."""
    if expected is None:
        return got is None
    return type(got) is bytes and got == expected


def _deterministic(check: str) -> str:
    return f"{check}(make_backend) (deterministic: the same calls every run)"


def _exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
