"""The target of ``remote-cache check``: what the checks run on (an embedded fakeredis server,
a Redis URL behind an outage proxy, or a user's backend factory), its backends, and its outages."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from remote_cache import RedisRemoteCacheBackend, RemoteCacheBackend
from remote_cache._breaker import CircuitBreaker
from remote_cache._settings import parse_redis_url, redact_url, scrub, url_secrets
from remote_cache.testing._fakeredis import new_fake_server
from remote_cache.testing._proxy import OutageProxy

__all__ = ["Target"]


class Target:
    """Where the checks run: an embedded fakeredis server, a real URL (behind a proxy when it
    is TCP), or a user's backend factory."""

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float = 0.5,
        factory: Callable[[], RemoteCacheBackend[bytes]] | None = None,
        factory_name: str | None = None,
    ) -> None:
        if url is not None and factory is not None:
            raise ValueError("Expected a url or a factory, not both")
        self.url = url
        self.factory = factory
        self.factory_name = factory_name
        self.timeout = timeout
        self.run_id = f"remote-cache-check-{uuid.uuid4().hex[:12]}"
        self.breaker = CircuitBreaker()
        self.unix = url is not None and parse_redis_url(url).is_unix
        self._fake_server: Any = None
        self._proxy: OutageProxy | None = None
        self._direct: Any = None

    @property
    def description(self) -> str:
        """The server or backend, without any password."""
        if self.factory is not None:
            return f"backend {self.factory_name or getattr(self.factory, '__name__', '?')}"
        if self.url is None:
            return "embedded fakeredis"
        return redact_url(self.url)

    @contextlib.contextmanager
    def opened(self) -> Iterator[Target]:
        """Connect, then clean up; ``ConnectionError`` when the server cannot be reached."""
        if self.factory is not None:
            yield self
            return
        if self.url is None:
            import fakeredis

            self._fake_server = new_fake_server()
            self._direct = fakeredis.FakeRedis(server=self._fake_server)
            yield self
            return
        import redis

        self._direct = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        try:
            try:
                self._direct.ping()
            except redis.RedisError as exc:
                message = f"{self.description}: {type(exc).__name__}: {exc}"
                raise ConnectionError(scrub(message, url_secrets(self.url))) from None
            if not self.unix:  # the proxy is TCP: a unix socket is checked without drills
                self._proxy = OutageProxy.for_url(self.url)
            try:
                yield self
            finally:
                if self._proxy is not None:
                    self._proxy.close()
                self._delete_own_keys()
        finally:
            self._direct.close()

    def _delete_own_keys(self) -> None:
        pattern = f"pt2:{self.run_id}*"
        batch: list[bytes] = []
        for key in self._direct.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                self._direct.delete(*batch)
                batch.clear()
        if batch:
            self._direct.delete(*batch)

    def backend(self) -> RemoteCacheBackend[bytes]:
        """A backend for one cache: through the proxy for a URL, with a TTL on every write."""
        if self.factory is not None:
            return self.factory()
        if self.url is None:
            import fakeredis

            client = fakeredis.FakeRedis(server=self._fake_server)
            return RedisRemoteCacheBackend(client=client, retry_after=0, breaker=self.breaker)
        return RedisRemoteCacheBackend(
            url=self.url if self._proxy is None else self._proxy.url,
            expire=300,
            timeout=self.timeout,
            retry_after=0,
            breaker=self.breaker,
        )

    @property
    def no_drills(self) -> str:
        """Why a drill cannot run on this target."""
        if self.factory is not None:
            return "a user's backend has no server to take away; drills run on Redis URLs"
        if self.unix:
            return "drills go through a TCP proxy; run with a redis:// URL for them"
        return "the embedded server cannot hang; run with --url for this drill"

    def cache_id(self, name: str) -> str:
        """A cache id of this run's own, so nothing of anyone else's is touched."""
        return f"{self.run_id}-{name}"

    def raw_get(self, backend: RemoteCacheBackend[bytes], key: str) -> bytes | None:
        """Read a stored key directly: around the proxy, or from the user's ``backend``."""
        if self.factory is not None:
            return backend.get(key)
        value: bytes | None = self._direct.get(key)
        return value

    def raw_set(self, backend: RemoteCacheBackend[bytes], key: str, data: bytes) -> None:
        """Write a key directly (with a TTL on a real server), or into the user's ``backend``."""
        if self.factory is not None:
            backend.put(key, data)
            return
        self._direct.set(key, data, ex=None if self.url is None else 300)

    def down(self) -> bool:
        """Make the server unreachable for the caches; False when the target cannot."""
        if self._proxy is not None:
            self._proxy.cut()
        elif self._fake_server is not None:
            self._fake_server.connected = False
        else:
            return False
        return True

    def hang(self) -> bool:
        """Make the server accept and never answer; False when the target cannot."""
        if self._proxy is None:
            return False
        self._proxy.blackhole()
        return True

    def up(self) -> None:
        """End any outage."""
        if self._proxy is not None:
            self._proxy.restore()
        elif self._fake_server is not None:
            self._fake_server.connected = True
