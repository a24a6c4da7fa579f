"""The ``remote-cache`` command: ``check`` a backend before trusting it, ``inspect`` a server.

``--help`` and ``inspect`` need only the standard library and redis-py (the ``redis`` extra);
``check`` imports the test harness when it runs (the ``testing`` extra) and says which extra
to install when it is missing.

Modules, each one job (lowest first; each imports only those above it):

- ``status``: the exit statuses and their ``--help`` text.
- ``report``: what ``check`` shows: progress bar, report table, ``--json`` documents.
- ``parser``: the argparse parser, its argument types and usage errors.
- ``process``: SIGINT and stdout, borrowed from the process for a run and given back.
- ``inventory``: what a Redis server holds per cache id (SCAN, never KEYS).
- ``inspect``: the ``inspect`` command.
- ``check``: the ``check`` command (loading ``--backend``, running the harness).
- ``program``: ``main()`` and ``run_program()``, which parse and dispatch to a command.

A new command: a module beside ``check`` and ``inspect`` with a ``run_...`` function, its
sub-parser in ``parser.build_parser``, and its name in ``parser.COMMANDS`` and in
``program._main``'s dispatch.
"""

from __future__ import annotations

from remote_cache.cli.program import main, run_program

__all__ = ["main", "run_program"]
