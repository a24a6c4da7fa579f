"""``remote-cache inspect`` on real servers holding thousands of keys: SCAN only, exact counts."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from remote_cache.cli import main
from remote_cache.testing import RedisClusterFixture, RedisServer
from remote_cache.testing._processes import free_port
from tests.testing.test_terminal_output import HOSTILE, unsafe_in

pytestmark = pytest.mark.redis

LAYOUT = {"fx-graph-v1": 1500, "autotune": 1000, "weird*id[1]": 500}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def fill(client: Any) -> dict[str, dict[str, int]]:
    """Write LAYOUT's entries (every other one with a TTL) and some keys that are not ours."""
    expected: dict[str, dict[str, int]] = {}
    pipeline = client.pipeline(transaction=False)
    for cache_id, count in LAYOUT.items():
        total = 0
        for i in range(count):
            value = b"x" * (i % 50 + 1)
            total += len(value)
            pipeline.set(f"pt2:{cache_id}::key-{i:05d}:c1", value, ex=600 if i % 2 else None)
        expected[cache_id] = {"entries": count, "bytes": total, "with_ttl": count // 2}
    for i in range(100):
        pipeline.set(f"users:{i}", b"not ours")
    for i in range(10):
        pipeline.set(f"pt2:no-format-{i}", b"?")
    pipeline.hset("pt2:a-hash::k:c1", "field", "value")  # not a string: counted as other
    pipeline.execute()
    return expected


class TestInspect:
    def test_counts_per_cache_id_with_scan_only(self, redis_server: RedisServer) -> None:
        client = redis_server.client()
        expected = fill(client)
        client.config_resetstat()
        keys_before = client.dbsize()

        status, out, _ = run("inspect", "--url", redis_server.url, "--json")
        assert status == 0
        inventory = json.loads(out)
        found = {c["cache_id"]: c for c in inventory["caches"]}
        assert set(found) == set(LAYOUT)
        for cache_id, figures in expected.items():
            summary = found[cache_id]
            assert summary["entries"] == figures["entries"]
            assert summary["bytes"] == figures["bytes"]
            assert summary["with_ttl"] == figures["with_ttl"]
            assert len(summary["sample_keys"]) == 3
            assert all(key.startswith("key-") for key in summary["sample_keys"])
        assert inventory["entries"] == sum(LAYOUT.values())
        assert inventory["other_keys"] == 11
        assert len(inventory["other_samples"]) == 3  # shown, not only counted
        assert all(key.startswith("pt2:") for key in inventory["other_samples"])

        stats = client.info("commandstats")
        assert "cmdstat_scan" in stats
        assert "cmdstat_keys" not in stats
        assert not any(name in stats for name in ("cmdstat_set", "cmdstat_del", "cmdstat_flushall"))
        assert client.dbsize() == keys_before

    def test_one_cache_id_with_glob_characters(self, redis_server: RedisServer) -> None:
        client = redis_server.client()
        fill(client)
        client.set("pt2:weirdXid1::decoy:c1", b"matched by the unescaped glob")
        status, out, _ = run(
            "inspect", "--url", redis_server.url, "--cache-id", "weird*id[1]", "--json"
        )
        assert status == 0
        inventory = json.loads(out)
        assert [c["cache_id"] for c in inventory["caches"]] == ["weird*id[1]"]
        assert inventory["entries"] == LAYOUT["weird*id[1]"]

    def test_table(self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
        fill(redis_server.client())
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)  # found as caches find it
        status, out, _ = run("inspect", "--samples", "1")
        assert status == 0
        lines = out.splitlines()
        assert lines[0] == f"remote-cache inspect: {redis_server.url}"
        assert lines[1].split() == [
            "cache",
            "id",
            "entries",
            "bytes",
            "with",
            "TTL",
            "sample",
            "keys",
        ]
        assert any(
            line.split()[:3]
            == ["fx-graph-v1", "1,500", f"{sum(i % 50 + 1 for i in range(1500)):,}"]
            for line in lines
        )
        assert any(line.split()[:2] == ["total", "3,000"] for line in lines)
        assert "11 other keys under pt2: not in upstream's format: 'pt2:" in out

    def test_empty_server(self, redis_server: RedisServer) -> None:
        status, out, _ = run("inspect", "--url", redis_server.url, "--json")
        assert status == 0
        assert json.loads(out) == {
            "server": redis_server.url, "entries": 0, "bytes": 0, "other_keys": 0,
            "other_samples": [], "caches": [],
        }  # fmt: skip

    def test_password_never_printed(self) -> None:
        with RedisServer(password="inspect-secret") as server:
            fill(server.client())
            status, out, err = run("inspect", "--url", server.url)
            assert status == 0
            assert "inspect-secret" not in out + err
            assert "***" in out
            wrong = server.url.replace("inspect-secret", "wrong-secret")
            status, out, err = run("inspect", "--url", wrong)
            assert status == 2
            assert "secret" not in out + err

    def test_user_without_pttl_is_told_so(self, redis_server: RedisServer) -> None:
        admin = redis_server.client()
        fill(admin)
        admin.execute_command(
            "ACL", "SETUSER", "scanner", "on", ">scan-pass", "~*", "+scan", "+strlen", "+ping"
        )
        try:
            url = redis_server.url.replace("redis://", "redis://scanner:scan-pass@", 1)
            status, out, err = run("inspect", "--url", url)
        finally:
            admin.execute_command("ACL", "DELUSER", "scanner")
        assert status == 2
        assert out == ""
        assert "the server refused scan" in err
        assert "NoPermissionError" in err or "NOPERM" in err
        assert "scan-pass" not in err
        assert "TypeError" not in err

    def test_unreachable(self) -> None:
        status, _, err = run("inspect", "--url", f"redis://127.0.0.1:{free_port()}/0")
        assert status == 2
        assert "cannot reach" in err
        assert "--url" not in err  # it was given

    def test_unreachable_without_url_says_how_to_name_one(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        status, _, err = run("inspect")
        assert status == 2
        assert "cannot reach" in err
        assert "name one with --url redis://host:port" in err

    def test_bad_url(self) -> None:
        status, _, err = run("inspect", "--url", "http://example")
        assert status == 2
        assert "remote-cache inspect:" in err

    def test_cluster(self, remote_cache_redis_cluster: RedisClusterFixture) -> None:
        fill(remote_cache_redis_cluster.client)
        status, out, _ = run(
            "inspect", "--url", remote_cache_redis_cluster.url, "--cluster", "--json"
        )
        assert status == 0
        inventory = json.loads(out)
        assert inventory["entries"] == sum(LAYOUT.values())
        assert inventory["other_keys"] == 11


class TestHostileKeys:
    """Keys and cache ids holding escape sequences are shown escaped: one stored id, one row."""

    def test_table_has_no_control_characters(self, redis_server: RedisServer) -> None:
        client = redis_server.client()
        cache_ids = ["fx-graph-v1", *HOSTILE]
        for cache_id in cache_ids:
            for key in HOSTILE:
                client.set(f"pt2:{cache_id}::{key}:c1".encode("utf-8", "surrogatepass"), b"v")
        client.set(b"pt2:raw\x1b[2J\xff::\x9b\x07:c1", b"v")  # not UTF-8 at all
        status, out, err = run("inspect", "--url", redis_server.url, "--samples", "20")
        assert status == 0, err
        assert unsafe_in(out + err) == []
        lines = out.splitlines()
        assert len(lines) == 2 + len(cache_ids) + 1 + 1  # title, header, ids, raw id, total
        assert lines[-1].split()[:2] == ["total", f"{len(HOSTILE) * len(cache_ids) + 1}"]
        assert "\\x1b]0;pwned\\x07" in out
        assert "raw\\x1b[2J\\udcff" in out  # the byte 0xff, not the text "\\xff"

    def test_ambiguous_cache_id_refused(self, redis_server: RedisServer) -> None:
        client = redis_server.client()
        client.set("pt2:a::b::x:c1", b"cache a's key b::x")
        for cache_id in ("a::b", "a:", ":a", ""):
            status, out, err = run("inspect", "--url", redis_server.url, "--cache-id", cache_id)
            assert status == 2
            assert out == ""
            assert "--cache-id" in err
            assert repr(cache_id) in err
            assert err.count("\n") == 1
