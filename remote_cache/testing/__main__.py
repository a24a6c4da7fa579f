"""``python -m remote_cache.testing`` runs the ``remote-cache`` command (kept for old habits)."""

import runpy

runpy.run_module("remote_cache", run_name="__main__", alter_sys=True)
