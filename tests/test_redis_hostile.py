"""The Redis backend against loopback servers that do not speak Redis, or speak it too slowly."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_cache import (
    BackendTimeoutError,
    BackendUnavailableError,
    RedisRemoteCache,
    RedisRemoteCacheBackend,
    cache_stats,
)

TIMEOUT = 0.2
BOUND = TIMEOUT + 0.5  # the documented bound of every call

# URL forms: no handshake; AUTH first (a password); HELLO first (RESP3).
URL_FORMS = [
    "redis://127.0.0.1:{port}",
    "redis://:pw@127.0.0.1:{port}",
    "redis://127.0.0.1:{port}/0?protocol=3",
]

HOSTILE_REPLIES = [
    b"+OK\r\n",  # OK to everything, GET included
    b":1\r\n",  # an integer where a string or OK belongs
    b"*2\r\n$1\r\na\r\n:5\r\n",  # an array of the wrong length and types
    b"*1\r\n*0\r\n\r\n",  # an array holding an array
    b"%1\r\n+a\r\n:1\r\n",  # a RESP3 map
    b"-ERR no\r\n",  # an error to everything
    b"$-1\r\n",  # nil to everything, SET included
    b"$5\r\nhel",  # a bulk string cut short
    b"$99999999999999999999\r\n",  # a length out of range
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body>hi</body></html>",
    b"\x00\xff\x13\x37garbage\r\n\r\n",
    b"",  # accepts, reads, never answers
]


class HostileServer:
    """A loopback TCP server that answers every chunk it receives with ``reply``.

    ``drip`` sends the reply one byte at a time, that many seconds apart; with ``auth_ok``
    an AUTH command is answered OK at once. ``close()`` stops
    the accepting thread and every connection's thread; it is safe to call twice.
    """

    def __init__(self, reply: bytes = b"", drip: float | None = None) -> None:
        self.reply = reply
        self.drip = drip
        self.greeting = b""  # sent unasked as a connection is accepted, which is then closed
        self.auth_ok = False
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._sockets.append(conn)
            if self.greeting:  # a server refusing the connection says why, and closes it
                with contextlib.suppress(OSError):
                    conn.sendall(self.greeting)
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                reply, drip = self.reply, self.drip
                if self.auth_ok and b"\r\nAUTH\r\n" in data:
                    reply, drip = b"+OK\r\n", None
                if drip is None:
                    conn.sendall(reply)
                    continue
                for byte in reply:
                    if self._stop.wait(drip):
                        return
                    conn.sendall(bytes([byte]))
        except OSError:
            return  # the client hung up
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)
        for conn in self._sockets:
            conn.close()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    try:
        yield server
    finally:
        server.close()


def make_cache(server: HostileServer, url_form: str = URL_FORMS[0]) -> RedisRemoteCache:
    """A fail-open cache whose breaker probes on every call: each call meets the server."""
    backend = RedisRemoteCacheBackend(
        url=url_form.format(port=server.port), timeout=TIMEOUT, retry_after=0
    )
    return RedisRemoteCache("hostile", backend=backend)


def bulk_payloads(stream: bytes) -> list[bytes]:
    """Every simple-string line and bulk-string payload that appears anywhere in ``stream``."""
    found = [match.group(1) for match in re.finditer(rb"\+([^\r\n]*)\r\n", stream)]
    for match in re.finditer(rb"\$(\d{1,9})\r\n", stream):
        start = match.end()
        found.append(stream[start : start + int(match.group(1))])
    return found


def values_the_server_sent(reply: bytes) -> set[str]:
    """The JSON values (as canonical text) a cache could decode from a stream of ``reply``."""
    values = set()
    for payload in bulk_payloads(reply * 8):  # a connection sees the reply once per command
        try:
            values.add(json.dumps(json.loads(payload), sort_keys=True))
        except (ValueError, RecursionError):
            continue
    return values


def timed(call: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"a call took {elapsed:.2f} s, over the bound of {BOUND} s"
    return result


def attack(server: HostileServer, reply: bytes, url_form: str) -> None:
    """get, put, get_many and put_many never raise, are bounded, and return nothing made up."""
    server.reply = reply
    cache = make_cache(server, url_form)
    allowed = values_the_server_sent(reply)

    def check(value: Any) -> None:
        if value is not None:
            assert json.dumps(value, sort_keys=True) in allowed, value

    check(timed(lambda: cache.get("k")))
    timed(lambda: cache.put("k", {"put": 1}))
    found = timed(lambda: cache.get_many(["a", "b", "c"]))
    assert set(found) <= {"a", "b", "c"}
    for value in found.values():
        check(value)
    timed(lambda: cache.put_many({"a": [1], "b": "two"}))


class TestHostileReplies:
    """A fail-open cache over a server that answers garbage never raises and never stalls."""

    @pytest.mark.parametrize("url_form", URL_FORMS, ids=["plain", "auth", "resp3"])
    @pytest.mark.parametrize("reply", HOSTILE_REPLIES, ids=repr)
    def test_fixed_replies(self, hostile: HostileServer, reply: bytes, url_form: str) -> None:
        attack(hostile, reply, url_form)

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        reply=st.one_of(
            st.binary(max_size=64),
            st.lists(
                st.sampled_from([*HOSTILE_REPLIES, b"$3\r\n[1]\r\n", b"*1\r\n", b"\r\n", b"$"]),
                max_size=4,
            ).map(b"".join),
        ),
        url_form=st.sampled_from(URL_FORMS),
    )
    def test_generated_replies(self, hostile: HostileServer, reply: bytes, url_form: str) -> None:
        attack(hostile, reply, url_form)

    def test_wrong_shapes_are_protocol_errors_that_open_the_breaker(
        self, hostile: HostileServer
    ) -> None:
        hostile.reply = b":1\r\n"
        backend = RedisRemoteCacheBackend(url=f"redis://127.0.0.1:{hostile.port}", timeout=TIMEOUT)
        with pytest.raises(BackendUnavailableError, match="protocol error"):
            backend.get("k")
        assert backend.breaker.is_open
        assert cache_stats["backend:RedisRemoteCacheBackend"].exception == 1

    def test_a_valid_reply_after_garbage_is_read_whole(self, hostile: HostileServer) -> None:
        cache = make_cache(hostile)
        hostile.reply = b"*3\r\n:1\r\n"  # an array that never ends: the client waits, then drops it
        assert timed(lambda: cache.get("k")) is None
        hostile.reply = b'$7\r\n{"a":1}\r\n'
        assert timed(lambda: cache.get("k")) == {"a": 1}


class TestSlowDrip:
    """A reply sent one byte at a time ends the call at the timeout, not at its last byte."""

    REPLY = b'$20\r\n"abcdefghijklmnopqr"\r\n'  # 27 bytes: 2.7 s at one byte per 0.1 s

    @pytest.mark.parametrize("url_form", URL_FORMS[:2], ids=["plain", "auth"])
    def test_drip_is_cut_at_the_deadline(self, hostile: HostileServer, url_form: str) -> None:
        hostile.reply, hostile.drip = self.REPLY, 0.1
        backend = RedisRemoteCacheBackend(
            url=url_form.format(port=hostile.port), timeout=TIMEOUT, retry_after=0
        )
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            backend.get("k")
        assert time.monotonic() - started < BOUND
        hostile.reply, hostile.drip, hostile.auth_ok = self.REPLY, None, True
        # The connection that was cut mid-reply is gone: the next call reads a whole reply.
        assert timed(lambda: backend.get("k")) == b'"abcdefghijklmnopqr"'

    def test_fail_open_cache_misses_in_time(self, hostile: HostileServer) -> None:
        hostile.reply, hostile.drip = self.REPLY, 0.1
        cache = make_cache(hostile)
        assert timed(lambda: cache.get("k")) is None
        assert timed(lambda: cache.get_many(["k"])) == {}
        assert cache_stats["backend:RedisRemoteCacheBackend"].exception == 2


class TestWhatAServerSaysUnasked:
    """A server refusing a connection sends the reason before it closes it (its client limit
    reached, protected mode): the error names that reason, not redis-py's "Connection not
    ready", whether it arrives before the command is sent or as its reply."""

    @staticmethod
    def _connection(server: HostileServer) -> Any:
        backend = RedisRemoteCacheBackend(url=f"redis://127.0.0.1:{server.port}", timeout=TIMEOUT)
        connection = backend.client().connection_pool.make_connection()
        connection.connect()
        time.sleep(0.05)  # what the server says has arrived before the pool asks
        return connection

    @pytest.mark.parametrize(
        "greeting",
        [
            b"-ERR max number of clients reached\r\n",  # MaxClientsReachedError (redis-py 6+)
            b"-DENIED Redis is running in protected mode\r\n",
        ],
    )
    def test_the_pool_meets_the_reason(self, hostile: HostileServer, greeting: bytes) -> None:
        import redis.exceptions

        hostile.greeting = greeting
        connection = self._connection(hostile)
        with pytest.raises(redis.exceptions.ConnectionError) as raised:
            connection.can_read()
        assert str(raised.value) in greeting.decode()

    def test_anything_else_is_left_to_the_pool(self, hostile: HostileServer) -> None:
        hostile.greeting = b"+OK\r\n"  # no refusal: the pool drops the connection as it is
        assert self._connection(hostile).can_read() is True

    def test_the_backend_names_the_reason(self, hostile: HostileServer) -> None:
        hostile.greeting = b"-ERR max number of clients reached\r\n"
        backend = RedisRemoteCacheBackend(
            url=f"redis://127.0.0.1:{hostile.port}", timeout=TIMEOUT, retry_after=0
        )
        for _ in range(5):  # before the command is sent, or as its reply: the same words
            with pytest.raises(BackendUnavailableError) as raised:
                backend.get("k")
            assert "Error: max number of clients reached" in str(raised.value)
