"""The exit statuses of the ``remote-cache`` command, and the text ``--help`` shows of them."""

from __future__ import annotations

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STATUS_HELP",
    "EXIT_STDOUT_CLOSED",
    "EXIT_UNUSABLE",
]

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""Exit statuses: all passed; a check failed; unusable (bad argument, unreachable server,
missing extra, a ``--backend`` that cannot be loaded); interrupted (Ctrl-C)."""

EXIT_STDOUT_CLOSED = 141
"""Exit status when stdout was closed before the output was written (``... | head``): 128 plus
SIGPIPE, as a shell reports a command that a closed pipe stopped."""

EXIT_STATUS_HELP = """\
exit status:
  0    every check passed (check), or the inventory was printed (inspect)
  1    a check failed (check); the report names it and the seed that repeats the run
  2    bad arguments, the server cannot be reached, the backend cannot be loaded (its
       module or factory raised, even SystemExit), or an extra is missing (one line on
       stderr says which)
  130  interrupted (Ctrl-C): one line on stderr, no report (with --json, only the
       "interrupted" document); what check wrote to a server is deleted first when possible
  141  stdout was closed before the output was written (e.g. piped into head)"""
