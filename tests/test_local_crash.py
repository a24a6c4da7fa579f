"""Temporary files of the local cache: recognisable, and swept once their writer is gone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from remote_cache import LocalCache, LocalCacheBackend, _local
from remote_cache._local import STALE_SECONDS, sweep_temporary_files
from remote_cache._process import reset_process_state

VALUE_BYTES = 8 * 1024 * 1024

# A writer that stops between writing its temporary file and renaming it into place, says
# so, and waits to be killed: the state a SIGKILL during a long write leaves behind.
WRITER = textwrap.dedent(
    """
    import os, sys
    from remote_cache import LocalCacheBackend

    def stop_before_rename(source, target):
        print("written", flush=True)
        sys.stdin.read()  # until killed

    os.replace = stop_before_rename
    LocalCacheBackend(sys.argv[1]).put("big", b"x" * int(sys.argv[2]))
    """
)


def _dead_pid() -> int:
    """The id of a process that ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def temporary_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.name.startswith(".tmp-"))


class TestKilledWriter:
    """A writer killed mid-write leaves a temporary file that the next writer deletes."""

    def test_sigkill_mid_write_then_swept_by_a_later_put(self, tmp_path: Path) -> None:
        folder = tmp_path / "entries"
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(VALUE_BYTES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline() == "written\n"
            [left] = temporary_files(folder)
            assert left.stat().st_size == VALUE_BYTES
            assert re.fullmatch(rf"\.tmp-[0-9a-f]{{8}}-{writer.pid}-[0-9a-f]{{12}}", left.name)
            # While the writer lives, nothing touches its file.
            assert sweep_temporary_files(folder) == 0
            LocalCacheBackend(folder).put("other", b"1")
            assert left.exists()
            os.kill(writer.pid, signal.SIGKILL)
            assert writer.wait(timeout=30) == -signal.SIGKILL
        finally:
            if writer.poll() is None:
                os.kill(writer.pid, signal.SIGKILL)
                writer.wait()
            for stream in (writer.stdin, writer.stdout):
                if stream is not None:
                    stream.close()
        assert temporary_files(folder) == [left]
        # A process's first put in a folder sweeps it (this one put there while the writer
        # lived: start afresh, as a new process would).
        reset_process_state(counters=False)
        LocalCache("entries", root=tmp_path).put("k", 1)
        assert temporary_files(folder) == []
        assert sorted(os.listdir(folder)) == ["k", "other"]


class TestSweepRules:
    """Only files whose writer is gone, or that nobody touched for an hour, are deleted."""

    def test_rules(self, tmp_path: Path) -> None:
        host = _local._HOST
        other = "f" * 8 if host != "f" * 8 else "e" * 8
        live_here = tmp_path / f".tmp-{host}-{os.getpid()}-{'a' * 12}"
        dead_here = tmp_path / f".tmp-{host}-{_dead_pid()}-{'d' * 12}"
        other_host = tmp_path / f".tmp-{other}-1234-{'b' * 12}"
        old_other_host = tmp_path / f".tmp-{other}-1235-{'c' * 12}"
        old_legacy = tmp_path / ".tmp-k2j3abc"  # mkstemp's names, before the host and pid
        old_not_ours = tmp_path / ".tmpk2j3abc"
        entry = tmp_path / "entry"
        every = (live_here, dead_here, other_host, old_other_host, old_legacy, old_not_ours, entry)
        for path in every:
            path.write_bytes(b"x")
        long_ago = time.time() - STALE_SECONDS - 60
        for path in (old_other_host, old_legacy, old_not_ours, entry):
            os.utime(path, (long_ago, long_ago))
        assert sweep_temporary_files(tmp_path) == 3
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
            path.name for path in (live_here, other_host, old_not_ours, entry)
        )
        assert sweep_temporary_files(tmp_path / "missing") == 0
