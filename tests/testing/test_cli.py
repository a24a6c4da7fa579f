"""The remote-cache command: exit codes, the report, and that it cleans up after itself."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from remote_cache.testing import InMemoryBackend, _check
from remote_cache.testing._redis_server import RedisServer
from remote_cache.testing.cli import main


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
            "property: backend agrees with a dict",
            "property: caches under faults match the model",
            "property: JSON serde round trip",
            "outage: fail open, then recover",
        ):
            assert f"PASS    {name}" in out
        assert "n/a     black hole" in out
        assert "RemoteFxGraphCache" in out.split("Counters (cache_stats):")[1]
        assert "16 checks passed, 0 failed, 1 not applicable here" in out

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
        assert failed
        assert all(name.startswith("property:") for name in failed)
        assert any("returned None" in detail for detail in failed.values())
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
        assert "[------------------------] 1/17  round trip RedisRemoteCache" in shown
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
        assert "Exit status" in capsys.readouterr().out

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
            assert "16 checks passed" in out.replace("17 checks passed", "16 checks passed")
            assert "0 failed" in out
            assert client.keys() == [b"someone-elses"]
            assert client.get("someone-elses") == b"data"
