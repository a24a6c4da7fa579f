"""docs/torch.md matches the worked example it quotes and the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

import remote_cache.torch as rct

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "torch.md").read_text()
EXAMPLE = ROOT / "docs" / "examples" / "torch_project"


def blocks(language: str) -> list[str]:
    """The fenced code blocks of the page in ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", PAGE, re.DOTALL)


class TestTorchPage:
    """The quoted example is the example's own text; the names on the page exist."""

    def test_quoted_tests_are_in_the_example(self) -> None:
        (quoted,) = [b for b in blocks("python") if "(excerpt)" in b]
        source = (EXAMPLE / "tests" / "test_tinymodel.py").read_text()
        for chunk in quoted.split("\n\n\n"):
            body = "\n".join(line for line in chunk.splitlines() if "(excerpt)" not in line)
            assert body.strip() in source, body

    def test_quoted_settings_are_the_example_settings(self) -> None:
        (ini,) = blocks("ini")
        settings = (EXAMPLE / "pytest.ini").read_text()
        for line in ini.splitlines():
            if line and not line.startswith("#"):
                assert line in settings.splitlines(), line

    def test_named_classes_and_range(self) -> None:
        for name in rct.TORCH_CACHE_CLASSES:
            assert f"`{name}`" in PAGE
        assert "`>=2.13,<2.14`" in PAGE
        assert "torch>=2.13,<2.14" in (ROOT / "pyproject.toml").read_text()
