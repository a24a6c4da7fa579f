"""Time a cache outage costs ``torch.compile``: plain PyTorch 2.13 against the bridge.

Each run is a fresh process (``python -m bench.torch_outage child ...``) with torch's FX
graph and AOTAutograd remote caches on, that compiles a tiny function a few times
(``torch._dynamo.reset()`` between compiles, as a new model would) while the server is
black-holed, killed, out of memory, or slower than the timeout. "Lost" is the time spent
inside torch's remote cache ``get``/``put`` calls, per compile.

``python -m bench.torch_outage`` runs just this benchmark and rewrites its section of
docs/benchmarks.md; ``python -m bench`` runs it with the others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COMPILES = 3
SCENARIOS = ("no outage", "black hole", "killed server", "out of memory", "latency 1.5 s")
BRIDGE_TIMEOUT = 1.0  # the production default of REMOTE_CACHE_REDIS_TIMEOUT
LATENCY = 1.5
CHILD_LIMIT = 600.0
SECTION = "## torch.compile during a cache outage: plain PyTorch 2.13 against the bridge"


def tiny(x: Any) -> Any:
    """Two operations: enough for a forward and a backward graph."""
    return (x.sin() + 1) * 2


def child(urls: list[str], bridge: bool, compiles: int) -> list[list[dict[str, Any]]]:
    """In this process: compile ``compiles`` times against each URL in turn; the records."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Failed to initialize NumPy", UserWarning)
        import torch
    import torch._dynamo
    import torch._functorch.config
    import torch._inductor.config
    import torch._inductor.remote_cache as trc

    torch._inductor.config.fx_graph_cache = False
    torch._inductor.config.fx_graph_remote_cache = True
    torch._functorch.config.enable_autograd_cache = False
    torch._functorch.config.enable_remote_autograd_cache = True

    lost = [0.0]
    original_get, original_put = trc.RemoteCache.get, trc.RemoteCache.put

    def timed_get(self: Any, key: str) -> Any:
        start = time.perf_counter()
        try:
            return original_get(self, key)
        finally:
            lost[0] += time.perf_counter() - start

    def timed_put(self: Any, key: str, value: Any) -> None:
        start = time.perf_counter()
        try:
            original_put(self, key, value)
        finally:
            lost[0] += time.perf_counter() - start

    trc.RemoteCache.get = timed_get  # type: ignore[method-assign]
    trc.RemoteCache.put = timed_put  # type: ignore[method-assign]
    if bridge:
        from remote_cache.torch import install

        install()
    from torch._functorch._aot_autograd.autograd_cache import AOTAutogradCache

    return [_compiles(torch, url, compiles, lost, AOTAutogradCache) for url in urls]


def _compiles(
    torch: Any, url: str, compiles: int, lost: list[float], aot: Any
) -> list[dict[str, Any]]:
    os.environ["TORCHINDUCTOR_REDIS_URL"] = url
    aot.get_remote_cache.cache_clear()  # torch keeps one per process: a new server
    records = []
    expected = None
    for _ in range(compiles):
        torch._dynamo.reset()
        x = torch.arange(8, dtype=torch.float32, requires_grad=True)
        lost[0] = 0.0
        start = time.perf_counter()
        error = None
        try:
            torch.compile(tiny)(x).sum().backward()
        except Exception as exc:  # noqa: BLE001 - the outcome is what is measured
            error = f"{type(exc).__name__}: {str(exc).splitlines()[-1][:120]}"
        wall = time.perf_counter() - start
        if error is None:
            if expected is None:
                y = torch.arange(8, dtype=torch.float32, requires_grad=True)
                tiny(y).sum().backward()
                expected = y.grad
            if not torch.allclose(x.grad, expected):
                error = "wrong gradient"
        records.append({"lost": lost[0], "wall": wall, "error": error})
    return records


def run_child(
    urls: list[str], bridge: bool, compiles: int = COMPILES, *, cache_dir: str | None = None
) -> list[list[dict[str, Any]]]:
    """Run ``child`` in a fresh interpreter; its records, per URL."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("REMOTE_CACHE_", "TORCHINDUCTOR_REDIS")):
            del env[name]
    if cache_dir is not None:
        env["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    argv = [sys.executable, "-m", "bench.torch_outage", "child", ",".join(urls), str(compiles)]
    if bridge:
        argv.append("--bridge")
    done = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_LIMIT,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    records: list[list[dict[str, Any]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return records


@contextlib.contextmanager
def scenario(name: str) -> Iterator[str]:
    """A server URL in the state ``name`` describes, for the duration of the block."""
    from remote_cache.testing import OutageProxy, RedisServer

    with RedisServer() as server:
        if name == "no outage":  # the reference: what a working server costs
            yield server.url
            return
        if name == "killed server":
            url = server.url
            server.kill()
            yield url
            return
        if name == "out of memory":
            client = server.client()
            client.config_set("maxmemory", "1")
            client.config_set("maxmemory-policy", "noeviction")
            client.close()
            yield server.url
            return
        with OutageProxy.for_url(server.url) as proxy:
            if name == "black hole":
                proxy.blackhole()
            else:
                proxy.latency(LATENCY)
            yield proxy.url


def main(compiles: int = COMPILES) -> list[dict[str, Any]] | None:
    """Every scenario, plain torch and the bridge; None when torch is not installed."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        print("torch outage: torch is not installed (pip install torch==2.13.0): skipped")
        return None
    rows = []
    with tempfile.TemporaryDirectory(prefix="torch-outage-") as cache_dir:
        with scenario("killed server") as url:  # warms the cache folder: kernels built once
            run_child([url], bridge=True, compiles=1, cache_dir=cache_dir)
        for name in SCENARIOS:
            row: dict[str, Any] = {"scenario": name}
            for mode in ("plain", "bridge"):
                with scenario(name) as url:
                    row[mode] = run_child([url], mode == "bridge", compiles, cache_dir=cache_dir)[0]
            rows.append(row)
            print(f"torch outage: {name}: {_summary(row)}")
    return rows


def _cell(record: dict[str, Any]) -> str:
    text = f"{record['lost']:.2f} s"
    if record["error"]:
        text += f" (**failed**: {record['error'].split(':')[0]})"
    return text


def _later(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst of the compiles after the first."""
    later = records[1:]
    worst = max(later, key=lambda r: r["lost"])
    failed = [r for r in later if r["error"]]
    return {"lost": worst["lost"], "error": failed[0]["error"] if failed else None}


def _summary(row: dict[str, Any]) -> str:
    plain, bridge = row["plain"], row["bridge"]
    return (
        f"first {_cell(plain[0])} vs {_cell(bridge[0])}; "
        f"later {_cell(_later(plain))} vs {_cell(_later(bridge))}"
    )


def _ratio(plain: float, bridge: float) -> str:
    return f"{plain / max(bridge, 1e-4):,.0f}x"


def markdown(rows: list[dict[str, Any]] | None) -> list[str]:
    """The section of docs/benchmarks.md."""
    lines = [
        SECTION,
        "",
        "`python -m bench.torch_outage`. Each cell is one fresh process with torch's FX graph",
        "and AOTAutograd remote caches on (`TORCHINDUCTOR_REDIS_URL`), compiling a two-operation",
        f"function {COMPILES} times; *lost* is the time spent inside torch's remote cache calls",
        "for one compile. Plain torch uses redis-py's defaults; the bridge is `install()` with",
        f"the defaults (timeout {BRIDGE_TIMEOUT} s, circuit breaker 30 s). Later: the worst",
        "compile after the first. Goal: the bridge never fails a compile, loses at most its",
        "timeout plus 0.2 s on the first compile and under 50 ms on each later one.",
        "",
    ]
    if rows is None:
        return [*lines, "torch was not installed in this run.", ""]
    lines += [
        "| outage | first: plain | first: bridge | later: plain | later: bridge | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        plain, bridge = row["plain"], row["bridge"]
        later_plain, later_bridge = _later(plain), _later(bridge)
        total_plain = sum(r["lost"] for r in plain)
        total_bridge = sum(r["lost"] for r in bridge)
        lines.append(
            f"| {row['scenario']} | {_cell(plain[0])} | {_cell(bridge[0])} | "
            f"{_cell(later_plain)} | {_cell(later_bridge)} | "
            f"{_ratio(total_plain, total_bridge)} |"
        )
    lines += [
        "",
        "Ratio: time lost over all compiles, plain over bridge. A failed compile stopped at",
        "the error; its time lost is counted up to there. No outage: what a working server",
        "costs, for reference. A killed server (connection refused) is cheap for both: torch",
        "catches redis-py's `ConnectionError` and stops using Redis in that cache. Out of",
        "memory is a per-command error: the server answers, so the bridge keeps asking it",
        "(its gets still answer) and drops each refused put; plain torch fails the compile.",
        "",
    ]
    return lines


def write_section(rows: list[dict[str, Any]] | None, page: Path) -> None:
    """Replace (or append) this benchmark's section of ``page``."""
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + (text[end + 1 :] if end >= 0 else "")
    text = text.rstrip("\n") + "\n\n" + "\n".join(markdown(rows))
    page.write_text(text)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.torch_outage")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("child", help="compile against URLs and print JSON records")
    run.add_argument("urls", help="comma-separated server URLs, one after the other")
    run.add_argument("compiles", type=int)
    run.add_argument("--bridge", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = _parse(sys.argv[1:])
    if arguments.command == "child":
        urls = arguments.urls.split(",")
        print(json.dumps(child(urls, arguments.bridge, arguments.compiles)))
    else:
        found = main()
        target = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
        write_section(found, target)
        print(f"wrote {target}")
