"""``python -m remote_cache.testing`` runs the ``remote-cache`` command (kept for old habits)."""

import sys

from remote_cache._cli import main

sys.exit(main())
