"""The sample projects under docs/examples pass, run as their users run them.

Each is copied out of the tree and run by ``python -m pytest`` in its own folder, with the
fixtures coming from the installed package (pytest11), as a downstream project gets them.
The tinycompiler project runs in tests/testing/test_plugin.py (alone, under xdist, by marker).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def run_example(name: str, tmp_path: Path) -> tuple[dict[str, int], str]:
    """Run the example project ``name`` from a copy; its outcome counts and output."""
    project = tmp_path / name
    shutil.copytree(EXAMPLES / name, project, ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    # The project's own quick profile: what is checked here is that it passes as shipped; the
    # suite it runs is run at 200 examples on our own backends (tests/testing/).
    env["HYPOTHESIS_PROFILE"] = "dev"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    counts = {
        word: int(count) for count, word in re.findall(r"(\d+) (\w+)", output.splitlines()[-1])
    }
    return counts, output


def test_sqlite_backend_passes_the_conformance_suite(tmp_path: Path) -> None:
    counts, output = run_example("sqlite_backend", tmp_path)
    assert counts == {"passed": 26}, output  # eleven conformance tests per database, four more


@pytest.mark.torch
def test_torch_project_compiles_through_the_fixtures(tmp_path: Path) -> None:
    counts, output = run_example("torch_project", tmp_path)
    assert counts == {"passed": 3}, output
