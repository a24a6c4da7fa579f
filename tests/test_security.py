"""Security: no secret in any output, no pickle, SCAN not KEYS, other people's data untouched."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from remote_cache import (
    BackendError,
    RedisRemoteCacheBackend,
    RemoteFxGraphCache,
)
from remote_cache.testing import RedisServer
from remote_cache.testing.cli import main

PACKAGE = Path(__file__).resolve().parent.parent / "remote_cache"
SECRET = "pa55-w0rd-never-shown"


def test_no_pickle_or_eval_anywhere() -> None:
    """Cached bytes are data: nothing in the package can turn them into code."""
    unsafe = re.compile(
        r"\b(pickle|marshal|shelve|dill|cloudpickle)\b|\beval\(|\bexec\(|yaml\.load\("
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if unsafe.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


@pytest.mark.redis
class TestSecretsNeverShown:
    def test_repr_errors_logs_and_cli(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="remote_cache")
        with RedisServer(password=SECRET) as server:
            wrong = server.url.replace(SECRET, SECRET[::-1])
            shown: list[str] = []
            for url in (server.url, wrong):
                backend = RedisRemoteCacheBackend(url=url, timeout=0.5, retry_after=0)
                shown += [repr(backend), backend.description, str(backend.settings.describe())]
                try:
                    backend.get("k")
                except BackendError as exc:
                    shown += [str(exc), repr(exc)]
                cache = RemoteFxGraphCache("secrets", backend=backend)
                cache.put("k", 1)
                shown.append(repr(cache))
            for argv in (["check", "--url", wrong, "--examples", "3"], ["inspect", "--url", wrong],
                         ["inspect", "--url", server.url]):  # fmt: skip
                out, err = io.StringIO(), io.StringIO()
                main(argv, out=out, err=err)
                shown += [out.getvalue(), err.getvalue()]
            shown += [record.getMessage() for record in caplog.records]
            everything = "\n".join(shown)
            assert "AuthenticationError" in everything or "WRONGPASS" in everything
            assert SECRET not in everything
            assert SECRET[::-1] not in everything


@pytest.mark.redis
def test_check_scans_and_leaves_other_data_alone() -> None:
    with RedisServer() as server:
        client = server.client()
        client.set("someone-elses", b"data")
        client.set("pt2:their-cache::k:c1", b'"theirs"')
        client.config_resetstat()
        out, err = io.StringIO(), io.StringIO()
        assert main(["check", "--url", server.url, "--examples", "10"], out=out, err=err) == 0
        stats = client.info("commandstats")
        assert "cmdstat_scan" in stats
        for command in ("keys", "flushall", "flushdb"):
            assert f"cmdstat_{command}" not in stats
        assert sorted(client.keys()) == [b"pt2:their-cache::k:c1", b"someone-elses"]
