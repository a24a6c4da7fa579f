"""The ``remote-cache`` command moved to ``remote_cache._cli``; this name is kept so that old
imports (``from remote_cache.testing.cli import main``) and ``python -m`` of it still work."""

from __future__ import annotations

import sys

from remote_cache._cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNUSABLE, main

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNUSABLE", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
