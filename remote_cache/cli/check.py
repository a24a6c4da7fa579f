"""The ``check`` command: load the backend to check, run the harness, report the verdict.

The harness (``remote_cache.testing``, the testing extra) is imported only when the command
runs, so that ``--help`` and ``inspect`` work without it.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import random
import sys
from collections.abc import Callable
from typing import Any, TextIO

from remote_cache._backend import RemoteCacheBackend
from remote_cache._settings import parse_redis_url, redact_url, scrub, url_secrets
from remote_cache._text import printable
from remote_cache.cli.parser import TESTING_EXTRA, UsageError
from remote_cache.cli.process import Interrupts, emit, user_output_to
from remote_cache.cli.report import (
    ProgressBar,
    json_error,
    json_report,
    print_report,
    report_width,
)
from remote_cache.cli.status import EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE
from remote_cache.exceptions import ConfigurationError, MissingDependencyError

__all__ = ["load_backend_factory", "run_check"]


def load_backend_factory(spec: str) -> Callable[[], RemoteCacheBackend[Any]]:
    """The factory named by ``"module:attribute"``, called once to see that it makes backends.

    The current folder is searched first, as ``python -m`` would. Raises ``UsageError`` with
    a one-line reason when the module cannot be imported, the attribute is missing or not
    callable, or a call fails or returns something that is not a ``RemoteCacheBackend``.
    Any exception of the user's code counts, ``SystemExit`` and ``GeneratorExit`` included (a
    factory that exits must not pass for a successful run); only ``KeyboardInterrupt``
    propagates.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--backend {spec!r}: expected MODULE:FACTORY, e.g. mycache:make_backend")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of the user's module is reported
        raise UsageError(
            f"--backend {spec!r}: cannot import {module_name}: {_describe(exc)}"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"--backend {spec!r}: {module_name} has no {attribute}") from None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a module __getattr__ is user code too
            raise UsageError(
                f"--backend {spec!r}: looking up {attribute} raised {_describe(exc)}"
            ) from None
    if not callable(target):
        raise UsageError(f"--backend {spec!r}: {attribute} is not callable")
    factory: Callable[[], Any] = target
    try:
        made = factory()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported in one line, SystemExit included
        raise UsageError(
            f"--backend {spec!r}: calling {attribute}() raised {_describe(exc)}"
        ) from None
    if not isinstance(made, RemoteCacheBackend):
        raise UsageError(
            f"--backend {spec!r}: {attribute}() returned {type(made).__name__}, "
            "not a RemoteCacheBackend"
        )
    return factory


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _need(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"remote-cache check needs the testing extra ({module} is not installed): "
            f"{TESTING_EXTRA}"
        ) from None


def _load(arguments: argparse.Namespace) -> Callable[[], RemoteCacheBackend[Any]] | None:
    """Check the URL and the extras, then load ``--backend``'s factory (None without it)."""
    if arguments.url is not None:
        parse_redis_url(arguments.url, name="--url")
    for module in ("hypothesis", *(("redis",) if arguments.backend is None else ())):
        _need(module)
    if arguments.url is None and arguments.backend is None:
        _need("fakeredis")
    if arguments.backend is None:
        return None
    return load_backend_factory(arguments.backend)


def run_check(
    arguments: argparse.Namespace, out: TextIO, err: TextIO, interrupts: Interrupts
) -> int:
    """Run ``check``: print the report on ``out``; return the exit status."""
    url: str | None = arguments.url
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    target = (
        "embedded fakeredis"
        if url is None and arguments.backend is None
        else f"backend {arguments.backend}"
        if url is None
        else redact_url(url)
    )
    arguments.seed, arguments.target = seed, target  # for the report of an interrupted run

    with user_output_to(err, out, interrupts, for_good=interrupts.for_good) as report_out:
        arguments.report_out = report_out  # for the report of an interrupted run

        def unusable(message: str) -> int:
            interrupts.checkpoint()
            print(f"remote-cache check: {printable(message)}", file=err)
            if arguments.json:
                document = json_error(
                    verdict="unusable",
                    exit_status=EXIT_UNUSABLE,
                    target=target,
                    examples=arguments.examples,
                    seed=seed,
                    error=message,
                )
                interrupts.finish()
                emit(json.dumps(document, indent=2) + "\n", report_out)
            return EXIT_UNUSABLE

        try:
            factory = _load(arguments)
            from remote_cache.testing._check import run_checks
        except (ConfigurationError, UsageError, MissingDependencyError) as exc:
            failure: str | None = str(exc)
        else:
            failure = None
        interrupts.checkpoint()
        if failure is None:
            bar = ProgressBar(err) if err.isatty() else None
            try:
                report = run_checks(
                    url,
                    examples=arguments.examples,
                    seed=seed,
                    progress=bar,
                    backend_factory=factory,
                    backend_name=arguments.backend,
                    checkpoint=interrupts.checkpoint,
                )
            except ConnectionError as exc:
                failure = f"cannot reach the server: {scrub(str(exc), url_secrets(url or ''))}"
            finally:
                if bar is not None:
                    bar.clear()
        if failure is not None:
            return unusable(failure)
        interrupts.checkpoint()  # one that code under test swallowed: the run is not valid
        text = io.StringIO()
        if arguments.json:
            print(json.dumps(json_report(report), indent=2), file=text)
        else:
            print_report(report, text, columns=report_width(report_out))
        interrupts.finish()
        emit(text.getvalue(), report_out)
        return EXIT_OK if report.passed else EXIT_FAILED
