"""``main()`` and ``run_program()``: parse the command line, run the command, and turn
Ctrl-C, a usage error or a closed stdout into the exit status ``--help`` lists."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from remote_cache._text import printable
from remote_cache.cli.check import run_check
from remote_cache.cli.inspect import run_inspect
from remote_cache.cli.parser import COMMANDS, UsageError, build_parser
from remote_cache.cli.process import Interrupts, emit, handle_interrupts, stdout_closed
from remote_cache.cli.report import json_error
from remote_cache.cli.status import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNUSABLE

__all__ = ["main", "run_program"]


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; return the exit status (0, 1, 2, 130 or 141, see ``--help``).

    SIGINT is handled from the first line to the last (then the previous handler is back):
    Ctrl-C anywhere, even one swallowed by code under test, gives one line on stderr and
    ``EXIT_INTERRUPTED``, never a traceback or a report.
    """
    with handle_interrupts() as interrupts:
        return _main(argv, out, err, interrupts)


def run_program() -> int:
    """``main()`` for a process about to exit: SIGINT stays ignored when it returns, and
    what user code prints after the report goes to stderr."""
    with handle_interrupts(ignore_after=True) as interrupts:
        interrupts.for_good = True
        return _main(None, None, None, interrupts)


RUNS = {"check": run_check, "inspect": run_inspect}
"""Each command's ``run_...`` function, by name (every name of ``parser.COMMANDS``)."""


def _main(
    argv: Sequence[str] | None, out: TextIO | None, err: TextIO | None, interrupts: Interrupts
) -> int:
    # A stream closed when Python started (`2>&-`) is None: write that one to devnull.
    out = out or sys.stdout or open(os.devnull, "w")  # noqa: SIM115 - lives as the process does
    err = err or sys.stderr or open(os.devnull, "w")  # noqa: SIM115
    words = sys.argv[1:] if argv is None else list(argv)
    command = words[0] if words and words[0] in COMMANDS else None
    arguments = None
    try:
        try:
            parser = build_parser()
            try:
                arguments = parser.parse_args(words)
            except UsageError as exc:
                interrupts.finish()
                print(printable(str(exc)), file=err)
                return EXIT_UNUSABLE
            except SystemExit as exit_:  # --help
                interrupts.finish()
                sys.stdout.flush()
                return EXIT_OK if not exit_.code else EXIT_UNUSABLE
            if arguments.command is None:
                interrupts.finish()
                parser.print_help(out)
                out.flush()
                return EXIT_UNUSABLE
            return RUNS[arguments.command](arguments, out, err, interrupts)
        except KeyboardInterrupt:
            interrupts.raising = False
        print(f"remote-cache{f' {command}' if command else ''}: interrupted", file=err)
        if arguments is not None and arguments.command == "check" and arguments.json:
            document = json_error(
                verdict="interrupted",
                exit_status=EXIT_INTERRUPTED,
                target=getattr(arguments, "target", None),
                examples=arguments.examples,
                seed=arguments.seed,
                error="interrupted",
            )
            emit(json.dumps(document, indent=2) + "\n", getattr(arguments, "report_out", out))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        interrupts.raising = False
        return stdout_closed(out, getattr(arguments, "report_out", out))
