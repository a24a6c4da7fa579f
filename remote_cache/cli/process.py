"""What a run borrows from the process and must give back: SIGINT, and stdout.

``Interrupts`` turns every Ctrl-C of a run into one clean exit, even one that code under test
swallows; ``user_output_to`` keeps what user code prints off the report's stream; a closed
stdout (``... | head``) ends the run quietly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO

from remote_cache.cli.status import EXIT_STDOUT_CLOSED

__all__ = [
    "Interrupts",
    "emit",
    "handle_interrupts",
    "stdout_closed",
    "user_output_to",
]


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.StringIO, a closed or detached stream
        return None


@contextlib.contextmanager
def user_output_to(
    err: TextIO, out: TextIO, interrupts: Interrupts, *, for_good: bool = False
) -> Iterator[TextIO]:
    """Send what user code prints on stdout to ``err``; yield the stream for the report.

    ``sys.stdout`` is replaced, and when ``out`` and ``err`` are file descriptors, ``out``'s
    descriptor points at ``err``'s too, for output written below Python (``os.write``, C
    code, child processes); the report then goes through a copy of the original. With
    ``for_good`` (a process about to exit), nothing is put back: what user code prints
    after the report (its threads, its ``atexit`` handlers) goes to ``err`` too.
    """
    out_fd, err_fd = _fileno(out), _fileno(err)
    report: TextIO = out
    saved: int | None = None  # a copy of what out's descriptor was
    with interrupts.deferred():  # a Ctrl-C here must not leave stdout pointing at stderr
        if out_fd is not None and err_fd is not None and out_fd != err_fd:
            out.flush()
            saved = os.dup(out_fd)
            report = os.fdopen(
                os.dup(saved), "w", encoding=getattr(out, "encoding", None), errors="replace"
            )
            os.dup2(err_fd, out_fd)
        previous, sys.stdout = sys.stdout, err
    try:
        yield report
    finally:
        with interrupts.deferred():
            if report is not out and not for_good:
                with contextlib.suppress(OSError, ValueError):
                    report.close()  # flushed already (emit): a closed pipe was noticed there
            for stream in {id(s): s for s in (out, sys.__stdout__) if s is not None}.values():
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()  # what user code left in a buffer goes to err too
            if not for_good:
                sys.stdout = previous
                if saved is not None and out_fd is not None:
                    os.dup2(saved, out_fd)
            if saved is not None:
                os.close(saved)


def emit(text: str, out: TextIO) -> None:
    """Write ``text`` to ``out`` and flush it, so that a closed pipe is noticed here."""
    out.write(text)
    out.flush()


class Interrupts:
    """Every SIGINT (Ctrl-C) of a run, even one that code under test swallows.

    The handler records the interrupt, then raises ``KeyboardInterrupt`` until ``finish()``:
    from then on the output is being written and is written whole. A ``KeyboardInterrupt``
    that Python could not raise (in a ``__del__``, a weakref or gc callback) is recorded
    silently instead of printed as "Exception ignored". ``checkpoint()`` raises
    ``KeyboardInterrupt`` if any interrupt was recorded, and puts the handler back if code
    under test replaced it.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.raising = True
        self.installed = False
        self.for_good = False
        """True in a process about to exit (``run_program``): user output stays on stderr."""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler."""
        self.event.set()
        if self.raising:
            raise KeyboardInterrupt

    def checkpoint(self) -> None:
        """Raise ``KeyboardInterrupt`` if the run was interrupted; keep the handler in place."""
        if self.installed and signal.getsignal(signal.SIGINT) != self.handle:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGINT, self.handle)
        if self.event.is_set() and self.raising:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold back ``KeyboardInterrupt`` for a moment; ``checkpoint()`` raises it later."""
        raising, self.raising = self.raising, False
        try:
            yield
        finally:
            self.raising = raising

    def finish(self) -> None:
        """Stop raising: what is written from now on is written whole."""
        self.checkpoint()
        self.raising = False


@contextlib.contextmanager
def handle_interrupts(*, ignore_after: bool = False) -> Iterator[Interrupts]:
    """Install ``Interrupts``' handler and unraisable hook for the run, then restore both.

    With ``ignore_after`` (the process is about to exit) SIGINT is left ignored instead, so
    that a late Ctrl-C cannot turn a finished run into a traceback.
    """
    interrupts = Interrupts()
    try:
        previous = signal.signal(signal.SIGINT, interrupts.handle)
    except ValueError:  # not the main thread: leave signals alone
        yield interrupts
        return
    interrupts.installed = True
    previous_hook = sys.unraisablehook

    def unraisable(details: Any) -> None:
        if isinstance(details.exc_type, type) and issubclass(details.exc_type, KeyboardInterrupt):
            interrupts.event.set()
            return
        previous_hook(details)

    sys.unraisablehook = unraisable
    try:
        yield interrupts
    finally:
        interrupts.raising = False
        if ignore_after:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.signal(
                signal.SIGINT, signal.default_int_handler if previous is None else previous
            )
        sys.unraisablehook = previous_hook


def stdout_closed(*streams: TextIO | None) -> int:
    """Quietly give up on a closed stdout: later writes and the exit flush go to devnull."""
    for fd in {_fileno(stream) for stream in streams if stream is not None}:
        if fd is not None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
    return EXIT_STDOUT_CLOSED
