"""``LocalCache`` under writers in other processes, SIGKILLed at random moments mid-write.

While writer processes overwrite the same keys with values of up to megabytes, this process
reads them: every read is a whole value that a writer put under that key, or None, never a
part. Then the writers are killed (often in the middle of a write): the next put in the
folder sweeps the temporary files they left, and nothing else is left behind.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_cache import LocalCache, cache_stats
from remote_cache.testing._processes import spawn, stop_process
from tests.attack._harness import BOUND, open_descriptors, os_threads, settle
from tests.attack.conftest import fresh_process_state

pytestmark = pytest.mark.attack

KEYS = ("alpha", "beta")

WRITER = """
import sys
from remote_cache import LocalCache
root, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
cache = LocalCache("attack", root=root)
serial = 0
sys.stdout.write("ready\\n")
sys.stdout.flush()
while True:
    serial += 1
    for key in ("alpha", "beta"):
        cache.put(key, {"key": key, "serial": f"{name}-{serial}", "pad": "p" * size})
"""


def check_read(key: str, got: object, sizes: dict[str, int]) -> None:
    """A read is None or a whole value some writer put under ``key``."""
    if got is None:
        return
    assert isinstance(got, dict), f"{key}: read {got!r:.80}"
    assert got.get("key") == key, f"{key}: read another key's value {got.get('key')!r}"
    writer = str(got["serial"]).split("-")[0]
    assert len(got["pad"]) == sizes[writer], f"{key}: a part of {writer}'s value was read"


class TestKilledWriters:
    """Readers see whole values while writers die mid-write; their leftovers are swept."""

    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        sizes=st.lists(st.sampled_from([100, 50_000, 3_000_000]), min_size=1, max_size=3),
        kill_after=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    )
    def test_schedule(self, sizes: list[int], kill_after: float) -> None:
        fresh_process_state()
        descriptors, threads = open_descriptors(), os_threads()
        with tempfile.TemporaryDirectory(prefix="attack-local-") as root:
            writers: list[subprocess.Popen[bytes]] = []
            named = {f"w{i}": size for i, size in enumerate(sizes)}
            try:
                for name, size in named.items():
                    writer = spawn(
                        [sys.executable, "-c", WRITER, root, name, str(size)],
                        stdout=subprocess.PIPE,
                    )
                    writers.append(writer)
                for writer in writers:
                    assert writer.stdout is not None
                    assert writer.stdout.readline() == b"ready\n"
                reader = LocalCache("attack", root=root)
                reads = 0
                deadline = time.monotonic() + kill_after
                while True:  # read while they write, then kill them in the middle of it
                    for key in KEYS:
                        started = time.monotonic()
                        got = reader.get(key)
                        assert time.monotonic() - started < BOUND + 1.0
                        check_read(key, got, named)
                        reads += 1
                    if time.monotonic() >= deadline:
                        break
            finally:
                for writer in writers:
                    stop_process(writer)  # SIGKILL: a crash, often mid-write
                    if writer.stdout is not None:
                        writer.stdout.close()
            for key in KEYS:  # what the dead writers left reads whole, or not at all
                check_read(key, reader.get(key), named)
                reads += 1
            stat = cache_stats["LocalCache"]
            assert (stat.corrupt, stat.fail_open) == (0, 0)
            assert stat.hit + stat.miss == reads
            folder = Path(root) / "attack"
            LocalCache("attack", root=root).put("after", {"key": "after"})  # sweeps the folder
            left = sorted(path.name for path in folder.iterdir() if path.name.startswith("."))
            assert not left, f"temporary files of killed writers left behind: {left}"
        assert settle(open_descriptors, descriptors) <= descriptors
        assert settle(os_threads, threads) <= threads
