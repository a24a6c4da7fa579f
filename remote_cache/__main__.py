"""``python -m remote_cache`` runs the ``remote-cache`` command."""

import sys

from remote_cache._cli import main

sys.exit(main())
