"""The pytest plugin, loaded as an installed user project loads it: through the entry point."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from remote_cache.testing import RedisServer

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tinycompiler"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in a subprocess: no conftest of ours, the plugin comes from pytest11."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def copy_example(pytester: pytest.Pytester) -> None:
    for path in EXAMPLE.rglob("*.py"):
        target = pytester.path / path.relative_to(EXAMPLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    pytester.makeini("[pytest]\npythonpath = .\nfilterwarnings = error\n")


class TestExampleProject:
    """The sample downstream project passes with the fixtures, alone and under xdist."""

    def test_example_passes(self, pytester: pytest.Pytester) -> None:
        copy_example(pytester)
        result = run(pytester, "-v")
        result.assert_outcomes(passed=11)
        result.stdout.fnmatch_lines(["*test_proxy_faults_bounded_and_recovered*blackhole*PASSED*"])

    def test_example_passes_under_xdist(self, pytester: pytest.Pytester) -> None:
        copy_example(pytester)
        run(pytester, "-n", "2").assert_outcomes(passed=11)

    def test_redis_tests_marked(self, pytester: pytest.Pytester) -> None:
        copy_example(pytester)
        result = run(pytester, "-m", "not remote_cache_redis")
        result.assert_outcomes(passed=8, deselected=3)


class TestMemoryFixtures:
    """Memory, recorder, outage, stats and override fixtures, and that they restore."""

    def test_fixtures_and_restoration(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            import pytest
            from remote_cache import (
                RemoteCache, RemoteFxGraphCache, RemoteAutotuneCache, cache_stats,
                BackendUnavailableError,
            )
            from remote_cache.testing import InMemoryBackend

            def test_memory_shared(remote_cache_memory, remote_cache_stats):
                RemoteFxGraphCache("fx").put("k", {"a": 1})
                assert RemoteFxGraphCache("fx").get("k") == {"a": 1}
                assert remote_cache_memory.entries == {"pt2:fx::k:c1": b'{"a": 1}'}
                assert remote_cache_stats["RemoteFxGraphCache"].hit == 1

            def test_restored_after_memory():
                assert RemoteCache.backend_override_cls is None
                assert "backend_override_cls" not in vars(RemoteFxGraphCache)

            def test_stats_isolated(remote_cache_stats):
                assert remote_cache_stats.snapshot() == {}

            def test_recorder(remote_cache_recorder):
                cache = RemoteFxGraphCache("fx")
                cache.put("k", 1)
                cache.get("k")
                cache.get_many(["k", "j"])
                assert remote_cache_recorder.ops() == ["put", "get", "get_many"]
                call = remote_cache_recorder.calls[0]
                assert (call.key, call.data, call.error) == ("pt2:fx::k:c1", b"1", None)
                assert remote_cache_recorder.calls[2].result == {"pt2:fx::k:c1": b"1"}

            def test_outage(remote_cache_outage):
                cache = RemoteFxGraphCache("fx")
                cache.put("k", 1)
                remote_cache_outage.down()
                assert cache.get("k") is None
                with pytest.raises(ConnectionError):
                    remote_cache_outage.injector.get("x")
                remote_cache_outage.up()
                assert cache.get("k") == 1
                remote_cache_outage.flaky(1.0)
                assert cache.get("k") is None
                remote_cache_outage.restore()
                remote_cache_outage.slow(0.01)
                assert cache.get("k") == 1
                assert remote_cache_outage.injected == 3

            def test_override_one_class(remote_cache_override):
                special = InMemoryBackend()
                remote_cache_override(RemoteAutotuneCache, lambda: special)
                RemoteAutotuneCache("a").put("k", 1)
                assert list(special.entries) == ["pt2:a::k:c1"]

            def test_override_restored():
                assert "backend_override_cls" not in vars(RemoteAutotuneCache)

            def test_failure_inside_still_restores(remote_cache_memory):
                raise RuntimeError("the test fails")

            def test_after_failure():
                assert RemoteCache.backend_override_cls is None
            """
        )
        result = run(pytester)
        result.assert_outcomes(passed=8, failed=1)


class TestFakeRedisFixture:
    """Redis caches meet fakeredis, and .disconnect() looks like an outage."""

    def test_fakeredis(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            import os
            from remote_cache import RemoteFxGraphCache, RedisRemoteCacheBackend

            def test_round_trip_and_outage(remote_cache_fakeredis, remote_cache_stats):
                cache = RemoteFxGraphCache("fx")
                cache.put("k", [1])
                assert remote_cache_fakeredis.client.get("pt2:fx::k:c1") == b"[1]"
                remote_cache_fakeredis.disconnect()
                assert cache.get("k") is None
                assert remote_cache_fakeredis.entries == {b"pt2:fx::k:c1": b"[1]"}
                remote_cache_fakeredis.reconnect()
                assert RemoteFxGraphCache("fx").get("k") == [1]
                assert remote_cache_stats["RemoteFxGraphCache"].fail_open == 1

            def test_restored():
                assert RedisRemoteCacheBackend.client_factory is None
                assert "REMOTE_CACHE_REDIS_RETRY_AFTER" not in os.environ
            """
        )
        run(pytester).assert_outcomes(passed=2)


@pytest.mark.redis
class TestRedisFixtures:
    """Real servers: isolation, external servers kept intact, nothing left running."""

    def test_isolation_between_tests(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            from remote_cache import RemoteFxGraphCache

            def test_writes(remote_cache_redis):
                RemoteFxGraphCache("iso").put("k", 1)
                assert remote_cache_redis.client.dbsize() == 1

            def test_starts_empty(remote_cache_redis):
                assert remote_cache_redis.client.dbsize() == 0
                assert RemoteFxGraphCache("iso").get("k") is None

            def test_killed_server_restarted_for_next(remote_cache_redis):
                remote_cache_redis.server.kill()
                assert RemoteFxGraphCache("iso").get("k") is None

            def test_after_kill(remote_cache_redis):
                RemoteFxGraphCache("iso").put("k", 2)
                assert RemoteFxGraphCache("iso").get("k") == 2
            """
        )
        run(pytester).assert_outcomes(passed=4)

    def test_cluster_fixture(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            from remote_cache import RemoteFxGraphCache
            from remote_cache.testing import RedisClusterFixture

            def test_writes(remote_cache_redis_cluster: RedisClusterFixture):
                RemoteFxGraphCache("c").put_many({f"k{i}": i for i in range(30)})
                assert RemoteFxGraphCache("c").get("k7") == 7

            def test_kills_a_master(remote_cache_redis_cluster):
                assert RemoteFxGraphCache("c").get("k7") is None  # emptied per test
                remote_cache_redis_cluster.kill(1)

            def test_restarted_for_next(remote_cache_redis_cluster):
                assert remote_cache_redis_cluster.cluster.running
                RemoteFxGraphCache("c").put_many({f"k{i}": i for i in range(30)})
                assert len(RemoteFxGraphCache("c").get_many([f"k{i}" for i in range(30)])) == 30
            """
        )
        result = run(pytester, "-v", "-m", "remote_cache_redis")
        result.assert_outcomes(passed=3)

    def test_valkey_through_the_option(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            from remote_cache import RemoteFxGraphCache

            def test_on_valkey(remote_cache_redis, remote_cache_proxy):
                assert remote_cache_redis.server.build.product == "valkey"
                assert "valkey_version" in remote_cache_redis.client.info("server")
                RemoteFxGraphCache("v").put("k", [1])
                assert RemoteFxGraphCache("v").get("k") == [1]
                remote_cache_redis.client.config_set("maxmemory", "1mb")
                remote_cache_redis.client.acl_setuser("intruder", enabled=True, nopass=True)

            def test_next_test_restored(remote_cache_redis):
                client = remote_cache_redis.client
                assert client.dbsize() == 0
                assert client.config_get("maxmemory") == {"maxmemory": "0"}
                assert [user.split()[1] for user in client.acl_list()] == ["default"]
            """
        )
        run(pytester, "--remote-cache-redis-server=valkey-server").assert_outcomes(passed=2)

    def test_valkey_cluster_through_the_option(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            from remote_cache import RemoteFxGraphCache

            def test_on_valkey(remote_cache_redis_cluster):
                cluster = remote_cache_redis_cluster.cluster
                assert {node.build.product for node in cluster.nodes} == {"valkey"}
                RemoteFxGraphCache("c").put_many({f"k{i}": i for i in range(30)})
                assert len(RemoteFxGraphCache("c").get_many([f"k{i}" for i in range(30)])) == 30
            """
        )
        run(pytester, "--remote-cache-redis-server=valkey-server").assert_outcomes(passed=1)

    def test_cluster_with_replicas_fails_over_and_is_put_back(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile(
            """
            import pytest
            from remote_cache import RemoteFxGraphCache

            KEYS = [f"k{i}" for i in range(30)]

            @pytest.mark.remote_cache_cluster(replicas=1)
            def test_failover(remote_cache_redis_cluster):
                cluster = remote_cache_redis_cluster
                cache = RemoteFxGraphCache("c")
                cache.put_many({key: key for key in KEYS})
                victim = cluster.node_for_key("pt2:c::k0:c1")
                promoted = cluster.failover(victim)
                assert cluster.node_for_key("pt2:c::k0:c1") == promoted != victim
                assert cluster.cluster.master_indexes() == sorted({0, 1, 2} - {victim} | {promoted})

            @pytest.mark.remote_cache_cluster(replicas=1)
            def test_layout_put_back(remote_cache_redis_cluster):
                cluster = remote_cache_redis_cluster.cluster
                assert cluster.running
                assert cluster.master_indexes() == [0, 1, 2]
                assert sorted(i for m in range(3) for i in cluster.replicas_of(m)) == [3, 4, 5]
                assert RemoteFxGraphCache("c").get_many(KEYS) == {}  # emptied

            def test_no_replicas_by_default(remote_cache_redis_cluster):
                assert len(remote_cache_redis_cluster.cluster.nodes) == 3
                with pytest.raises(RuntimeError, match="remote_cache_cluster.replicas=1"):
                    remote_cache_redis_cluster.failover(0)

            @pytest.mark.remote_cache_cluster(replicas="one")
            def test_bad_marker(remote_cache_redis_cluster):
                pass
            """
        )
        result = run(pytester)
        result.assert_outcomes(passed=3, errors=1)
        result.stdout.fnmatch_lines(["*remote_cache_cluster(replicas='one'): expected 0, 1 or 2*"])

    def test_external_server_data_survives(self, pytester: pytest.Pytester) -> None:
        with RedisServer() as server:
            client = server.client()
            client.set("users-data", b"precious")
            client.set("pt2:fx::shared:c1", b'"theirs"', ex=1000)
            pytester.makepyfile(
                """
                from remote_cache import RemoteFxGraphCache

                def test_overwrites_and_adds(remote_cache_redis, remote_cache_proxy):
                    assert remote_cache_redis.server is None
                    cache = RemoteFxGraphCache("fx")
                    assert cache.get("shared") is None  # the server's own data is not seen
                    cache.put("shared", "ours")
                    cache.put_many({"new1": 1, "new2": 2})
                    assert RemoteFxGraphCache("fx").get("shared") == "ours"
                    assert remote_cache_redis.client.get("pt2:fx::shared:c1") == b'"ours"'
                    remote_cache_redis.client.set("written-directly", b"1")
                    remote_cache_redis.client.hset("a-hash", "f", "v")
                    assert remote_cache_redis.client.dbsize() == 5
                    remote_cache_proxy.cut()
                    assert cache.get("new1") is None

                def test_second(remote_cache_redis):
                    assert RemoteFxGraphCache("fx").get("shared") is None
                    assert RemoteFxGraphCache("fx").get("new1") is None
                    assert remote_cache_redis.client.get("written-directly") is None
                    remote_cache_redis.client.flushall()  # only the test's own keys
                """
            )
            result = run(pytester, f"--remote-cache-redis-url={server.url}")
            result.assert_outcomes(passed=2)
            assert client.get("users-data") == b"precious"
            assert client.get("pt2:fx::shared:c1") == b'"theirs"'
            assert 0 < client.ttl("pt2:fx::shared:c1") <= 1000
            assert sorted(client.keys()) == [b"pt2:fx::shared:c1", b"users-data"]

    def test_concurrent_runs_on_one_server_are_isolated(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            import os, pathlib, time
            from remote_cache import RemoteFxGraphCache

            RUN = os.environ["RUN_NAME"]
            OTHER = "b" if RUN == "a" else "a"
            HERE = pathlib.Path(__file__).parent

            def wait_for(name):
                deadline = time.monotonic() + 60
                while not (HERE / name).exists():
                    assert time.monotonic() < deadline, f"the other run never wrote {name}"
                    time.sleep(0.01)

            def test_shared_server(remote_cache_redis):
                cache = RemoteFxGraphCache("fx")
                cache.put("k", RUN)
                remote_cache_redis.client.set("raw", RUN)
                (HERE / f"{RUN}-wrote").touch()
                wait_for(f"{OTHER}-wrote")
                assert cache.get("k") == RUN
                assert RemoteFxGraphCache("fx").get_many(["k"]) == {"k": RUN}
                assert remote_cache_redis.client.get("raw") == RUN.encode()
                assert remote_cache_redis.client.dbsize() == 2
                (HERE / f"{RUN}-read").touch()
                wait_for(f"{OTHER}-read")

            def test_next_test_starts_empty(remote_cache_redis):
                assert RemoteFxGraphCache("fx").get("k") is None
                assert remote_cache_redis.client.dbsize() == 0
                remote_cache_redis.client.set("raw", RUN)
            """
        )
        with RedisServer() as server:
            client = server.client()
            client.set("users-data", b"precious")
            runs = {
                name: subprocess.Popen(
                    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                     *extra, f"--remote-cache-redis-url={server.url}"],
                    cwd=pytester.path,
                    env={**os.environ, "RUN_NAME": name},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                for name, extra in (("a", []), ("b", ["-v"]))
            }  # fmt: skip
            outputs = {}
            for name, process in runs.items():
                try:
                    outputs[name] = process.communicate(timeout=120)[0].decode()
                finally:
                    process.kill()
            for name, process in runs.items():
                assert process.returncode == 0, outputs[name]
                assert "2 passed" in outputs[name], outputs[name]
            assert client.keys() == [b"users-data"]

    def test_config_changes_do_not_reach_the_next_test(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            from remote_cache import RemoteFxGraphCache

            pids = []

            def test_changes_maxmemory(remote_cache_redis):
                pids.append(remote_cache_redis.server.pid)
                remote_cache_redis.client.config_set("maxmemory", "1mb")
                remote_cache_redis.client.config_set("maxmemory-policy", "allkeys-lru")

            def test_put_back_without_a_restart(remote_cache_redis):
                assert remote_cache_redis.server.pid == pids[0]
                config = remote_cache_redis.client.config_get("maxmemory*")
                assert config["maxmemory"] == "0"
                assert config["maxmemory-policy"] == "noeviction"

            def test_locks_the_server(remote_cache_redis):
                client = remote_cache_redis.client
                client.config_set("maxmemory", "1")
                client.acl_setuser("intruder", enabled=True, nopass=True)
                client.config_set("requirepass", "s3cret")

            def test_next_test_works(remote_cache_redis):
                cache = RemoteFxGraphCache("fx")
                cache.put("k", [1])
                assert RemoteFxGraphCache("fx").get("k") == [1]
                client = remote_cache_redis.client
                assert client.config_get("maxmemory") == {"maxmemory": "0"}
                assert client.config_get("requirepass") == {"requirepass": ""}
                assert [user.split()[1] for user in client.acl_list()] == ["default"]
            """
        )
        run(pytester).assert_outcomes(passed=4)

    def test_functions_scripts_and_pauses_do_not_carry_over(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makepyfile(
            """
            import time

            import pytest

            LIBRARY = "#!lua name=lib\\nredis.register_function('one', function() return 1 end)"

            @pytest.mark.parametrize("run", [1, 2])
            def test_loads_a_library(remote_cache_redis, run):
                client = remote_cache_redis.client
                assert client.execute_command("FUNCTION", "LIST") == []
                client.execute_command("FUNCTION", "LOAD", LIBRARY)
                sha = client.script_load("return 2")
                assert client.script_exists(sha) == [True]
                client.execute_command("CLIENT", "PAUSE", "20000", "WRITE")

            def test_next_test_writes_at_once(remote_cache_redis):
                started = time.monotonic()
                remote_cache_redis.client.set("k", "v")
                assert time.monotonic() - started < 5
                assert remote_cache_redis.client.script_exists("0" * 40) == [False]
            """
        )
        run(pytester).assert_outcomes(passed=3)

    def test_missing_redis_py_says_which_extra(self, pytester: pytest.Pytester) -> None:
        pytester.makeconftest(
            """
            import sys

            class BlockRedis:
                def find_spec(self, name, path=None, target=None):
                    if name == "redis" or name.startswith("redis."):
                        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                    return None

            sys.meta_path.insert(0, BlockRedis())
            for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
                del sys.modules[name]
            """
        )
        pytester.makepyfile(
            """
            def test_needs_redis(remote_cache_redis):
                pass

            def test_needs_a_cluster(remote_cache_redis_cluster):
                pass
            """
        )
        result = run(pytester)
        result.assert_outcomes(errors=2)
        result.stdout.fnmatch_lines(
            [
                "*the remote_cache_redis fixture needs redis-py*remote-cache?redis?*",
                "*the remote_cache_redis_cluster fixture needs redis-py*remote-cache?redis?*",
            ]
        )
        result.stdout.no_fnmatch_line("*Traceback*")

    def test_missing_binary_is_an_error_not_a_skip(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            def test_needs_redis(remote_cache_redis):
                pass
            """
        )
        result = run(pytester, "--remote-cache-redis-server=/nonexistent/redis-server")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*apt-get install redis-server*"])

    def test_everything_stopped_even_when_tests_fail(self, pytester: pytest.Pytester) -> None:
        record = pytester.path / "started.txt"
        pytester.makepyfile(
            f"""
            import os

            def test_fails_mid_use(remote_cache_redis, remote_cache_proxy):
                with open({str(record)!r}, "w") as f:
                    f.write(f"{{remote_cache_redis.server.pid}} {{remote_cache_proxy.port}}")
                raise AssertionError("boom")
            """
        )
        run(pytester).assert_outcomes(failed=1)
        pid_text, port_text = record.read_text().split()
        pid, port = int(pid_text), int(port_text)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
