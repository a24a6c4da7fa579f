"""Serdes: convert between what a cache stores and what its backend keeps."""

from __future__ import annotations

import json
from abc import abstractmethod
from typing import Generic, TypeAlias, TypeVar

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


class RemoteCacheJsonSerde(RemoteCacheSerde[JsonDataTy, bytes]):
    """JSON as upstream writes it: ``bytes(json.dumps(value), "ascii")``.

    ``encode`` raises ``TypeError`` for anything JSON cannot express (sets, bytes,
    objects, circular structures). NaN and the infinities are written as Python's json
    writes them (``NaN``, ``Infinity``), so upstream readers read them back unchanged.
    ``decode`` raises ``ValueError`` (``json.JSONDecodeError`` or ``UnicodeDecodeError``)
    for bytes that are not JSON.
    """

    def encode(self, data: JsonDataTy) -> bytes:
        """Return the ASCII JSON bytes of ``data``."""
        try:
            return json.dumps(data).encode("ascii")
        except ValueError as exc:  # circular reference: a value JSON cannot express
            raise TypeError(f"value cannot be encoded as JSON: {exc}") from exc

    def decode(self, data: bytes) -> JsonDataTy:
        """Parse JSON ``data``."""
        return json.loads(data)  # type: ignore[no-any-return]


class RemoteCachePassthroughSerde(RemoteCacheSerde[_T, _T]):
    """Hands values to the backend unchanged."""

    def encode(self, data: _T) -> _T:
        """Return ``data`` itself."""
        return data

    def decode(self, data: _T) -> _T:
        """Return ``data`` itself."""
        return data
