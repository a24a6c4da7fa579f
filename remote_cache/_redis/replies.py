"""Checks that a reply has the shape Redis sends for the command (``_BadReply`` if not)."""

from __future__ import annotations

from collections.abc import Sized


class _BadReply(Exception):
    """A reply of a shape no Redis server sends for the command: the server speaks garbage."""


def _shown(reply: object) -> str:
    """A short description of a reply, for messages (a reply may be a whole HTML page)."""
    text = repr(reply)
    return f"{type(reply).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _raise_error_reply(reply: object) -> None:
    """Raise an error reply redis-py hands back as a value instead of raising it.

    redis-py raises error replies that map to a ``ResponseError``; the others (a
    ``-ERR max number of clients reached`` is a ``ConnectionError``) come back as the reply.
    """
    if isinstance(reply, Exception):
        raise reply


def _value_reply(reply: object) -> bytes | None:
    """The reply to GET: bytes or None, else ``_BadReply``."""
    if reply is None or isinstance(reply, bytes):
        return reply
    _raise_error_reply(reply)
    raise _BadReply(f"GET answered {_shown(reply)}")


def _values_reply(reply: object, names: Sized) -> list[bytes | None]:
    """The reply to MGET of ``names``: one bytes or None per key, else ``_BadReply``."""
    _raise_error_reply(reply)
    if not isinstance(reply, list) or len(reply) != len(names):
        raise _BadReply(f"MGET of {len(names)} keys answered {_shown(reply)}")
    for value in reply:
        _value_reply(value)
    return reply


def _ok_reply(reply: object) -> None:
    """Check the reply to SET or MSET: OK (redis-py makes it True), else ``_BadReply``."""
    if reply is not True and reply not in (b"OK", "OK"):
        _raise_error_reply(reply)
        raise _BadReply(f"a write answered {_shown(reply)}, not OK")


def _oks_reply(replies: object, names: Sized) -> None:
    """Check the replies to a batch of SETs: one OK per key, else ``_BadReply``."""
    _raise_error_reply(replies)
    if not isinstance(replies, list) or len(replies) != len(names):
        raise _BadReply(f"{len(names)} writes answered {_shown(replies)}")
    for reply in replies:
        _ok_reply(reply)
