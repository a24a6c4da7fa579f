"""Threads and forked children on a real server: values right, counters exact."""

from __future__ import annotations

import json
import os
import threading

import pytest

from remote_cache import RemoteAutotuneCache, RemoteFxGraphCache, cache_stats
from remote_cache._redis import close_shared_clients
from remote_cache.testing import RedisServer

pytestmark = pytest.mark.redis

THREADS, OPERATIONS = 8, 300


def hammer(make_cache: object, shared: bool) -> None:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    one = make_cache() if shared else None  # type: ignore[operator]

    def work(index: int) -> None:
        cache = one if shared else make_cache()  # type: ignore[operator]
        barrier.wait()
        try:
            for i in range(OPERATIONS):
                key = f"t{index}-{i % 10}"
                if i % 3 == 0:
                    cache.put(key, {"thread": index, "i": i})
                elif i % 3 == 1:
                    got = cache.get(key)
                    assert got is None or got["thread"] == index
                else:
                    assert cache.get(f"absent-{index}") is None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize("shared", [True, False], ids=["one-cache", "a-cache-each"])
def test_eight_threads(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)
    hammer(lambda: RemoteFxGraphCache("threads"), shared)
    total = THREADS * OPERATIONS
    stat = cache_stats["RemoteFxGraphCache"]
    assert stat.put == total // 3
    assert stat.hit + stat.miss == 2 * total // 3
    assert stat.fail_open == 0
    backend = cache_stats["backend:RedisRemoteCacheBackend"]
    assert (backend.put, backend.hit + backend.miss) == (stat.put, 2 * total // 3)
    assert backend.hit == stat.hit


# Python 3.12+ warns when a process with threads forks (xdist and proxies run threads);
# the child here only uses the cache and exits, which is what the test is about.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_uses_its_parents_cache(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTE_CACHE_REDIS_URL", redis_server.url)
    cache = RemoteAutotuneCache("fork")
    cache.put("from-parent", [1, 2])
    assert cache.get("from-parent") == [1, 2]  # the parent holds an open connection now
    before = cache_stats["RemoteAutotuneCache"]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the same cache object, with the parent's pool and counters
        try:
            os.close(read_end)
            inherited = cache_stats["RemoteAutotuneCache"]
            cache.put("from-child", {"pid": os.getpid()})
            seen = [cache.get("from-parent"), cache.get("from-child"), cache.get("absent")]
            after = cache_stats["RemoteAutotuneCache"]
            report = {
                "seen": seen,
                "inherited": [inherited.hit, inherited.put],
                "after": [after.hit, after.miss, after.put, after.fail_open],
            }
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read())
    assert os.waitpid(pid, 0)[1] == 0
    assert report["seen"] == [[1, 2], {"pid": pid}, None]
    assert report["inherited"] == [before.hit, before.put]
    assert report["after"] == [before.hit + 2, before.miss + 1, before.put + 1, 0]
    # The parent's counters did not see the child's calls, and its connection still works.
    assert cache_stats["RemoteAutotuneCache"] == before
    assert cache.get("from-child") == {"pid": pid}
    close_shared_clients()
