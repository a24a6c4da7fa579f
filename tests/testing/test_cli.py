"""The remote-cache command: exit codes, the report, and that it cleans up after itself."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from remote_cache.cli import main
from remote_cache.cli.parser import build_parser
from remote_cache.testing import InMemoryBackend, _check
from remote_cache.testing._redis_server import RedisServer


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


QUICK = ("--examples", "5")


class TestCheckEmbedded:
    """With no URL the check runs on an embedded fakeredis and passes."""

    def test_passes_and_reports(self) -> None:
        status, out, _ = run("check", "--seed", "7")
        assert status == 0, out
        assert "remote-cache check: embedded fakeredis" in out
        assert "100 examples per property, seed 7" in out
        assert "FAIL" not in out
        for cls in _check.cache_classes():
            assert f"PASS    round trip {cls.__name__}" in out
        for name in (
            "conformance: backend contract and counters",
            "conformance: values, keys, overwrites, batches",
            "conformance: concurrency",
            "property: backend agrees with a dict",
            "property: caches under faults match the model",
            "property: JSON serde round trip",
            "outage: fail open, then recover",
        ):
            assert f"PASS    {name}" in out
        assert "n/a     black hole" in out
        assert "RemoteFxGraphCache" in out.split("Counters (cache_stats):")[1]
        assert "18 checks passed, 0 failed, 1 not applicable here" in out

    def test_rows_fit_the_width(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _, out, _ = run("check", *QUICK)  # not a terminal: 120 columns
        assert max(map(len, out.splitlines())) <= 120, out
        assert "keys up to 1,024 characters" in " ".join(out.split())  # wrapped, all there
        monkeypatch.setenv("COLUMNS", "90")
        terminal, err = Terminal(), io.StringIO()
        main(["check", *QUICK], out=terminal, err=err)
        lines = [line for line in terminal.getvalue().splitlines() if "\r" not in line]
        assert max(len(line) for line in lines if not line.startswith("  name")) <= 110

    def test_a_failing_check_exits_one(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(_check.SAMPLE_VALUES, "unstorable", float("nan"))
        status, out, _ = run("check", *QUICK)
        assert status == 1
        assert "FAIL    round trip RedisRemoteCache" in out
        assert "checks passed, 8 failed" in out
        assert "Repeat this run with --seed" in out

    def test_crashing_check_is_a_failure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def crash(target: _check.Target) -> str:
            raise RuntimeError("kaput")

        monkeypatch.setattr(_check, "_batch", crash)
        status, out, _ = run("check", *QUICK)
        assert status == 1
        assert "RuntimeError: kaput" in out

    def test_property_failure_is_reported_and_repeatable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_check, "_fresh_backends", lambda target: LosesNonAsciiKeys)
        first = run("check", "--seed", "3", "--examples", "100", "--json")
        second = run("check", "--seed", "3", "--examples", "100", "--json")
        assert first[0] == second[0] == 1
        report = json.loads(first[1])
        failed = {c["name"]: c["detail"] for c in report["checks"] if not c["passed"]}
        assert "property: backend agrees with a dict" in failed
        assert "conformance: values, keys, overwrites, batches" in failed  # non-ASCII keys
        # The state machine's first failure names the lost write, as a miss where the model
        # holds a value or as the counters that miss moved (which one it meets first has
        # been seen to depend on what ran before it in the process).
        assert any(
            "returned None" in detail or re.search(r"cache_stats\[.*\] is wrong", detail)
            for detail in failed.values()
        )
        again = {c["name"]: c["detail"] for c in json.loads(second[1])["checks"]}
        for name, detail in failed.items():
            assert again[name] == detail

    def test_json_report(self) -> None:
        status, out, _ = run("check", "--json", "--seed", "11", *QUICK)
        assert status == 0
        report = json.loads(out)
        assert report["passed"] is True
        assert report["seed"] == 11
        assert report["examples"] == 5
        assert report["target"] == "embedded fakeredis"
        by_name = {check["name"]: check for check in report["checks"]}
        assert by_name["property: JSON serde round trip"]["examples"] >= 5
        assert by_name["black hole: bounded by the timeout"]["applicable"] is False
        assert report["stats"]["RemoteFxGraphCache"]["hit"] > 0
        assert set(report["stats"]["RemoteFxGraphCache"]) >= {"hit", "miss", "put", "fail_open"}

    def test_progress_bar_on_a_terminal(self) -> None:
        out, err = io.StringIO(), Terminal()
        assert main(["check", *QUICK], out=out, err=err) == 0
        shown = err.getvalue()
        assert "[------------------------] 1/19  round trip RedisRemoteCache" in shown
        assert "property: caches under faults match the model  0/5" in shown
        assert shown.endswith("\r\x1b[K")  # the bar is erased before the report
        assert "\x1b" not in out.getvalue()

    def test_no_progress_bar_when_piped(self) -> None:
        status, _, err = run("check", *QUICK)
        assert status == 0
        assert err == ""

    def test_console_script(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "remote_cache.testing.cli", "check", *QUICK],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == "", "drill log lines belong in the report, not on stderr"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class LosesNonAsciiKeys(InMemoryBackend):
    """Planted defect: silently drops writes under keys that are not ASCII."""

    def _put(self, key: str, data: Any) -> None:
        if key.isascii():
            super()._put(key, data)


class TestArguments:
    """Bad arguments and unreachable servers exit 2 with a clear message."""

    def test_no_command_prints_help(self) -> None:
        status, out, _ = run()
        assert status == 2
        assert "check" in out

    def test_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["check", "--help"]) == 0
        assert "exit status" in capsys.readouterr().out

    def test_bad_scheme(self) -> None:
        status, _, err = run("check", "--url", "http://example")
        assert status == 2
        assert "redis://" in err

    def test_unknown_option(self) -> None:
        assert run("check", "--bogus")[0] == 2

    @pytest.mark.parametrize(
        ("option", "value", "message"),
        [
            ("--examples", "0", "expected 1 or more"),
            ("--examples", "many", "expected a whole number"),
            ("--seed", "-1", "expected 0 or more"),
            ("--seed", "x", "expected a whole number"),
            ("--seed", "\u0663", "expected a whole number"),  # an Arabic-Indic 3
            ("--examples", "1_0", "expected a whole number"),
            ("--examples", " 5", "expected a whole number"),
        ],
    )
    def test_bad_numbers(
        self, option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["check", option, value]) == 2
        assert message in capsys.readouterr().err

    def test_unreachable_as_json(self) -> None:
        from remote_cache.testing._processes import free_port

        status, out, _ = run("check", "--json", "--url", f"redis://:pw@127.0.0.1:{free_port()}")
        assert status == 2
        report = json.loads(out)
        assert report["passed"] is False
        assert "cannot reach" in report["error"]
        assert "pw@" not in out

    def test_unreachable(self) -> None:
        from remote_cache.testing._processes import free_port

        status, _, err = run("check", "--url", f"redis://:pw@127.0.0.1:{free_port()}/0")
        assert status == 2
        assert "cannot reach" in err
        assert "pw@" not in err


@pytest.mark.redis
class TestCheckRealServer:
    """Against a real server: passes, touches nothing else, leaves nothing behind."""

    def test_real_server(self) -> None:
        with RedisServer(password="check-pw") as server:
            client = server.client()
            client.set("someone-elses", b"data")
            status, out, err = run("check", "--url", server.url, "--examples", "30")
            assert status == 0, out + err
            assert "check-pw" not in out + err
            assert "black hole: bounded by the timeout" in out
            assert "bounded at" in out
            assert "19 checks passed" in out
            assert "0 failed" in out
            assert client.keys() == [b"someone-elses"]
            assert client.get("someone-elses") == b"data"


BAD_URLS = [
    "host:6379",
    "redis:/h",
    "http://h:1",
    "redis://127.0.0.1:abc/0",
    "redis://127.0.0.1:0/0",
    "redis://127.0.0.1:70000",
    "redis://127.0.0.1:6379/x",
    "redis://127.0.0.1:6379/0?bogus=1",
    "redis://127.0.0.1:6379/0?socket_timeout=soon",
    "unix://relative/path.sock",
]


class TestEveryBadArgumentIsOneLine:
    """Every bad argument exits 2 with a one-line message on stderr and no traceback."""

    @pytest.mark.parametrize("command", ["check", "inspect"])
    @pytest.mark.parametrize("url", BAD_URLS)
    def test_bad_url(self, command: str, url: str) -> None:
        status, out, err = run(command, "--url", url)
        assert status == 2, err
        assert out == ""
        assert err.count("\n") == 1, err
        assert "Traceback" not in err
        assert "--url" in err

    @pytest.mark.parametrize(
        "argv",
        [
            ["check", "--bogus"],
            ["inspect", "--bogus"],
            ["nonsense"],
            ["check", "--examples", "0"],
            ["check", "--seed", "x"],
            ["inspect", "--samples", "-1"],
            ["check", "--url", "redis://h:1", "--backend", "m:f"],
        ],
    )
    def test_bad_options(self, argv: list[str]) -> None:
        status, out, err = run(*argv)
        assert status == 2
        assert out == ""
        assert err.count("\n") == 1, err
        assert "--help" in err

    def test_password_of_a_bad_url_is_hidden(self) -> None:
        status, _, err = run("check", "--url", "redis://u:s3cr%2Ft@h:0/0")
        assert status == 2
        assert "s3cr" not in err
        assert "u:***@h:0" in err


class TestHelp:
    """--help describes every option and the exit statuses."""

    def test_every_option_has_help(self) -> None:
        parser = build_parser()
        commands = next(a for a in parser._actions if a.dest == "command")
        for name, sub in [("", parser), *commands.choices.items()]:  # type: ignore[union-attr]
            for action in sub._actions:
                assert action.help, f"{name} {action.option_strings} has no help"

    @pytest.mark.parametrize("argv", [["--help"], ["check", "--help"], ["inspect", "--help"]])
    def test_exit_statuses_listed(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(argv) == 0
        shown = capsys.readouterr().out
        for status in ("0 ", "1 ", "2 ", "130", "141"):
            assert f"  {status}" in shown
        if argv == ["--help"]:
            assert "check" in shown
            assert "inspect" in shown
            assert "python -m remote_cache" in shown

    def test_python_dash_m_remote_cache(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "remote_cache", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "remote-cache" in result.stdout

    def test_old_import_path_kept(self) -> None:
        from remote_cache.cli import main as moved
        from remote_cache.testing.cli import main as kept

        assert kept is moved


BACKENDS_MODULE = """
from remote_cache.testing import InMemoryBackend


class DropsEmptyValues(InMemoryBackend):
    def _put(self, key, data):
        if data:
            super()._put(key, data)


def good():
    return InMemoryBackend()


def buggy():
    return DropsEmptyValues()


not_callable = 3


def raises():
    raise RuntimeError("no backend today")


def wrong_type():
    return {}
"""


@pytest.fixture
def backends_module(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cli_user_backends.py").write_text(BACKENDS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cli_user_backends"


class TestCheckUserBackend:
    """--backend module:factory runs the same suite on a user's backend."""

    def test_good_backend_passes(self, backends_module: str) -> None:
        status, out, err = run("check", "--backend", f"{backends_module}:good", *QUICK)
        assert status == 0, out + err
        assert f"remote-cache check: backend {backends_module}:good" in out
        assert "PASS    conformance: backend contract and counters" in out
        assert "PASS    property: caches under faults match the model" in out
        assert "PASS    round trip RemoteFxGraphCache" in out
        assert "n/a     outage: fail open, then recover" in out
        assert "round trip LocalCache" not in out

    def test_buggy_backend_fails(self, backends_module: str) -> None:
        status, out, _ = run("check", "--backend", f"{backends_module}:buggy", *QUICK, "--json")
        assert status == 1
        report = json.loads(out)
        assert report["verdict"] == "failed"
        failed = [check["name"] for check in report["checks"] if check["verdict"] == "fail"]
        assert "conformance: backend contract and counters" in failed

    @pytest.mark.parametrize(
        ("attribute", "message"),
        [
            ("", "expected MODULE:FACTORY"),
            (":missing", "has no missing"),
            (":not_callable", "is not callable"),
            (":raises", "RuntimeError: no backend today"),
            (":wrong_type", "returned dict, not a RemoteCacheBackend"),
        ],
    )
    def test_bad_spec(self, backends_module: str, attribute: str, message: str) -> None:
        status, out, err = run("check", "--backend", backends_module + attribute)
        assert status == 2
        assert out == ""
        assert err.count("\n") == 1, err
        assert message in err

    def test_module_not_found(self) -> None:
        status, _, err = run("check", "--backend", "no_such_module_here:make")
        assert status == 2
        assert "cannot import no_such_module_here" in err


JSON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "verdict": str,
    "exit_status": int,
    "target": str,
    "passed": bool,
    "examples": int,
    "seed": int,
    "checks": list,
    "stats": dict,
    "log_lines": list,
    "error": (str, type(None)),
}
CHECK_FIELDS = {
    "name": str,
    "verdict": str,
    "passed": bool,
    "applicable": bool,
    "detail": str,
    "seconds": float,
    "examples": int,
}


def assert_report_shape(report: dict[str, Any]) -> None:
    assert set(report) == set(JSON_FIELDS)
    for field, kind in JSON_FIELDS.items():
        assert isinstance(report[field], kind), (field, report[field])
    assert report["schema_version"] == 1
    assert report["verdict"] in {"passed", "failed", "unusable", "interrupted"}
    for check in report["checks"]:
        assert set(check) == set(CHECK_FIELDS)
        for field, kind in CHECK_FIELDS.items():
            assert isinstance(check[field], kind), (field, check)
        assert check["verdict"] in {"pass", "fail", "n/a"}
    for counters in report["stats"].values():
        assert set(counters) >= {"hit", "miss", "put", "exception", "skipped", "corrupt"}
        assert all(isinstance(value, (int, float)) for value in counters.values())


class TestJsonReportIsStable:
    """The --json document keeps the documented fields, types and verdicts."""

    def test_passed(self) -> None:
        status, out, _ = run("check", "--json", "--seed", "5", *QUICK)
        report = json.loads(out)
        assert_report_shape(report)
        assert (status, report["verdict"], report["exit_status"]) == (0, "passed", 0)
        assert report["error"] is None
        assert {check["verdict"] for check in report["checks"]} == {"pass", "n/a"}

    def test_failed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(_check.SAMPLE_VALUES, "unstorable", float("nan"))
        status, out, _ = run("check", "--json", *QUICK)
        report = json.loads(out)
        assert_report_shape(report)
        assert (status, report["verdict"], report["exit_status"]) == (1, "failed", 1)

    def test_unusable(self) -> None:
        from remote_cache.testing._processes import free_port

        status, out, _ = run("check", "--json", "--seed", "1", "--url", f"redis://h:{free_port()}")
        report = json.loads(out)
        assert_report_shape(report)
        assert (status, report["verdict"], report["exit_status"]) == (2, "unusable", 2)
        assert report["checks"] == []
        assert "cannot reach" in report["error"]

    def test_bad_url_as_json(self) -> None:
        status, out, _ = run("check", "--json", "--seed", "1", "--url", "redis://h:0")
        report = json.loads(out)
        assert_report_shape(report)
        assert status == report["exit_status"] == 2
        assert "--url" in report["error"]


@pytest.mark.redis
class TestUnixSocket:
    """unix:// URLs work for check and inspect, against a real server on a socket."""

    def test_check_and_inspect(self) -> None:
        with RedisServer(password="unix-pw", unix_socket=True) as server:
            status, out, err = run("check", "--url", server.unix_url, *QUICK)
            assert status == 0, out + err
            assert "unix://:***@" in out
            assert "n/a     outage: fail open, then recover" in out
            assert "unix-pw" not in out + err
            server.client().set("pt2:fx-graph-v1::k:c1", b"1")
            status, out, err = run("inspect", "--url", server.unix_url, "--json")
            assert status == 0, err
            assert json.loads(out)["entries"] == 1
            assert server.client().keys() == [b"pt2:fx-graph-v1::k:c1"]

    def test_unix_with_cluster_is_refused(self) -> None:
        status, _, err = run("inspect", "--cluster", "--url", "unix:///tmp/x.sock")
        assert status == 2
        assert "--cluster" in err


SWALLOWING_MODULE = '''
import os
import socket
import time

from remote_cache.testing import InMemoryBackend

announced = False


class SwallowsInterrupts(InMemoryBackend):
    """Planted: the first get tells the test it runs, then swallows the Ctrl-C it gets."""

    def _get(self, key):
        global announced
        if not announced:
            announced = True
            try:
                socket.create_connection(("127.0.0.1", int(os.environ["READY_PORT"]))).close()
                time.sleep(60)
            except BaseException:
                pass
        return super()._get(key)


def make():
    return SwallowsInterrupts()
'''


def interrupted_run(argv: list[str], listener: socket.socket, cwd: Any) -> tuple[int, str, str]:
    """Start ``python -m remote_cache ARGV``, send SIGINT once it reaches ``listener``."""
    env = {**os.environ, "READY_PORT": str(listener.getsockname()[1]), "PYTHONPATH": str(cwd)}
    child = subprocess.Popen(
        [sys.executable, "-m", "remote_cache", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    try:
        listener.settimeout(60)
        connection, _ = listener.accept()  # the child is now waiting inside the run
        # Held open, unread, until the child has exited: closing it with the child's bytes
        # unread would reset the child's connection, which could end the run before the
        # Ctrl-C lands (a loaded run did so).
        with connection:
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, out, err


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


class TestInterrupt:
    """Ctrl-C exits 130 with one line: never 0, never a traceback."""

    def test_during_a_black_holed_connect(self, listener: socket.socket, tmp_path: Any) -> None:
        port = listener.getsockname()[1]  # accepts the connection, never answers
        status, out, err = interrupted_run(
            ["check", "--url", f"redis://127.0.0.1:{port}/0"], listener, tmp_path
        )
        assert status == 130, err
        assert out == ""
        assert err == "remote-cache check: interrupted\n"

    @pytest.mark.measured_children  # run_program, SIGINT and the JSON of an interruption
    def test_swallowed_interrupt_still_exits_130(
        self, listener: socket.socket, tmp_path: Any
    ) -> None:
        (tmp_path / "swallowing_backend.py").write_text(SWALLOWING_MODULE)
        status, out, err = interrupted_run(
            ["check", "--backend", "swallowing_backend:make", "--examples", "3", "--json"],
            listener,
            tmp_path,
        )
        assert status == 130, out + err
        assert err == "remote-cache check: interrupted\n"
        report = json.loads(out)
        assert_report_shape(report)
        assert (report["verdict"], report["exit_status"]) == ("interrupted", 130)


def test_the_cli_and_the_harness_default_to_the_same_examples() -> None:
    # The CLI keeps its own copy so that --help works without the testing extra.
    from remote_cache.cli import parser

    assert parser.DEFAULT_EXAMPLES == _check.DEFAULT_EXAMPLES


def test_every_command_has_a_run_function() -> None:
    import pathlib

    import remote_cache
    from remote_cache.cli import parser, program

    assert set(program.RUNS) == set(parser.COMMANDS)
    # python -m remote_cache names the command in its "interrupted" line, without the cli
    # (a Ctrl-C may come while it loads): it lists the commands itself.
    main_module = pathlib.Path(remote_cache.__file__).with_name("__main__.py").read_text("utf-8")
    assert all(f'["{name}"]' in main_module for name in parser.COMMANDS)
