"""Requests in the Redis protocol (RESP) as a client sends them: split, named, keyed."""

from __future__ import annotations

__all__ = ["DATA_COMMANDS", "is_push", "keys_of", "reply_end", "split_requests"]

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


_MAX_DIGITS = 11
"""The longest length or count a header may carry: a stream whose header runs on past this
without its CRLF is not RESP, and is refused at once rather than waited for."""


def _header_end(data: bytes, start: int, *, signed: bool = False) -> int | None:
    """Where the header line at ``start`` (a type byte, then digits) ends, or None while it
    is still arriving; ``ValueError`` as soon as the bytes cannot be one."""
    limit = start + _MAX_DIGITS + 4  # the type byte, a sign, the digits, CRLF
    line_end = data.find(b"\r\n", start, limit)
    digits = data[start + 1 : line_end] if line_end >= 0 else data[start + 1 : limit]
    if signed and digits.startswith(b"-"):
        digits = digits[1:]
    if line_end < 0:
        if len(data) >= limit:
            raise ValueError(f"no RESP header at byte {start}: {data[start:limit]!r}")
        digits = digits.removesuffix(b"\r")  # the CRLF may be arriving in two parts
    if digits and not digits.isdigit():
        raise ValueError(f"not a RESP header at byte {start}: {data[start : start + 16]!r}")
    return line_end if line_end >= 0 else None


def _one_request(data: bytes, start: int) -> tuple[list[bytes], int] | None:
    """The request at ``start`` and where it ends, or None when it is not all there yet."""
    if data[start : start + 1] != b"*":
        line_end = data.find(b"\r\n", start)
        if line_end < 0:
            return None
        return data[start:line_end].split(), line_end + 2  # an inline command
    header_end = _header_end(data, start)
    if header_end is None:
        return None
    count = _length(data[start + 1 : header_end])
    position, fields = header_end + 2, []
    for _ in range(count):
        if position >= len(data):
            return None
        if data[position : position + 1] != b"$":
            found = data[position : position + 1]
            raise ValueError(f"expected a bulk string at byte {position}, got {found!r}")
        bulk_end = _header_end(data, position)
        if bulk_end is None:
            return None
        size = _length(data[position + 1 : bulk_end])
        value_start, value_end = bulk_end + 2, bulk_end + 2 + size
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


_LINE_TYPES = frozenset(b"+-:_,#(")
"""Reply types that are one line: simple string, error, integer, and RESP3's null, double,
boolean and big number."""
_MAX_LINE = 65536
"""The longest one-line reply read (a server's error lines are far shorter)."""
_LENGTH_TYPES = frozenset(b"$!=")
"""Reply types of a length and that many bytes: bulk string, RESP3's bulk error, verbatim."""
_COUNT_TYPES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}
"""Aggregate reply types and how many replies each counted element is: array, set, push
(one), map and attribute (two: a key and a value)."""


def reply_end(data: bytes, start: int = 0) -> int | None:
    """Where the reply starting at ``start`` ends (RESP2 or RESP3), or None when it has not
    all arrived. An attribute (``|``) counts with the reply it annotates. ``ValueError`` for
    bytes that are no reply."""
    kind = data[start]
    if kind in _LINE_TYPES:
        line_end = data.find(b"\r\n", start, start + _MAX_LINE)
        if line_end < 0:
            if len(data) - start >= _MAX_LINE:
                raise ValueError(f"a reply line of over {_MAX_LINE} bytes at byte {start}")
            return None
        return line_end + 2
    if kind not in _LENGTH_TYPES and kind not in _COUNT_TYPES:
        raise ValueError(f"not a reply: type byte {bytes([kind])!r} at {start}")
    header_end = _header_end(data, start, signed=True)
    if header_end is None:
        return None
    after = header_end + 2
    if kind in _LENGTH_TYPES:
        size = _signed(data[start + 1 : header_end])
        if size < 0:
            return after  # a null bulk string
        end = after + size + 2
        return end if len(data) >= end else None
    if kind in _COUNT_TYPES:
        count = _signed(data[start + 1 : header_end])
        position = after
        for _ in range(max(count, 0) * _COUNT_TYPES[kind]):
            if position >= len(data):
                return None
            element_end = reply_end(data, position)
            if element_end is None:
                return None
            position = element_end
        if kind == ord("|"):  # the attribute's reply follows it
            return reply_end(data, position) if position < len(data) else None
        return position
    raise AssertionError("unreachable: every type is handled above")  # pragma: no cover


def is_push(data: bytes, start: int = 0) -> bool:
    """Whether the reply at ``start`` is a RESP3 push (out of band: it answers no request)."""
    return data[start : start + 1] == b">"


def _signed(text: bytes) -> int:
    if not text.lstrip(b"-").isdigit():
        raise ValueError(f"expected a length, got {text[:20]!r}")
    return int(text)
