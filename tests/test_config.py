"""Settings resolution: arguments, then REMOTE_CACHE_*, then TORCHINDUCTOR_*, each validated."""

from __future__ import annotations

import pytest

from remote_cache import ConfigurationError, RedisRemoteCacheBackend, create_cache
from remote_cache._config import (
    DEFAULT_RETRY_AFTER,
    NEVER,
    UNSET,
    RedisSettings,
    redact_url,
    resolve_redis_settings,
)


class TestPrecedence:
    """Each setting is resolved on its own, in the documented order."""

    def test_defaults(self) -> None:
        assert resolve_redis_settings(environ={}) == RedisSettings()
        settings = RedisSettings()
        assert (settings.host, settings.port, settings.timeout) == ("localhost", 6379, 1.0)
        assert settings.retry_after == DEFAULT_RETRY_AFTER
        assert settings.expire is None
        assert settings.cluster is False

    def test_upstream_names_accepted(self) -> None:
        env = {
            "TORCHINDUCTOR_REDIS_HOST": "cache.local",
            "TORCHINDUCTOR_REDIS_PORT": "7000",
            "TORCHINDUCTOR_REDIS_EXPIRE": "60",
        }
        settings = resolve_redis_settings(environ=env)
        assert (settings.host, settings.port, settings.expire) == ("cache.local", 7000, 60)

    def test_ours_win_over_upstream_per_setting(self) -> None:
        env = {
            "TORCHINDUCTOR_REDIS_HOST": "upstream",
            "TORCHINDUCTOR_REDIS_PORT": "7000",
            "REMOTE_CACHE_REDIS_HOST": "ours",
        }
        settings = resolve_redis_settings(environ=env)
        assert (settings.host, settings.port) == ("ours", 7000)

    def test_arguments_win(self) -> None:
        env = {"REMOTE_CACHE_REDIS_TIMEOUT": "5", "REMOTE_CACHE_REDIS_URL": "redis://env:1/0"}
        settings = resolve_redis_settings(timeout=0.25, url="redis://arg:2/0", environ=env)
        assert (settings.timeout, settings.url) == (0.25, "redis://arg:2/0")

    def test_url_from_either_name_wins_over_host(self) -> None:
        env = {"TORCHINDUCTOR_REDIS_URL": "redis://u:9/0", "REMOTE_CACHE_REDIS_HOST": "h"}
        assert resolve_redis_settings(environ=env).url == "redis://u:9/0"

    def test_host_argument_beats_environment_url(self) -> None:
        env = {"REMOTE_CACHE_REDIS_URL": "redis://u:9/0"}
        settings = resolve_redis_settings(host="explicit", environ=env)
        assert (settings.url, settings.host) == (None, "explicit")
        assert resolve_redis_settings(url=None, environ=env).url is None

    def test_empty_variable_counts_as_unset(self) -> None:
        env = {"REMOTE_CACHE_REDIS_PORT": "", "TORCHINDUCTOR_REDIS_PORT": "7001"}
        assert resolve_redis_settings(environ=env).port == 7001

    def test_only_the_winner_is_validated(self) -> None:
        env = {"REMOTE_CACHE_REDIS_PORT": "7002", "TORCHINDUCTOR_REDIS_PORT": "garbage"}
        assert resolve_redis_settings(environ=env).port == 7002

    @pytest.mark.parametrize(
        ("value", "expected"), [("never", NEVER), ("NEVER", NEVER), ("0", 0.0), ("2.5", 2.5)]
    )
    def test_retry_after(self, value: str, expected: float | None) -> None:
        env = {"REMOTE_CACHE_REDIS_RETRY_AFTER": value}
        assert resolve_redis_settings(environ=env).retry_after == expected

    def test_retry_after_none_argument_means_never(self) -> None:
        assert resolve_redis_settings(retry_after=None, environ={}).retry_after is None

    @pytest.mark.parametrize(
        ("value", "expected"), [("1", True), ("true", True), ("0", False), ("False", False)]
    )
    def test_cluster(self, value: str, expected: bool) -> None:
        assert (
            resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_CLUSTER": value}).cluster
            is expected
        )

    def test_expire_none_argument_disables_ttl(self) -> None:
        env = {"REMOTE_CACHE_REDIS_EXPIRE": "60"}
        assert resolve_redis_settings(expire=None, environ=env).expire is None

    def test_unset_sentinel(self) -> None:
        assert repr(UNSET) == "UNSET"
        assert not UNSET
        assert type(UNSET)() is UNSET


class TestBadValues:
    """A bad value is an error naming the variable and the value, never a silent default."""

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("REMOTE_CACHE_REDIS_PORT", "abc"),
            ("TORCHINDUCTOR_REDIS_PORT", "70000"),
            ("REMOTE_CACHE_REDIS_EXPIRE", "0"),
            ("REMOTE_CACHE_REDIS_EXPIRE", "1.5"),
            ("TORCHINDUCTOR_REDIS_EXPIRE", "-3"),
            ("REMOTE_CACHE_REDIS_CLUSTER", "yes"),
            ("REMOTE_CACHE_REDIS_TIMEOUT", "0"),
            ("REMOTE_CACHE_REDIS_TIMEOUT", "nan"),
            ("REMOTE_CACHE_REDIS_TIMEOUT", "fast"),
            ("REMOTE_CACHE_REDIS_RETRY_AFTER", "-1"),
            ("REMOTE_CACHE_REDIS_RETRY_AFTER", "inf"),
            ("REMOTE_CACHE_REDIS_URL", "http://example:80"),
        ],
    )
    def test_variable_named(self, variable: str, value: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(environ={variable: value})
        assert variable in str(info.value)
        assert repr(value) in str(info.value)
        assert info.value.name == variable
        assert isinstance(info.value, ValueError)

    @pytest.mark.parametrize(
        ("argument", "value"),
        [("port", 0), ("timeout", -1.0), ("timeout", True), ("expire", "x"), ("retry_after", [1])],
    )
    def test_argument_named(self, argument: str, value: object) -> None:
        with pytest.raises(ConfigurationError, match=argument):
            resolve_redis_settings(**{argument: value}, environ={})  # type: ignore[arg-type]

    def test_backend_raises_and_create_cache_warns_once(
        self, monkeypatch: pytest.MonkeyPatch, caplog_rc: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setenv("REMOTE_CACHE_REDIS_PORT", "not-a-port")
        with pytest.raises(ConfigurationError, match="REMOTE_CACHE_REDIS_PORT"):
            RedisRemoteCacheBackend()
        assert create_cache("fx-graph-v1", False, "X", "RemoteFxGraphCache") is None
        warnings = [r for r in caplog_rc.records if r.levelname == "WARNING"]
        assert len(warnings) == 1
        assert "REMOTE_CACHE_REDIS_PORT" in warnings[0].getMessage()

    def test_url_password_redacted_in_error(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_URL": "http://u:hunter2@h:1"})
        assert "hunter2" not in str(info.value)
        assert "hunter2" not in repr(info.value.value)


class TestRedaction:
    """Passwords never show in descriptions or reprs."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            ("rediss://user:pw@h:1/0", "rediss://user:***@h:1/0"),
            ("redis://user@h:1/0", "redis://user@h:1/0"),
            ("unix:///tmp/r.sock?db=0&password=pw", "unix:///tmp/r.sock?db=0&password=***"),
            ("redis://h:1/0", "redis://h:1/0"),
        ],
    )
    def test_redact_url(self, url: str, expected: str) -> None:
        assert redact_url(url) == expected

    def test_unparsable(self) -> None:
        assert redact_url("redis://[::1") == "<unparsable URL>"

    def test_settings_repr_and_description(self) -> None:
        settings = resolve_redis_settings(url="redis://:s3cret@h:1/0", environ={})
        assert "s3cret" not in repr(settings)
        assert "s3cret" not in settings.describe()
        assert settings.describe() == "redis://:***@h:1/0"
        assert RedisSettings(cluster=True).describe() == "redis://localhost:6379 (cluster)"
        backend = RedisRemoteCacheBackend(url="redis://:s3cret@h:1/0")
        assert "s3cret" not in repr(backend)
