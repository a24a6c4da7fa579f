"""Toxiproxy's toxics for ``OutageProxy``: how the bytes of one direction are shaped.

A ``Toxic`` is a setting of the proxy (``latency``, ``bandwidth``, ``slicer``, ``limit_data``
on one direction; ``timeout`` and ``reset_peer`` on the whole connection) with a toxicity:
the probability that it applies to a connection, drawn once per connection from a seeded
stream. ``shape`` turns one read of bytes into the pieces to send and when; the serving
thread (``_proxy_relay``) queues them, so a piece is never due before the one ahead of it.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

__all__ = [
    "DIRECTIONS",
    "Toxic",
    "at_rate",
    "check_direction",
    "check_number",
    "check_toxicity",
    "shape",
]

DIRECTIONS = ("upstream", "downstream")
"""Towards the server (the client's requests), towards the client (the server's replies)."""


def check_direction(direction: str) -> None:
    """``ValueError`` unless ``direction`` is ``"upstream"`` or ``"downstream"``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"Expected direction in {DIRECTIONS} but got direction={direction!r}")


def check_toxicity(toxicity: float) -> None:
    """``ValueError`` unless ``0 <= toxicity <= 1``."""
    if isinstance(toxicity, bool) or not isinstance(toxicity, int | float):
        raise ValueError(f"Expected 0 <= toxicity <= 1 but got toxicity={toxicity!r}")
    if not 0 <= toxicity <= 1:
        raise ValueError(f"Expected 0 <= toxicity <= 1 but got toxicity={toxicity!r}")


def check_number(name: str, value: Any, *, positive: bool = False) -> None:
    """``ValueError`` unless ``value`` is a finite number, at least 0 (above 0: ``positive``)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"Expected finite {name} {bound} but got {name}={value!r}")


@dataclasses.dataclass
class Toxic:
    """One toxic: ``kind``, its ``direction`` (None: the whole connection), its settings,
    and the probability it applies to a connection."""

    kind: str
    direction: str | None
    settings: dict[str, float]
    toxicity: float = 1.0
    seed: int = 0
    _rng: random.Random = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}:{self.kind}:{self.direction}")

    def draw(self) -> bool:
        """Whether it applies to a new connection (once per connection and toxic)."""
        return self.toxicity >= 1 or self._rng.random() < self.toxicity

    def jitter(self) -> float:
        """A latency's jitter for one read: up to ``jitter`` seconds either way."""
        jitter = self.settings.get("jitter", 0.0)
        return self._rng.uniform(-jitter, jitter) if jitter else 0.0

    def slice_size(self) -> int:
        """A slicer's next slice: ``average_size`` give or take ``size_variation`` bytes."""
        average = int(self.settings["average_size"])
        variation = int(self.settings.get("size_variation", 0))
        return max(1, average + (self._rng.randint(-variation, variation) if variation else 0))


Piece = tuple[bytes, float]
"""Bytes to send, and the seconds from now they are due."""


def shape(toxics: list[Toxic], data: bytes, delay: float, backlog: float) -> list[Piece]:
    """The pieces ``data`` (read now, already ``delay`` seconds late) becomes under ``toxics``
    (those of its direction that apply to its connection), in order. ``backlog``: seconds
    until the bytes already queued on this direction are all due (bandwidth queues after)."""
    pieces: list[Piece] = [(data, delay)]
    for toxic in toxics:
        if toxic.kind == "latency":
            extra = toxic.settings["seconds"] + toxic.jitter()
            pieces = [(piece, max(0.0, due + extra)) for piece, due in pieces]
        elif toxic.kind == "bandwidth":
            pieces = at_rate(pieces, toxic.settings["bytes_per_second"], backlog)
        elif toxic.kind == "slicer":
            pieces = _sliced(pieces, toxic)
    return pieces


def at_rate(pieces: list[Piece], rate: float, backlog: float) -> list[Piece]:
    """Bytes at ``rate`` per second: a tenth of a second's worth per piece, one after another."""
    step = max(1, int(rate / 10))
    shaped: list[Piece] = []
    start = max(backlog, pieces[0][1]) if pieces else 0.0
    sent = 0
    for data, due in pieces:
        start = max(start, due)
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            sent += len(piece)
            shaped.append((piece, start + sent / rate))
    return shaped


def _sliced(pieces: list[Piece], toxic: Toxic) -> list[Piece]:
    """Each piece cut in slices, each ``delay`` seconds after the one before."""
    pause = toxic.settings.get("delay", 0.0)
    shaped: list[Piece] = []
    for data, due in pieces:
        offset, later = 0, due
        while offset < len(data):
            size = toxic.slice_size()
            shaped.append((data[offset : offset + size], later))
            offset += size
            later += pause
    return shaped
