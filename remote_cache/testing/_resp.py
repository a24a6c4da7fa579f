"""Requests in the Redis protocol (RESP) as a client sends them: split, named, keyed."""

from __future__ import annotations

__all__ = ["DATA_COMMANDS", "keys_of", "split_requests"]

DATA_COMMANDS = frozenset({"GET", "SET", "MGET", "MSET"})
"""The commands the Redis backend sends for its operations: what faults match on a server
layer (the handshake's commands, ``PING``, ``SELECT``... always go through)."""


def split_requests(data: bytes) -> tuple[list[tuple[list[bytes], bytes]], bytes]:
    """The complete requests at the start of ``data``, each as (its fields, its bytes), and
    the bytes left over (a request still arriving).

    A request is an array of bulk strings (``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``), as
    redis-py sends them; anything else (an inline command) is one request of the words of
    its line. ``ValueError`` for bytes no client sends (a negative length, a missing CRLF).
    """
    requests: list[tuple[list[bytes], bytes]] = []
    position = 0
    while position < len(data):
        parsed = _one_request(data, position)
        if parsed is None:
            break
        fields, end = parsed
        requests.append((fields, data[position:end]))
        position = end
    return requests, data[position:]


def _one_request(data: bytes, start: int) -> tuple[list[bytes], int] | None:
    """The request at ``start`` and where it ends, or None when it is not all there yet."""
    line_end = data.find(b"\r\n", start)
    if line_end < 0:
        return None
    if data[start : start + 1] != b"*":
        return data[start:line_end].split(), line_end + 2  # an inline command
    count = _length(data[start + 1 : line_end])
    position, fields = line_end + 2, []
    for _ in range(count):
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        if data[position : position + 1] != b"$":
            found = data[position : position + 1]
            raise ValueError(f"expected a bulk string at byte {position}, got {found!r}")
        size = _length(data[position + 1 : line_end])
        value_start, value_end = line_end + 2, line_end + 2 + size
        if len(data) < value_end + 2:
            return None
        if data[value_end : value_end + 2] != b"\r\n":
            raise ValueError(f"a bulk string of {size} bytes at byte {value_start} lacks its CRLF")
        fields.append(data[value_start:value_end])
        position = value_end + 2
    return fields, position


def _length(text: bytes) -> int:
    if not text.isdigit():
        raise ValueError(f"expected a length, got {text[:20]!r}")
    return int(text)


def keys_of(command: str, fields: list[bytes]) -> list[str]:
    """The keys a data command names (``GET k``, ``SET k v ...``, ``MGET k...``,
    ``MSET k v...``), decoded as the backend encoded them (UTF-8); none for other commands."""
    arguments = fields[1:]
    if command in ("GET", "SET"):
        names = arguments[:1]
    elif command == "MGET":
        names = arguments
    elif command == "MSET":
        names = arguments[::2]
    else:
        names = []
    return [name.decode("utf-8", "surrogatepass") for name in names]
