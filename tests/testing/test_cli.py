"""The remote-cache command: exit codes, the report, and that it cleans up after itself."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from remote_cache.testing import _check
from remote_cache.testing._redis_server import RedisServer
from remote_cache.testing.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


class TestCheckEmbedded:
    """With no URL the check runs on an embedded fakeredis and passes."""

    def test_passes_and_reports(self) -> None:
        status, out, _ = run("check")
        assert status == 0, out
        assert "remote-cache check: embedded fakeredis" in out
        assert "FAIL" not in out
        for cls in _check.cache_classes():
            assert f"PASS  round trip {cls.__name__}" in out
        assert "outage: fail open, then recover" in out
        assert "RemoteFxGraphCache" in out.split("Counters (cache_stats):")[1]
        assert "13 checks passed, 0 failed" in out

    def test_a_failing_check_exits_one(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(_check.SAMPLE_VALUES, "unstorable", float("nan"))
        status, out, _ = run("check")
        assert status == 1
        assert "FAIL  round trip RedisRemoteCache" in out
        assert "checks passed, 8 failed" in out

    def test_crashing_check_is_a_failure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def crash(target: _check.Target) -> str:
            raise RuntimeError("kaput")

        monkeypatch.setattr(_check, "_batch", crash)
        status, out, _ = run("check")
        assert status == 1
        assert "RuntimeError: kaput" in out

    def test_console_script(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "remote_cache.testing.cli", "check"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == "", "drill log lines belong in the report, not on stderr"


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
            status, out, err = run("check", "--url", server.url)
            assert status == 0, out + err
            assert "check-pw" not in out + err
            assert "black hole: bounded by the timeout" in out
            assert "bounded at" in out
            assert client.keys() == [b"someone-elses"]
            assert client.get("someone-elses") == b"data"
