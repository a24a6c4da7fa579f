"""Write ``docs/benchmarks.md`` and ``docs/benchmarks.png`` from one run's figures."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return "not installed"


def _redis_server_version() -> str:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return "not installed"
    return out.split("v=")[1].split()[0] if "v=" in out else out.strip()


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu(),
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis-server": _redis_server_version(),
        "redis-py": _version("redis"),
        "hiredis": _version("hiredis"),
        "torch": _version("torch"),
    }


def _verdict(ratio: float | None, target: float) -> str:
    if ratio is None:
        return "not measured"
    return "met" if ratio >= target else "**missed**"


def markdown(results: dict[str, Any], info: dict[str, str]) -> str:
    """The page: machine, command, and a table per benchmark."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); every figure is the median of several",
        "interleaved rounds, and ratios compare subjects measured side by side in the same run.",
        "The machines here are shared and noisy: figures move by 10 to 20 % from run to run,",
        "so read the ratios, not the absolute numbers.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        "",
        "![ratios against their targets](benchmarks.png)",
        "",
        "## Controller against PyTorch 2.13's `RemoteCache`",
        "",
        "Same dict-backed backend on both sides, a 250-byte value; operations per second.",
        "`passthrough` and `json`: a plain `RemoteCache` subclass with that serde on each side;",
        "`RemoteFxGraphCache`: the shipped cache (JSON, upstream's keys) against PyTorch's own.",
        "",
        "| cache or serde | operation | ours | PyTorch 2.13 | ratio | target | |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in results["controller"]:
        torch = f"{row['torch']:,.0f}" if row["torch"] else "torch not installed"
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "-"
        lines.append(
            f"| {row['serde']} | {row['operation']} | {row['ours']:,.0f} | {torch} | {ratio} | "
            f"{row['target']}x | {_verdict(row['ratio'], row['target'])} |"
        )
    lines += [
        "",
        "## `RedisRemoteCache` against raw redis-py",
        "",
        "One local `redis-server` on loopback; ours includes the key format, JSON, the counters",
        "and the circuit breaker. Operations per second, with redis-py's hiredis parser and",
        "with its pure-Python one.",
        "",
        "| parser | operation | ours | raw redis-py | ratio | target | |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in results["redis"]["raw"]:
        parser = "hiredis" if row["hiredis"] else "Python"
        lines.append(
            f"| {parser} | {row['operation']} | {row['ours']:,.0f} | {row['raw']:,.0f} | "
            f"{row['ratio']:.2f}x | {row['target']}x | {_verdict(row['ratio'], row['target'])} |"
        )
    lines += [
        "",
        "## Batches: 100 keys in one call against 100 calls",
        "",
        "Keys per second. Standalone: one `MGET`, and one `MSET` (a pipeline of `SET ... EX`",
        "with a TTL). Cluster: `MGET`s per slot, and one pipeline per master.",
        "",
        "| where | operation | batch | single calls | ratio | target | |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in results["redis"]["batches"]:
        lines.append(
            f"| {row['where']} | {row['operation']} | {row['batch']:,.0f} | "
            f"{row['single']:,.0f} | {row['ratio']:.1f}x | {row['target']:.0f}x | "
            f"{_verdict(row['ratio'], row['target'])} |"
        )
    lines += [
        "",
        "## Fixtures: set-up plus tear-down",
        "",
        "| fixture body | per use | target |",
        "|---|---:|---|",
    ]
    for name, seconds in results["fixtures"]:
        lines.append(f"| `{name}` | {seconds * 1e6:.1f} µs | under 1 ms |")
    lines.append("")
    if "faults" in results:
        from bench import faults

        lines += faults.markdown(results["faults"])
    if "torch_outage" in results:
        from bench import torch_outage

        lines += torch_outage.markdown(results["torch_outage"])
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> bool:
    """Draw every ratio against its target as a PNG; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels, ratios, targets = [], [], []
    for row in results["controller"]:
        if row["ratio"]:
            labels.append(f"controller {row['serde']} {row['operation']} vs torch")
            ratios.append(row["ratio"])
            targets.append(row["target"])
    for row in results["redis"]["raw"]:
        parser = "hiredis" if row["hiredis"] else "python parser"
        labels.append(f"redis {row['operation']} vs raw redis-py ({parser})")
        ratios.append(row["ratio"])
        targets.append(row["target"])
    for row in results["redis"]["batches"]:
        labels.append(f"batch {row['operation']} vs single, {row['where']}")
        ratios.append(row["ratio"])
        targets.append(row["target"])
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.2))
    positions = range(len(labels))
    colours = ["#2e7d32" if r >= t else "#c62828" for r, t in zip(ratios, targets, strict=True)]
    axes.barh(list(positions), ratios, color=colours)
    axes.scatter(targets, list(positions), marker="|", s=300, color="black", label="target")
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("ratio (higher is better; log scale)")
    axes.set_title("remote_cache: measured ratios against their targets")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(results: dict[str, Any]) -> list[Path]:
    """Write the page and the chart; return what was written."""
    page = DOCS / "benchmarks.md"
    page.write_text(markdown(results, machine()))
    written = [page]
    png = DOCS / "benchmarks.png"
    if chart(results, png):
        written.append(png)
    else:
        print("matplotlib is not installed: no chart (pip install --group bench)")
    return written
