"""The remote-cache command attacked through its process: user code that exits or prints, Ctrl-C
at random moments, a closed stdout. Every test runs ``python -m remote_cache`` as a child."""

from __future__ import annotations

import json
import os
import random
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

USER_MODULE = """
import gc
import os
import socket
import sys
import time

from remote_cache.testing import InMemoryBackend

if os.environ.get("EXIT_ON_IMPORT"):
    raise SystemExit(0)

print("printed by the module")


def exits():
    raise SystemExit(0)


def exits_quietly():
    sys.exit()


def generator_exit():
    raise GeneratorExit


class ExitsInGet(InMemoryBackend):
    def _get(self, key):
        raise SystemExit(0)


def exits_in_get():
    return ExitsInGet()


class InterruptsInGet(InMemoryBackend):
    def _get(self, key):
        raise KeyboardInterrupt


def interrupts_in_get():
    return InterruptsInGet()


class Prints(InMemoryBackend):
    def _put(self, key, data):
        print("print() from a put")
        sys.__stdout__.write("sys.__stdout__ from a put\\n")
        os.write(1, b"os.write(1) from a put\\n")
        super()._put(key, data)


def prints():
    print("printed by the factory")
    return Prints()


def prints_later():
    # prints at exit, and from a thread all along (also while the report is written)
    import atexit
    import threading

    atexit.register(lambda: print("printed at exit"))
    atexit.register(lambda: os.write(1, b"os.write(1) at exit\\n"))

    def chatter():
        while True:
            print("printed by a thread")
            time.sleep(0.0005)

    threading.Thread(target=chatter, daemon=True).start()
    return InMemoryBackend()


announced = False


def swallow_in_gc_callback(phase, info):
    global announced
    if not announced:
        announced = True
        socket.create_connection(("127.0.0.1", int(os.environ["READY_PORT"]))).close()
        time.sleep(60)  # the Ctrl-C lands here: Python can only print it and carry on


class InterruptedInGc(InMemoryBackend):
    def _get(self, key):
        if not announced:
            gc.callbacks.append(swallow_in_gc_callback)
            gc.collect()
            gc.callbacks.remove(swallow_in_gc_callback)
        return super()._get(key)


def interrupted_in_gc():
    return InterruptedInGc()
"""

STARTED_HOOK = """
import os
import sys

_fd = int(os.environ["STARTED_FD"])


def _announce(event, args):
    # When __main__ imports the command, inside its try: a Ctrl-C landing in this hook is
    # then one landing in the command (before, it is the interpreter's, not the command's).
    global _fd
    if _fd >= 0 and event == "import" and args[0] == "remote_cache.cli":
        os.write(_fd, b"x")
        os.close(_fd)
        _fd = -1


sys.addaudithook(_announce)
"""

QUICK = ("--examples", "3")


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    (tmp_path / "user_backends.py").write_text(USER_MODULE)
    return tmp_path


def child_env(*paths: Path, **extra: str) -> dict[str, str]:
    """This environment, with ``paths`` first on the child's ``sys.path``."""
    inherited = os.environ.get("PYTHONPATH", "")
    path = os.pathsep.join([*map(str, paths), *filter(None, [inherited])])
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_child(cwd: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remote_cache", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=child_env(cwd, **extra),
    )


class TestUserCodeThatExits:
    """SystemExit or GeneratorExit from user code is reported and fails: never a silent 0."""

    @pytest.mark.parametrize(
        ("factory", "message"),
        [
            ("exits", "calling exits() raised SystemExit: 0"),
            ("exits_quietly", "calling exits_quietly() raised SystemExit"),
            ("generator_exit", "calling generator_exit() raised GeneratorExit"),
        ],
    )
    def test_factory_exits(self, user_dir: Path, factory: str, message: str) -> None:
        result = run_child(user_dir, "check", "--backend", f"user_backends:{factory}", "--json")
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        report = json.loads(result.stdout)
        assert (report["verdict"], report["exit_status"]) == ("unusable", 2)

    def test_module_exits_on_import(self, user_dir: Path) -> None:
        result = run_child(
            user_dir, "check", "--backend", "user_backends:exits", EXIT_ON_IMPORT="1"
        )
        assert result.returncode == 2, result.stderr
        assert "cannot import user_backends: SystemExit: 0" in result.stderr
        assert result.stdout == ""

    def test_backend_exits_during_checks(self, user_dir: Path) -> None:
        result = run_child(
            user_dir, "check", "--backend", "user_backends:exits_in_get", *QUICK, "--json"
        )
        assert result.returncode == 1, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["verdict"] == "failed"
        failed = {c["name"]: c["detail"] for c in report["checks"] if c["verdict"] == "fail"}
        assert "round trip RedisRemoteCache" in failed
        assert len(failed) >= 6, failed  # (a property check may draw no get in 3 examples)
        assert all("SystemExit" in detail for detail in failed.values()), failed

    def test_backend_raising_keyboard_interrupt_fails_its_checks(self, user_dir: Path) -> None:
        result = run_child(
            user_dir, "check", "--backend", "user_backends:interrupts_in_get", *QUICK, "--json"
        )
        assert result.returncode == 1, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["verdict"] == "failed"
        failed = [c["detail"] for c in report["checks"] if c["verdict"] == "fail"]
        assert failed
        assert all("KeyboardInterrupt" in detail for detail in failed), failed


class TestStdoutCarriesOnlyTheReport:
    """Whatever user code prints goes to stderr; a closed stdout ends the command quietly."""

    def test_json_is_all_of_stdout(self, user_dir: Path) -> None:
        result = run_child(user_dir, "check", "--backend", "user_backends:prints", *QUICK, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["verdict"] == "passed"
        for line in (
            "printed by the module",
            "printed by the factory",
            "print() from a put",
            "sys.__stdout__ from a put",
            "os.write(1) from a put",
        ):
            assert line in result.stderr
            assert line not in result.stdout

    def test_json_stays_all_of_stdout_until_exit(self, user_dir: Path) -> None:
        result = run_child(
            user_dir, "check", "--backend", "user_backends:prints_later", *QUICK, "--json"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["verdict"] == "passed"
        for line in ("printed at exit", "os.write(1) at exit", "printed by a thread"):
            assert line in result.stderr
            assert line not in result.stdout

    @pytest.mark.parametrize("json_flag", ["--json", ""])
    def test_stderr_closed(self, user_dir: Path, json_flag: str) -> None:
        """Started with stderr closed (`2>&-`): the report is whole, the status is the run's."""
        command = f"exec {shlex.quote(sys.executable)} -m remote_cache check {json_flag} "
        result = subprocess.run(
            ["sh", "-c", command + " ".join(QUICK) + " 2>&-"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=user_dir,
            env=child_env(user_dir),
        )
        assert result.returncode == 0, result.stdout
        if json_flag:
            assert json.loads(result.stdout)["verdict"] == "passed"
        else:
            assert "checks passed, 0 failed" in result.stdout

    @pytest.mark.parametrize(
        "argv",
        [
            ("check", "--json", *QUICK),
            ("check", *QUICK),
            ("check", "--backend", "user_backends:exits", "--json"),
            pytest.param(  # a closed stdout is met in a process of its own: measure one
                ("check", "--url", "redis://127.0.0.1:0", "--json"),
                marks=pytest.mark.measured_children,
            ),
        ],
    )
    def test_closed_stdout(self, user_dir: Path, argv: tuple[str, ...]) -> None:
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before anything is written, as with `| head`
        try:
            result = subprocess.run(
                [sys.executable, "-m", "remote_cache", *argv],
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
                check=False,
                cwd=user_dir,
                env=child_env(user_dir),
            )
        finally:
            os.close(write_end)
        assert result.returncode == 141, result.stderr
        assert "Traceback" not in result.stderr
        assert "BrokenPipeError" not in result.stderr


def interrupt_at(
    argv: list[str], cwd: Path, delay: float, **extra: str
) -> tuple[int, str, str, bool]:
    """Run ``python -m remote_cache ARGV``; SIGINT it ``delay`` s after its ``__main__`` starts.

    Returns the exit status, stdout, stderr, and whether the signal was sent before it ended.
    """
    (cwd / "hook").mkdir(exist_ok=True)
    (cwd / "hook" / "sitecustomize.py").write_text(STARTED_HOOK)
    started, announce = os.pipe()
    env = child_env(cwd / "hook", cwd, STARTED_FD=str(announce), **extra)
    # Not measured by coverage (make test measures children): its tracer runs Python code
    # before __main__'s first statement, where no program can catch a Ctrl-C yet.
    for name in [name for name in env if name.startswith("COVERAGE_PROCESS_")]:
        del env[name]
    child = subprocess.Popen(
        [sys.executable, "-m", "remote_cache", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        pass_fds=(announce,),
    )
    os.close(announce)
    sent = False
    try:
        ready, _, _ = select.select([started], [], [], 60)
        assert ready, "the child never started"
        assert os.read(started, 1) == b"x"
        time.sleep(delay)
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            sent = True
        out, err = child.communicate(timeout=60)
    finally:
        os.close(started)
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, out, err, sent


def assert_interrupted_or_finished(status: int, out: str, err: str, sent: bool) -> None:
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    if status == 0:  # finished before the signal was handled: the report is whole
        assert json.loads(out)["verdict"] == "passed"
        return
    assert (status, sent) == (130, True), out + err
    assert err.count("\n") == 1, err
    assert err.endswith(": interrupted\n"), err
    if out:  # the arguments were read: the document says interrupted, and only that
        report = json.loads(out)
        assert (report["verdict"], report["exit_status"], report["checks"]) == (
            "interrupted",
            130,
            [],
        )


class TestInterruptAnywhere:
    """Ctrl-C at any moment after the command starts: exit 130 (or 0 if it had finished)."""

    @pytest.mark.parametrize("seed", range(6))
    def test_random_moment(self, tmp_path: Path, seed: int) -> None:
        delay = [0.0, 0.0005, 0.005, 0.03][seed] if seed < 4 else random.uniform(0.03, 2.5)
        status, out, err, sent = interrupt_at(["check", "--json", *QUICK], tmp_path, delay)
        assert_interrupted_or_finished(status, out, err, sent)

    def test_interrupt_swallowed_by_a_gc_callback(self, user_dir: Path) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(60)
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "remote_cache",
                    "check",
                    "--backend",
                    "user_backends:interrupted_in_gc",
                    *QUICK,
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=user_dir,
                env=child_env(user_dir, READY_PORT=str(listener.getsockname()[1])),
            )
            try:
                connection, _ = listener.accept()  # the child sleeps in its gc callback
                connection.close()
                child.send_signal(signal.SIGINT)
                out, err = child.communicate(timeout=60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.communicate()
        assert child.returncode == 130, out + err
        assert err.endswith("remote-cache check: interrupted\n"), err
        assert "Exception ignored" not in err
        assert "Traceback" not in err
        assert json.loads(out)["verdict"] == "interrupted"


class TestBothEntryPoints:
    """``python -m remote_cache`` and ``python -m remote_cache.testing`` are the same command."""

    @pytest.mark.measured_children  # both __main__ modules run only as python -m
    @pytest.mark.parametrize("argv", [["--help"], ["check", "--help"], ["inspect", "--help"]])
    def test_same_help(self, tmp_path: Path, argv: list[str]) -> None:
        results = [
            subprocess.run(
                [sys.executable, "-m", module, *argv],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd=tmp_path,
            )
            for module in ("remote_cache", "remote_cache.testing")
        ]
        assert [r.returncode for r in results] == [0, 0]
        assert results[0].stdout == results[1].stdout
        assert "141" in results[0].stdout
