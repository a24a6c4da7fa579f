"""The command line with only ``remote-cache[redis]`` installed: the testing extra's packages
(fakeredis, hypothesis, pytest) are blocked from import in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from remote_cache.testing._redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
TESTING_EXTRA = ("fakeredis", "hypothesis", "pytest")

SITECUSTOMIZE = '''
import os
import sys

BLOCKED = tuple(filter(None, os.environ.get("BLOCKED_IMPORTS", "").split(",")))


class Blocker:
    """Refuses to import the blocked packages, as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if any(name == blocked or name.startswith(blocked + ".") for blocked in BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


already = [name for name in BLOCKED if name in sys.modules]
if already:
    raise SystemExit(f"imported before the blocker: {already}")
sys.meta_path.insert(0, Blocker())
'''


def run_blocked(
    tmp_path: Path, *argv: str, blocked: tuple[str, ...] = TESTING_EXTRA
) -> subprocess.CompletedProcess[str]:
    """``python -m remote_cache ARGV`` with ``blocked`` impossible to import."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "BLOCKED_IMPORTS": ",".join(blocked),
    }
    env.pop("COV_CORE_SOURCE", None)  # coverage's own start-up hook imports nothing blocked
    return subprocess.run(
        [sys.executable, "-m", "remote_cache", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )


PRODUCTION_ONLY = (*TESTING_EXTRA, "remote_cache.testing")


class TestWithoutTheTestingExtra:
    """--help and inspect need no testing package; check says which extra to install."""

    def test_the_blocker_blocks(self, tmp_path: Path) -> None:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        result = subprocess.run(
            [sys.executable, "-c", "import hypothesis"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(site), "BLOCKED_IMPORTS": "hypothesis"},
        )
        assert result.returncode == 1
        assert "ModuleNotFoundError: No module named 'hypothesis'" in result.stderr

    def test_help(self, tmp_path: Path) -> None:
        result = run_blocked(tmp_path, "--help", blocked=PRODUCTION_ONLY)
        assert result.returncode == 0, result.stderr
        assert "inspect" in result.stdout
        assert result.stderr == ""

    @pytest.mark.redis
    def test_inspect_on_a_real_server(self, tmp_path: Path) -> None:
        with RedisServer() as server:
            server.client().set("pt2:fx-graph-v1::k:c1", b'"v"')
            result = run_blocked(tmp_path, "inspect", "--url", server.url, blocked=PRODUCTION_ONLY)
        assert result.returncode == 0, result.stderr
        assert "fx-graph-v1" in result.stdout
        assert "total" in result.stdout

    @pytest.mark.parametrize(
        ("argv", "missing"),
        [
            ((), "hypothesis"),
            (("--url", "redis://127.0.0.1:1/0"), "hypothesis"),
            (("--backend", "anything:make"), "hypothesis"),
        ],
    )
    def test_check_names_the_extra(
        self, tmp_path: Path, argv: tuple[str, ...], missing: str
    ) -> None:
        result = run_blocked(tmp_path, "check", *argv)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"({missing} is not installed)" in result.stderr
        assert "pip install 'remote-cache[testing]'" in result.stderr

    def test_check_without_fakeredis_only(self, tmp_path: Path) -> None:
        result = run_blocked(tmp_path, "check", blocked=("fakeredis",))
        assert result.returncode == 2
        assert "(fakeredis is not installed)" in result.stderr

    def test_script_points_at_the_product(self) -> None:
        pyproject = (ROOT / "pyproject.toml").read_text()
        assert '\nremote-cache = "remote_cache.cli:run_program"\n' in pyproject
