"""Serdes: convert between what a cache stores and what its backend keeps."""

from __future__ import annotations

import json
import json.encoder
from abc import abstractmethod
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = [
    "JsonDataTy",
    "RemoteCacheJsonSerde",
    "RemoteCachePassthroughSerde",
    "RemoteCacheSerde",
]

_T = TypeVar("_T")
_U = TypeVar("_U")

JsonDataTy: TypeAlias = (
    int | float | str | bool | dict[str, "JsonDataTy"] | list["JsonDataTy"] | None
)
"""A JSON value as ``json.loads`` returns it."""


class RemoteCacheSerde(Generic[_T, _U]):
    """Encodes ``_T`` values into ``_U`` for a backend and decodes them back."""

    @abstractmethod
    def encode(self, data: _T) -> _U:
        """Return the backend form of ``data``."""

    @abstractmethod
    def decode(self, data: _U) -> _T:
        """Return the value that ``data`` (as the backend kept it) encodes."""


def _make_chunk_encoder() -> Any:
    """The C encoder ``json.dumps`` builds on every call, built once: same bytes, half the time.

    It is made exactly as ``json.dumps`` makes it with default arguments, except that it
    does not track containers (``markers=None``): a circular value then ends in a
    RecursionError, and ``encode`` hands it to ``json.dumps`` for the proper error.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator: json.dumps it is
        return None
    return make(
        None,  # markers
        json.JSONEncoder().default,  # TypeError "Object of type X is not JSON serializable"
        json.encoder.encode_basestring_ascii,  # ensure_ascii=True
        None,  # indent
        ": ",  # key separator
        ", ",  # item separator
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )


_encode_chunks = _make_chunk_encoder()
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined] # set in __init__
_FAST_STARTS = frozenset(b'{["')  # ASCII, so never a BOM: json.loads would read UTF-8


class RemoteCacheJsonSerde(RemoteCacheSerde[JsonDataTy, bytes]):
    """JSON as upstream writes it: ``bytes(json.dumps(value), "ascii")``.

    ``encode`` raises ``TypeError`` for every value it cannot write: sets, bytes, objects,
    dict keys other than str, int, float, bool and None, circular structures, nesting deeper
    than the interpreter's recursion limit allows, and ints longer than
    ``sys.get_int_max_str_digits()``. Keys of those other types are written as ``json.dumps``
    writes them (``{1: 2}`` as ``{"1": 2}``), as upstream does. NaN and the infinities are
    written as Python's json writes them (``NaN``, ``Infinity``), so upstream readers read
    them back unchanged. ``decode`` raises ``ValueError`` for bytes it cannot read back: not
    JSON (``json.JSONDecodeError``), not UTF-8 (``UnicodeDecodeError``), nested too deep, or
    holding an int too long to convert.
    """

    def encode(self, data: JsonDataTy) -> bytes:
        """Return the ASCII JSON bytes of ``data``; ``TypeError`` when it has none."""
        try:
            if _encode_chunks is not None:
                try:
                    return "".join(_encode_chunks(data, 0)).encode("ascii")
                except RecursionError:
                    pass  # circular, or nested too deep: json.dumps tells which
            return json.dumps(data).encode("ascii")
        except ValueError as exc:  # circular, or an int too long for str()
            raise TypeError(f"value cannot be encoded as JSON: {exc}") from exc
        except RecursionError as exc:  # caught where the stack has room again
            raise TypeError(f"value cannot be encoded as JSON: nested too deep ({exc})") from exc

    def decode(self, data: bytes) -> JsonDataTy:
        """Parse JSON ``data`` as ``json.loads`` does; ``ValueError`` when it cannot."""
        # The common case, an object, array or string starting at byte 0, skips json.loads'
        # encoding sniffing and whitespace regexes. Anything else, or anything that does not
        # parse to the last byte, goes to json.loads, which decides (and raises) as always.
        try:
            if data and data[0] in _FAST_STARTS and (len(data) < 2 or data[1]):
                try:
                    text = data.decode("utf-8", "surrogatepass")
                    value, end = _scan_once(text, 0)
                except (StopIteration, ValueError, RecursionError):
                    pass
                else:
                    if end == len(text):
                        return value  # type: ignore[no-any-return]
            return json.loads(data)  # type: ignore[no-any-return]
        except RecursionError as exc:  # caught where the stack has room again
            raise ValueError(f"JSON nested too deep to decode ({exc})") from exc


class RemoteCachePassthroughSerde(RemoteCacheSerde[_T, _T]):
    """Hands values to the backend unchanged."""

    def encode(self, data: _T) -> _T:
        """Return ``data`` itself."""
        return data

    def decode(self, data: _T) -> _T:
        """Return ``data`` itself."""
        return data
