"""The catalogue of production outages (``remote_cache.testing.outages``): each entry does
what it says on every layer it names, the layers agree, and docs/testing.md lists them all."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remote_cache import RemoteFxGraphCache
from remote_cache.testing import (
    OutageProxy,
    RedisServer,
    VirtualClock,
    fakeredis_backends,
    isolated_cache_stats,
    outage_backends,
    redis_environment,
)
from remote_cache.testing.outages import OUTAGES, Outage


@contextlib.contextmanager
def proxied(server: RedisServer) -> Iterator[OutageProxy]:
    """Redis caches on ``server`` through an ``OutageProxy`` (0.3 s deadline, no cool-down)."""
    server.client().flushall()
    with OutageProxy.for_url(server.url) as proxy, redis_environment(proxy.url, timeout=0.3):
        yield proxy


BLOCKS: dict[str, Callable[..., Any]] = {
    "in-process": outage_backends,
    "fakeredis": fakeredis_backends,
    "proxy": proxied,
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


@dataclasses.dataclass
class Observed:
    """What a cache did under an outage: the three calls, recovery, and what fired."""

    reads: str
    writes: str
    rereads: str
    recovered: Any
    fired: list[tuple[int, int, str, tuple[str, ...]]]


def _classify(value: Any, corrupt_counted: bool, new: str = "new", old: str = "old") -> str:
    if value == new:
        return "new"
    if value == old:
        return "old"
    return "corrupt" if corrupt_counted else "miss"


def observe(outage: Outage, layer: str, server: RedisServer | None = None) -> Observed:
    """Store an entry, apply the outage, read it, overwrite it, batch-read it; then, if the
    outage ends by itself, read it once it has; then remove the faults and read it again."""
    with (
        isolated_cache_stats() as stats,
        VirtualClock() as clock,
        BLOCKS[layer](*([server] if layer == "proxy" else [])) as handle,
    ):
        cache = RemoteFxGraphCache("fx")
        cache.put("1", "old")
        schedule = handle.apply(outage.schedule(seed=1))

        def corrupt() -> int:
            return stats["RemoteFxGraphCache"].corrupt

        before = corrupt()
        reads = _classify(cache.get("1"), corrupt() > before)
        reads = {"old": "hit", "new": "hit"}.get(reads, reads)
        cache.put("1", "new")
        before = corrupt()
        rereads = _classify(cache.get_many(["1"]).get("1"), corrupt() > before)
        recovered = None
        if outage.recovers_after is not None:
            clock.advance(outage.recovers_after)
            recovered = cache.get("1")
        handle.restore()
        final = cache.get("1")
        writes = {"new": "stored", "old": "dropped"}.get(_classify(final, False), f"lost {final!r}")
        # Without the times: the proxy's waits are real, not on the test's clock.
        fired = [(x.fault, x.call, x.command, x.keys) for x in schedule.fired]
    return Observed(reads, writes, rereads, recovered, fired)


CASES = [
    pytest.param(outage, layer, id=f"{name}-{layer}")
    for name, outage in OUTAGES.items()
    for layer in outage.layers
]


class TestCatalogue:
    """Each outage does what the catalogue says, on each layer it names."""

    def test_at_least_25(self) -> None:
        assert len(OUTAGES) >= 25

    @pytest.mark.parametrize(("outage", "layer"), CASES)
    def test_does_what_it_says(
        self, outage: Outage, layer: str, request: pytest.FixtureRequest
    ) -> None:
        server = request.getfixturevalue("redis_server") if layer == "proxy" else None
        seen = observe(outage, layer, server)
        assert (seen.reads, seen.writes, seen.rereads) == (
            outage.reads,
            outage.writes,
            outage.rereads,
        )
        assert seen.fired, "no fault fired: the outage was never met"
        if outage.recovers_after is not None:
            assert seen.recovered in ("old", "new"), "still failing once the outage is over"

    @pytest.mark.parametrize(
        "outage", [o for o in OUTAGES.values() if len(o.layers) > 1], ids=lambda o: o.name
    )
    def test_the_layers_agree(self, outage: Outage, request: pytest.FixtureRequest) -> None:
        server = request.getfixturevalue("redis_server") if "proxy" in outage.layers else None
        first, *others = [observe(outage, layer, server) for layer in outage.layers]
        for other in others:
            assert other == first


def _docs_rows() -> list[str]:
    """The rows of the catalogue's table in docs/testing.md (its section only)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### A catalogue of production outages", 1)[1].split("\n#", 1)[0]
    return [line for line in section.splitlines() if re.match(r"\| `[a-z0-9-]+` \|", line)]


def docs_row(outage: Outage) -> str:
    """The row docs/testing.md has for ``outage``."""
    faults = ", ".join(repr(fault) for fault in outage.faults)
    layers = ", ".join(outage.layers)
    ends = f"; ends after {outage.recovers_after:g} s" if outage.recovers_after else ""
    return (
        f"| `{outage.name}` | {outage.seen} | `{faults}` | "
        f"{outage.reads}, {outage.writes}, {outage.rereads}{ends} | {layers} |"
    )


class TestDocs:
    """docs/testing.md lists the catalogue as it is, row for row."""

    def test_rows(self) -> None:
        assert _docs_rows() == [docs_row(outage) for outage in OUTAGES.values()]

    def test_every_fixture_has_its_section(self) -> None:
        """Each fixture users name keeps its section (a table rewrite once dropped five)."""
        from remote_cache.testing import pytest_plugin

        fixtures = [
            name
            for name in vars(pytest_plugin)
            if name.startswith("remote_cache_") and callable(getattr(pytest_plugin, name))
        ]
        assert len(fixtures) >= 11
        headings = {
            line.split("`")[1]
            for line in DOCS.read_text(encoding="utf-8").splitlines()
            if line.startswith("## `")
        }
        torch_docs = DOCS.with_name("torch.md").read_text(encoding="utf-8")
        assert "The pytest plugin's fixture `remote_cache_torch`" in torch_docs  # its chapter
        assert sorted(set(fixtures) - headings) == ["remote_cache_torch"]
