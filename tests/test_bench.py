"""The bench harness: timing and the page it writes (figures made up; nothing is timed)."""

from __future__ import annotations

from bench import report
from bench._timing import ops_per_second

RESULTS = {
    "controller": [
        {"serde": "passthrough", "operation": "get", "ours": 1e6, "torch": 4e5, "ratio": 2.5,
         "target": 2.0},
        {"serde": "json", "operation": "put", "ours": 3e5, "torch": None, "ratio": None,
         "target": 1.5},
    ],
    "redis": {
        "raw": [{"hiredis": False, "operation": "get", "ours": 80.0, "raw": 100.0, "ratio": 0.8,
                 "target": 0.85}],
        "batches": [{"where": "cluster (3 masters)", "operation": "put", "batch": 2e5,
                     "single": 1e4, "ratio": 20.0, "target": 10.0}],
    },
    "fixtures": [("remote_cache_memory", 1.05e-5)],
    "faults": {"rates": {"in-memory": 2e5, "fault layer, nothing applied": 1e5,
                         "fault layer, faults not matching": 9.5e4},
               "schedule_cost": 1.0526, "layer_cost": 2.0, "target": 1.1},
}  # fmt: skip


def test_ops_per_second_runs_every_subject_alike() -> None:
    calls = {"a": 0, "b": 0}

    def loop(name: str) -> object:
        def run(n: int) -> None:
            calls[name] += n

        return run

    rates = ops_per_second({"a": loop("a"), "b": loop("b")}, rounds=3, number=100, slices=4)
    assert set(rates) == {"a", "b"}
    assert all(rate > 0 for rate in rates.values())
    assert calls["a"] == calls["b"] == 100 + 3 * 100  # warm-up, then 3 rounds of 4 x 25


def test_page_reports_every_figure_and_verdict() -> None:
    page = report.markdown(RESULTS, {"date": "2026-11-22", "cores": "2"})
    assert "| date | 2026-11-22 |" in page
    assert "| passthrough | get | 1,000,000 | 400,000 | 2.50x | 2.0x | met |" in page
    assert "| json | put | 300,000 | torch not installed | - | 1.5x | not measured |" in page
    assert "| Python | get | 80 | 100 | 0.80x | 0.85x | **missed** |" in page
    assert "| cluster (3 masters) | put | 200,000 | 10,000 | 20.0x | 10x | met |" in page
    assert "| `remote_cache_memory` | 10.5 µs | under 1 ms |" in page
    assert "| fault layer, faults not matching | 95,000 | 2.11x |" in page
    assert "costs 1.053x the layer's time (target: at most 1.10x)" in page
    assert "make bench" in page


def test_machine_description() -> None:
    info = report.machine()
    assert {"date", "cpu", "cores", "python", "redis-py", "torch"} <= set(info)
