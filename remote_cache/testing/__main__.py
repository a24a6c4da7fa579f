"""``python -m remote_cache.testing`` runs the ``remote-cache`` command."""

import sys

from remote_cache.testing.cli import main

sys.exit(main())
