"""The plugin's fixtures and the set-ups behind them, run in this process.

tests/testing/test_plugin.py runs the fixtures as a downstream project meets them, in a
pytest subprocess. Here the same fixtures are requested by our own tests (the plugin loads
through the pytest11 entry point) or run by an in-process pytest (``runpytest_inprocess``),
so that what they do is checked, and measured, without a process of their own.
"""

from __future__ import annotations

import runpy
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# Imported before any in-process pytest run: pytester forgets the modules such a run imports.
import remote_cache
import remote_cache.testing._proxy
import remote_cache.testing._torch
from remote_cache import RemoteAutotuneCache, RemoteFxGraphCache
from remote_cache.exceptions import MissingDependencyError
from remote_cache.testing import (
    InMemoryBackend,
    RedisClusterFixture,
    RedisClusterServer,
    RedisServer,
    RedisServerError,
    find_redis_server,
)
from remote_cache.testing._fixtures import RecorderFixture
from remote_cache.testing._processes import spawn, stop_process
from remote_cache.testing._server_fixtures import external_redis, own_redis

MAIN = Path(remote_cache.__file__).parent / "__main__.py"


def inprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in this process on pytester's folder (the plugin comes from pytest11)."""
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


class TestMemoryHandles:
    """What the memory, recorder, outage, override and stats fixtures hand the test."""

    def test_memory_entries_and_clear(self, remote_cache_memory: Any) -> None:
        RemoteFxGraphCache("fx").put("k", [1])
        assert remote_cache_memory.entries == {"pt2:fx::k:c1": b"[1]"}
        remote_cache_memory.clear()
        assert remote_cache_memory.entries == {}
        assert RemoteFxGraphCache("fx").get("k") is None

    def test_recorder_calls_in_order(self, remote_cache_recorder: RecorderFixture) -> None:
        cache = RemoteFxGraphCache("fx")
        cache.put("k", 1)
        assert cache.get("k") == 1
        assert cache.get("absent") is None
        assert remote_cache_recorder.ops() == ["put", "get", "get"]
        calls = remote_cache_recorder.calls
        assert [(c.key, c.data, c.result) for c in calls] == [
            ("pt2:fx::k:c1", b"1", None),
            ("pt2:fx::k:c1", None, b"1"),
            ("pt2:fx::absent:c1", None, None),
        ]
        assert remote_cache_recorder.entries == {"pt2:fx::k:c1": b"1"}

    def test_outage_down_up_flaky_slow(self, remote_cache_outage: Any) -> None:
        cache = RemoteFxGraphCache("fx")
        cache.put("k", 1)
        remote_cache_outage.down()
        assert cache.get("k") is None
        with pytest.raises(ConnectionError):
            remote_cache_outage.injector.get("x")
        remote_cache_outage.up()
        assert cache.get("k") == 1  # stored before the outage, still there
        remote_cache_outage.flaky(1.0)
        assert cache.get("k") is None
        remote_cache_outage.restore()
        remote_cache_outage.slow(0.001)
        assert cache.get("k") == 1
        assert remote_cache_outage.injected == 3

    def test_override_one_class(self, remote_cache_override: Any, remote_cache_stats: Any) -> None:
        special = InMemoryBackend()
        remote_cache_override(RemoteAutotuneCache, lambda: special)
        RemoteAutotuneCache("a").put("k", 1)
        assert list(special.entries) == ["pt2:a::k:c1"]
        assert RemoteAutotuneCache("a").get("k") == 1
        assert remote_cache_stats["RemoteAutotuneCache"].hit == 1


class TestExternalServer:
    """``--remote-cache-redis-url``: a server not ours, where the test's keys go under a
    prefix of their own and nothing else is read, written or deleted."""

    PREFIX = "run[1]*?:"  # glob characters of its own: patterns must escape them

    def test_caches_and_client_stay_in_the_namespace(self, redis_server: RedisServer) -> None:
        raw = redis_server.client()
        raw.set("theirs", b"precious")
        raw.set("run1xy:z", b"matches the prefix taken as a glob")
        with external_redis(redis_server.url, prefix=self.PREFIX) as handle:
            assert handle.server is None
            assert handle.url == redis_server.url
            RemoteFxGraphCache("fx").put("k", [1])
            assert RemoteFxGraphCache("fx").get("k") == [1]
            assert raw.get(b"run[1]*?:pt2:fx::k:c1") == b"[1]"

            client = handle.client
            assert client.get("theirs") is None
            assert client.mset({"a": 1, "b": 2})  # keys at every other argument, to the last
            assert client.mget("a", "b") == [b"1", b"2"]
            assert raw.get(b"run[1]*?:a") == b"1"
            assert sorted(client.keys()) == [b"a", b"b", b"pt2:fx::k:c1"]
            assert client.keys("a*") == [b"a"]
            assert sorted(client.scan_iter()) == [b"a", b"b", b"pt2:fx::k:c1"]
            assert client.execute_command("SCAN", 0, "MATCH", "b*", "COUNT", 100) == (0, [b"b"])
            assert client.dbsize() == 3
            assert client.randomkey() in {b"a", b"b", b"pt2:fx::k:c1"}
            # EVAL's keys move with numkeys: the server's COMMAND GETKEYS finds them.
            assert client.eval("return redis.call('GET', KEYS[1])", 1, "a") == b"1"
            assert client.ping() is True  # no key at all
            with client.pipeline() as pipe:
                pipe.set("c", 3).get("c")
                assert pipe.execute() == [True, b"3"]
            assert raw.get(b"run[1]*?:c") == b"3"
            assert client.connection_pool.connection_kwargs["port"] == redis_server.port

            assert client.flushdb() is True  # only the test's own keys
            assert client.dbsize() == 0
            assert client.randomkey() is None
            assert raw.get("theirs") == b"precious"
            client.set("left-behind", 1)
        assert sorted(raw.keys()) == [b"run1xy:z", b"theirs"]  # left-behind deleted on exit

    def test_scan_match_from_redis_py(self, redis_server: RedisServer) -> None:
        with external_redis(redis_server.url) as handle:
            handle.client.mset({"a": 1, "b": 2})
            assert list(handle.client.scan_iter(match="a*")) == [b"a"]

    def test_subcommand_keys_are_prefixed(self, redis_server: RedisServer) -> None:
        with external_redis(redis_server.url) as handle:
            handle.client.set("a", "12345")
            assert handle.client.object("encoding", "a") == b"int"

    def test_plugin_option_and_proxy(
        self, pytester: pytest.Pytester, redis_server: RedisServer
    ) -> None:
        raw = redis_server.client()
        raw.set("theirs", b"precious")
        pytester.makepyfile(
            """
            from remote_cache import RemoteFxGraphCache

            def test_through_the_proxy(remote_cache_redis, remote_cache_proxy):
                assert remote_cache_redis.server is None
                RemoteFxGraphCache("fx").put("k", 1)
                assert remote_cache_redis.client.get("pt2:fx::k:c1") == b"1"
                assert remote_cache_redis.client.get("theirs") is None
                remote_cache_proxy.cut()
                assert RemoteFxGraphCache("fx").get("k") is None
            """
        )
        inprocess(pytester, f"--remote-cache-redis-url={redis_server.url}").assert_outcomes(
            passed=1
        )
        assert raw.keys() == [b"theirs"]

    def test_needs_redis_py(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "redis", None)
        with (
            pytest.raises(MissingDependencyError, match=r"needs redis-py.*remote-cache\[redis\]"),
            external_redis("redis://127.0.0.1:1"),
        ):
            pass


class TestOwnServerPutBack:
    """A server the plugin started: what a test changed is put back for the next test,
    with ``CONFIG SET`` when it can be, by a restart when it cannot."""

    def test_config_put_back_without_a_restart(self, fresh_redis_server: RedisServer) -> None:
        server = fresh_redis_server
        pid = server.pid
        with own_redis(server) as handle:
            assert handle.server is server
            RemoteFxGraphCache("fx").put("k", 1)
            assert handle.client.dbsize() == 1
            handle.client.config_set("maxmemory", "1mb")
            handle.client.config_set("maxmemory-policy", "allkeys-lru")
        assert server.pid == pid
        config = server.client().config_get("maxmemory*")
        assert (config["maxmemory"], config["maxmemory-policy"]) == ("0", "noeviction")
        with own_redis(server) as handle:  # emptied before the next test
            assert handle.client.dbsize() == 0

    def test_acl_change_restarts(self, fresh_redis_server: RedisServer) -> None:
        server = fresh_redis_server
        pid = server.pid
        with own_redis(server) as handle:
            handle.client.acl_setuser("intruder", enabled=True, nopass=True)
        assert server.pid != pid
        assert [user.split()[1] for user in server.client().acl_list()] == ["default"]

    def test_password_restarts(self, fresh_redis_server: RedisServer) -> None:
        server = fresh_redis_server
        pid = server.pid
        with own_redis(server) as handle:
            handle.client.config_set("requirepass", "s3cret")
        assert server.pid != pid
        assert server.client().ping() is True  # no password any more

    def test_killed_server_started_again(self, fresh_redis_server: RedisServer) -> None:
        server = fresh_redis_server
        with own_redis(server) as handle:
            handle.server.kill()  # type: ignore[union-attr]
            assert RemoteFxGraphCache("fx").get("k") is None  # fails open
        assert server.running
        server.kill()
        with own_redis(server) as handle:  # a server killed between tests is started too
            assert handle.client.ping() is True


class TestPluginRefusals:
    """What the plugin says when a fixture cannot work: one line naming what is missing."""

    def test_missing_extras(self, pytester: pytest.Pytester) -> None:
        pytester.makeconftest(
            """
            import sys

            import pytest

            @pytest.fixture(scope="session", autouse=True)
            def without_extras():
                patch = pytest.MonkeyPatch()
                for name in ("redis", "fakeredis", "torch"):
                    patch.setitem(sys.modules, name, None)
                yield
                patch.undo()
            """
        )
        pytester.makepyfile(
            """
            def test_redis(remote_cache_redis):
                pass

            def test_cluster(remote_cache_redis_cluster):
                pass

            def test_fakeredis(remote_cache_fakeredis):
                pass

            def test_torch(remote_cache_torch):
                pass
            """
        )
        result = inprocess(pytester, "--remote-cache-redis-url=redis://127.0.0.1:1")
        result.assert_outcomes(errors=4)
        result.stdout.fnmatch_lines(
            [
                "*the remote_cache_redis fixture needs redis-py*remote-cache?redis?*",
                "*the remote_cache_redis_cluster fixture needs redis-py*",
                "*remote_cache_fakeredis needs fakeredis*remote-cache?testing?*",
                "*remote_cache_torch needs torch*remote-cache?torch?*",
            ]
        )

    def test_missing_binary_and_bad_markers(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            import pytest

            def test_server(remote_cache_redis):
                pass

            def test_cluster(remote_cache_redis_cluster):
                pass

            @pytest.mark.remote_cache_cluster(1)
            def test_positional(remote_cache_redis_cluster):
                pass

            @pytest.mark.remote_cache_cluster(shards=1)
            def test_unknown_keyword(remote_cache_redis_cluster):
                pass

            @pytest.mark.remote_cache_cluster(replicas=3)
            def test_too_many(remote_cache_redis_cluster):
                pass

            @pytest.mark.remote_cache_cluster(proxied="yes")
            def test_proxied_text(remote_cache_redis_cluster):
                pass

            @pytest.mark.remote_cache_cluster(replicas=1, proxied=True)
            def test_proxied_replicas(remote_cache_redis_cluster):
                pass
            """
        )
        result = inprocess(pytester, "--remote-cache-redis-server=/nonexistent/redis-server")
        result.assert_outcomes(errors=7)
        result.stdout.fnmatch_lines(
            [
                "*the remote_cache_redis fixture needs redis-server*",
                "*the remote_cache_redis_cluster fixture needs redis-server*",
                "*remote_cache_cluster takes only replicas=N*",
                "*remote_cache_cluster takes only replicas=N*",
                "*remote_cache_cluster(replicas=3): expected 0, 1 or 2*",
                "*remote_cache_cluster(proxied='yes'): expected True or False*",
                "*remote_cache_cluster(proxied=True) takes no replicas*",
            ]
        )


KEYS = [f"k{i}" for i in range(30)]


@pytest.mark.redis
class TestClusterFixture:
    """``remote_cache_redis_cluster`` in this process: kill, restart, failover, put back."""

    @pytest.mark.remote_cache_cluster(replicas=1)
    def test_failover_then_first_layout_again(self, remote_cache_redis_cluster: Any) -> None:
        handle = remote_cache_redis_cluster
        cluster = handle.cluster
        assert handle.url == cluster.url
        RemoteFxGraphCache("c").put_many({key: key for key in KEYS})
        victim = handle.node_for_key("pt2:c::k0:c1")
        promoted = handle.failover(victim)
        assert handle.node_for_key("pt2:c::k0:c1") == promoted != victim
        handle.restart(victim)  # back as the replica of the node that took over
        assert cluster.replicas_of(promoted) == [victim]
        handle.kill(cluster.replicas_of((victim + 1) % 3)[0])
        assert not cluster.running

        cluster.restore()  # what the fixture does after each test
        assert cluster.running
        assert cluster.master_indexes() == [0, 1, 2]
        assert handle.node_for_key("pt2:c::k0:c1") == victim
        assert RemoteFxGraphCache("c").get_many(KEYS) == {key: key for key in KEYS}
        with pytest.raises(RedisServerError, match="no failover of node 1 was started"):
            cluster.wait_for_failover(1)

    def test_failover_needs_replicas(self) -> None:
        handle = RedisClusterFixture(RedisClusterServer(), client=None)  # never started
        try:
            with pytest.raises(RuntimeError, match=r"remote_cache_cluster\(replicas=1\)"):
                handle.failover(0)
        finally:
            handle.cluster.stop()


class TestClusterServer:
    """``RedisClusterServer`` before it starts, and a start that fails."""

    def test_arguments_refused(self) -> None:
        with pytest.raises(ValueError, match="replicas >= 0 but got -1"):
            RedisClusterServer(replicas=-1)

    def test_without_redis_cli(self, monkeypatch: pytest.MonkeyPatch) -> None:
        binary = find_redis_server()
        which = shutil.which
        monkeypatch.setattr(
            shutil, "which", lambda name, **kw: None if name == "redis-cli" else which(name, **kw)
        )
        with pytest.raises(FileNotFoundError, match="'redis-cli' was not found"):
            RedisClusterServer(binary=binary)

    def test_unstarted_describes_itself_and_times_out(self) -> None:
        cluster = RedisClusterServer(replicas=1, startup_timeout=0.2)
        try:
            ports = [node.port for node in cluster.nodes]
            assert len(set(ports)) == 6
            assert repr(cluster) == (
                f"<RedisClusterServer 127.0.0.1:{','.join(map(str, ports))} 3 masters, "
                "1 replica(s) each>"
            )
            assert cluster.urls == [node.url for node in cluster.nodes]
            assert cluster.url == cluster.nodes[0].url
            assert not cluster.running
            with pytest.raises(RedisServerError, match=r"did not become ready within 0\.2 s"):
                cluster.wait_ready()
        finally:
            cluster.stop()

    @pytest.mark.redis
    def test_failed_create_stops_every_node(self) -> None:
        cluster = RedisClusterServer()
        cluster.cli = shutil.which("false") or "/bin/false"
        with pytest.raises(RedisServerError, match="redis-cli --cluster create failed"):
            cluster.start()
        assert not any(node.running for node in cluster.nodes)


class TestProcesses:
    """Children that die with the run."""

    def test_graceful_stop_terminates(self) -> None:
        process = spawn(["sleep", "60"])
        stop_process(process, graceful=True)
        assert process.returncode == -signal.SIGTERM

    def test_stop_of_an_ended_process(self) -> None:
        process = spawn(["true"])
        process.wait(timeout=10)
        stop_process(process, graceful=True)
        assert process.returncode == 0


class TestCtrlCWhileTheCommandLoads:
    """``python -m remote_cache``: a Ctrl-C before the command's own handler is in place is
    one line and exit 130 too (run here: a child cannot be interrupted at that point
    reliably, and its coverage tracer would be running Python code there)."""

    @pytest.mark.parametrize(
        ("argv", "line"),
        [
            (["check", "--json"], "remote-cache check: interrupted\n"),
            (["--help"], "remote-cache: interrupted\n"),
        ],
    )
    def test_interrupted_while_loading(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        argv: list[str],
        line: str,
    ) -> None:
        def interrupted() -> int:
            raise KeyboardInterrupt

        monkeypatch.setattr("remote_cache.cli.run_program", interrupted)
        monkeypatch.setattr(sys, "argv", ["remote-cache", *argv])
        previous = signal.getsignal(signal.SIGINT)
        try:
            with pytest.raises(SystemExit) as exit_info:
                # run_path: pytest's assertion rewriter loads remote_cache (a pytest11 plugin's
                # package), and runpy.run_module cannot take code from that loader.
                runpy.run_path(str(MAIN), run_name="__main__")
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # a second Ctrl-C too
        finally:
            signal.signal(signal.SIGINT, previous)
        assert exit_info.value.code == 130
        assert capsys.readouterr() == ("", line)


class TestOutageKeepsTheDeadline:
    """``slow()`` past the Redis backend's deadline is what production sees: a miss at it."""

    def test_slower_than_the_deadline_is_a_miss_at_the_deadline(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        from remote_cache import cache_stats
        from remote_cache.testing._fixtures import outage_backends

        monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", "0.05")
        with outage_backends() as outage:
            cache = RemoteFxGraphCache("fx")
            cache.put("k", 1)
            outage.slow(0.5)
            started = time.monotonic()
            assert cache.get("k") is None  # production: no answer within the timeout
            cache.put("j", 2)  # counted as failed; stored, as by a slow server
            took = time.monotonic() - started
        assert 0.1 <= took < 0.4  # two deadlines, not two latencies
        stats = cache_stats["RemoteFxGraphCache"]
        assert (stats.hit, stats.miss, stats.fail_open) == (0, 1, 2)
        assert cache_stats["backend:FaultInjectingBackend"].exception == 2
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1
        assert "BackendTimeoutError" in warnings[0].getMessage()
        assert outage.entries == {"pt2:fx::k:c1": b"1", "pt2:fx::j:c1": b"2"}

    def test_slower_but_within_the_deadline_is_a_late_hit(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from remote_cache.testing._fixtures import outage_backends

        monkeypatch.setenv("REMOTE_CACHE_REDIS_TIMEOUT", "2")
        with outage_backends() as outage:
            RemoteFxGraphCache("fx").put("k", 1)
            outage.slow(0.05)
            started = time.monotonic()
            assert RemoteFxGraphCache("fx").get("k") == 1
            assert time.monotonic() - started >= 0.05

    def test_the_default_deadline_is_the_redis_backends(self) -> None:
        from remote_cache.testing._fixtures import outage_backends

        with outage_backends() as outage:
            assert outage.injector.deadline == 1.0


class TestOneBackendFixture:
    """Two fixtures that each choose every cache's backend: an error naming both."""

    def test_two_backend_fixtures_fail_the_test(self, pytester: pytest.Pytester) -> None:
        pytester.makepyfile(
            """
            def test_memory_and_outage(remote_cache_memory, remote_cache_outage):
                pass

            def test_recorder_and_fakeredis(remote_cache_fakeredis, remote_cache_recorder):
                pass

            def test_one_is_fine(remote_cache_outage, remote_cache_stats, remote_cache_override):
                pass
            """
        )
        result = inprocess(pytester)
        result.assert_outcomes(passed=1, errors=2)
        result.stdout.fnmatch_lines(
            [
                "*remote_cache_memory and remote_cache_outage both choose the backend*",
                "*remote_cache_*and remote_cache_* both choose the backend*",
            ]
        )
