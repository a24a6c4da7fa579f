"""``python -m bench``: run every benchmark, print the figures, write docs/benchmarks.md."""

import sys

from bench import controller, faults, fixtures, redis_path, report, torch_outage

results = {
    "controller": controller.main(),
    "redis": redis_path.main(),
    "fixtures": fixtures.main(),
    "faults": faults.main(),
    "torch_outage": torch_outage.main(),
}
if "--no-write" not in sys.argv[1:]:
    for path in report.write(results):
        print(f"wrote {path}")
