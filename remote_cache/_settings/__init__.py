"""Redis backend settings: arguments, then REMOTE_CACHE_*, then TORCHINDUCTOR_*, and the
hiding of passwords in URLs and messages. Re-exports the names other packages use.

Modules, lowest first (each imports only those before it):

- ``options``: the query options redis-py accepts, and ASCII number readers.
- ``passwords``: where the passwords are in a URL or any text.
- ``urls``: ``RedisUrl``, the URL parser, ``canonical_url``.
- ``redaction``: ``redact_url``, ``url_secrets``, ``scrub``.
- ``values``: each setting's check, ``parse_redis_url``, ``MAX_EXPIRE``.
- ``environment``: ``RedisSettings``, ``UNSET``, the defaults, ``resolve_redis_settings``,
  ``resolve_max_value_bytes``.
"""

from __future__ import annotations

from remote_cache._settings.environment import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_RETRY_AFTER,
    DEFAULT_TIMEOUT,
    NEVER,
    UNSET,
    RedisSettings,
    Unset,
    resolve_max_value_bytes,
    resolve_redis_settings,
)
from remote_cache._settings.redaction import redact_url, scrub, url_secrets
from remote_cache._settings.urls import URL_SCHEMES, RedisUrl, canonical_url
from remote_cache._settings.values import MAX_EXPIRE, parse_redis_url

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_TIMEOUT",
    "MAX_EXPIRE",
    "NEVER",
    "UNSET",
    "URL_SCHEMES",
    "RedisSettings",
    "RedisUrl",
    "Unset",
    "canonical_url",
    "parse_redis_url",
    "redact_url",
    "resolve_max_value_bytes",
    "resolve_redis_settings",
    "scrub",
    "url_secrets",
]
