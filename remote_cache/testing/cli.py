"""The ``remote-cache`` command moved to ``remote_cache.cli``; this name is kept so that old
imports (``from remote_cache.testing.cli import main``) and ``python -m`` of it still work.

This module belongs to the cli layer, not to the harness: it is the one file under
``remote_cache/testing/`` that imports ``remote_cache.cli``, and nothing in the harness
imports it.
"""

from __future__ import annotations

import sys

from remote_cache.cli import main
from remote_cache.cli.status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNUSABLE

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNUSABLE", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
