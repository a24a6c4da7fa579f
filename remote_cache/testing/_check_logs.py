"""Where the ``remote_cache`` logger's lines go during ``remote-cache check``: into the report,
or nowhere while a drill injects faults by design."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__: list[str] = []


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


@contextlib.contextmanager
def _captured_logs(lines: list[str]) -> Iterator[None]:
    """Collect the ``remote_cache`` logger's lines instead of letting them reach stderr."""
    logger = logging.getLogger("remote_cache")
    handler = _ListHandler(lines)
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


@contextlib.contextmanager
def _silenced_logs() -> Iterator[None]:
    logger = logging.getLogger("remote_cache")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous
