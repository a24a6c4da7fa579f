"""Security: no secret in any output, no pickle, SCAN not KEYS, other people's data untouched."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from remote_cache import (
    BackendError,
    ConfigurationError,
    RedisRemoteCacheBackend,
    RemoteFxGraphCache,
)
from remote_cache.cli import main
from remote_cache.testing import RedisServer

PACKAGE = Path(__file__).resolve().parent.parent / "remote_cache"
SECRET = "pa55-w0rd-never-shown"


# The only uses allowed, none of them on cached bytes: (file, the line as written).
ALLOWED_UNSAFE = {
    # `python -m remote_cache.torch SCRIPT` runs the user's own program, as `python SCRIPT`.
    ("torch.py", "exec(code, module.__dict__)  # running the user's program is the point"),
    # The conformance suite writes values that look like pickles (bytes it never loads) ...
    ("testing/conformance/_values.py", "import pickle"),
    ("testing/conformance/_values.py", 'pickle.dumps({"pickled": [1, 2]}, protocol=0),'),
    ("testing/conformance/_values.py", 'pickle.dumps({"pickled": [1, 2]}, protocol=5),'),
    # ... and hands the backend under test to a fresh interpreter it starts itself.
    ("testing/conformance/_processes.py", "import pickle"),
    ("testing/conformance/_processes.py", "pickled = pickle.dumps(backend)"),
    ("testing/conformance/_processes.py", "backend = pickle.loads(pickled)"),
}


def test_no_pickle_or_eval_anywhere() -> None:
    """Cached bytes are data: nothing in the package can turn them into code."""
    unsafe = re.compile(
        r"\b(pickle|marshal|shelve|dill|cloudpickle)\b|\beval\(|\bexec\(|yaml\.load\("
    )
    found = {
        (path.relative_to(PACKAGE).as_posix(), line.strip())
        for path in PACKAGE.rglob("*.py")
        for line in path.read_text().splitlines()
        if unsafe.search(line) and not line.lstrip().startswith("#")
    }
    assert found - ALLOWED_UNSAFE == set()


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
def test_check_scans_and_leaves_other_data_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # What it scans and leaves alone is checked, not speed: a loaded run once took over the
    # default 1 s for the check's batch of 1,200 keys.
    monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", "2.5")
    with RedisServer() as server:
        client = server.client()
        client.set("someone-elses", b"data")
        client.set("pt2:their-cache::k:c1", b'"theirs"')
        client.config_resetstat()
        out, err = io.StringIO(), io.StringIO()
        status = main(["check", "--url", server.url, "--examples", "10"], out=out, err=err)
        assert status == 0, out.getvalue() + err.getvalue()
        stats = client.info("commandstats")
        assert "cmdstat_scan" in stats
        for command in ("keys", "flushall", "flushdb"):
            assert f"cmdstat_{command}" not in stats
        assert sorted(client.keys()) == [b"pt2:their-cache::k:c1", b"someone-elses"]


AWKWARD = "p/w#r?d@x%2F%:y z"
"""A password with every character that fools a URL parser."""


@pytest.mark.redis
class TestAwkwardPassword:
    """A password holding ``/ # ? @ %`` works when percent-encoded and is never shown."""

    def test_works_and_never_shown(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="remote_cache")
        with RedisServer(password=AWKWARD) as server:
            assert "%2F" in server.url  # percent-encoded by the harness
            backend = RedisRemoteCacheBackend(url=server.url, timeout=2)
            backend.put("k", b"v")
            assert backend.get("k") == b"v"
            wrong = server.url.replace("p%2Fw", "p%2Fq")
            failing = RedisRemoteCacheBackend(url=wrong, timeout=2, retry_after=0)
            shown = [repr(backend), repr(failing)]
            with pytest.raises(BackendError) as info:
                failing.get("k")
            shown += [str(info.value), repr(info.value)]
            cache = RemoteFxGraphCache("awkward", backend=failing)
            assert cache.get("k") is None
            for argv in (["inspect", "--url", server.url], ["inspect", "--url", wrong],
                         ["check", "--url", wrong, "--examples", "1"]):  # fmt: skip
                out, err = io.StringIO(), io.StringIO()
                status = main(argv, out=out, err=err)
                assert status == (0 if argv[-1] == server.url else 2), err.getvalue()
                shown += [out.getvalue(), err.getvalue()]
            shown += [record.getMessage() for record in caplog.records]
        everything = "\n".join(shown)
        assert "WRONGPASS" in everything or "AuthenticationError" in everything
        for form in (AWKWARD, quote(AWKWARD, safe=""), "p/w", "p%2Fw", "y z", "y%20z"):
            assert form not in everything

    def test_raw_password_is_refused_without_showing_it(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            RedisRemoteCacheBackend(url=f"redis://:{AWKWARD}@127.0.0.1:6379/0")
        assert info.value.name == "url"
        for form in ("p/w", "y z", "r?d"):
            assert form not in str(info.value)
