"""The Hypothesis profiles: CI runs every property of the suite at least 200 times."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from remote_cache.testing import InMemoryBackend
from remote_cache.testing.conformance import check_json_serde, check_model
from remote_cache.testing.stateful import run_cache_machine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ci_profile() -> Iterator[None]:
    previous = settings.get_current_profile_name()
    settings.load_profile("ci")
    try:
        yield
    finally:
        settings.load_profile(previous)


def test_ci_runs_the_ci_profile() -> None:
    assert "export HYPOTHESIS_PROFILE=ci" in (ROOT / ".ci" / "run").read_text()
    assert settings.get_profile("ci").max_examples >= 200
    assert settings.get_profile("dev").max_examples < settings.get_profile("ci").max_examples


@pytest.mark.usefixtures("ci_profile")
@pytest.mark.parametrize(
    "run",
    [
        pytest.param(lambda tick: check_model(InMemoryBackend, on_example=tick), id="dict-model"),
        pytest.param(
            lambda tick: run_cache_machine(InMemoryBackend, on_example=tick), id="cache-machine"
        ),
        pytest.param(lambda tick: check_json_serde(on_example=tick), id="json-serde"),
    ],
)
def test_each_property_runs_200_examples_under_ci(run: object) -> None:
    seen: list[int] = []
    run(lambda: seen.append(1))  # type: ignore[operator]
    assert len(seen) >= 200
