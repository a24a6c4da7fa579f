"""Settings resolution: arguments, then REMOTE_CACHE_*, then TORCHINDUCTOR_*, each validated."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from remote_cache import ConfigurationError, RedisRemoteCacheBackend, create_cache
from remote_cache._settings import (
    DEFAULT_RETRY_AFTER,
    MAX_EXPIRE,
    NEVER,
    UNSET,
    RedisSettings,
    parse_redis_url,
    redact_url,
    resolve_max_value_bytes,
    resolve_redis_settings,
    url_secrets,
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

    def test_unparsable_text_is_shown_with_secrets_hidden(self) -> None:
        assert redact_url("redis://[::1") == "redis://[::1"
        assert redact_url("127.0.0.1:6379") == "127.0.0.1:6379"
        assert redact_url("u:pw@h:1") == "***@h:1"
        assert redact_url("redis://:p/w#x@h:1") == "redis://:***@h:1"

    def test_settings_repr_and_description(self) -> None:
        settings = resolve_redis_settings(url="redis://:s3cret@h:1/0", environ={})
        assert "s3cret" not in repr(settings)
        assert "s3cret" not in settings.describe()
        assert settings.describe() == "redis://:***@h:1/0"
        assert RedisSettings(cluster=True).describe() == "redis://localhost:6379 (cluster)"
        backend = RedisRemoteCacheBackend(url="redis://:s3cret@h:1/0")
        assert "s3cret" not in repr(backend)


MALFORMED_URLS = [
    ("redis://alice:A@h:1/0?username=bob&password=B", "the username is given twice"),
    ("redis://:A@h:1/0?password=B", "the password is given twice"),
    ("redis://alice@h:1/0?username=bob", "the username is given twice"),
    ("host:6379", "must start with redis://"),
    ("redis:/h", "must start with redis://"),
    ("redis://", "the host is missing"),
    ("redis://:6379/0", "the host is missing"),
    ("redis://h:abc/0", "the port 'abc'"),
    ("redis://h:/0", "the port ''"),
    ("redis://h:0/0", "the port '0'"),
    ("redis://h:65536", "the port '65536'"),
    ("redis://h:1/zero", "the database 'zero'"),
    ("redis://h:1/0/1", "the database '0/1'"),
    ("redis://h h:1", "the host 'h h'"),
    ("redis://h:1/0?bogus=1", "query option 'bogus'"),
    ("redis://h:1/0?socket_timeout=soon", "socket_timeout='soon'"),
    ("redis://h:1/0?db=1&db=2", "given twice"),
    ("redis://h:1/0?protocol=4", "protocol='4'"),
    ("redis://h:1/0?ssl_cert_reqs=none", "query option 'ssl_cert_reqs'"),
    ("unix:///tmp/s.sock?socket_keepalive=1", "query option 'socket_keepalive'"),
    ("redis://h:1/0#frag", "#fragment"),
    ("unix://relative.sock", "absolute path"),
    ("unix://", "absolute path"),
    ("redis://:p/w@h:1/0", "percent-encode"),
    ("redis://:p%zz@h:1/0", "percent-encode"),
]


class TestUrls:
    """A URL is parsed and checked whole when the settings are built, never at first use."""

    @pytest.mark.parametrize(("url", "reason"), MALFORMED_URLS)
    @pytest.mark.parametrize("variable", ["REMOTE_CACHE_REDIS_URL", "TORCHINDUCTOR_REDIS_URL"])
    def test_malformed_from_the_environment(self, url: str, reason: str, variable: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(environ={variable: url})
        assert info.value.name == variable
        assert str(info.value).startswith(f"{variable}={redact_url(url)!r} is not a valid")
        assert reason in str(info.value)

    @pytest.mark.parametrize(("url", "reason"), MALFORMED_URLS)
    def test_malformed_argument_refused_by_the_backend(self, url: str, reason: str) -> None:
        with pytest.raises(ConfigurationError, match=r"^url=") as info:
            RedisRemoteCacheBackend(url=url)
        assert reason in str(info.value)

    def test_value_is_quoted_as_given(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_URL": "127.0.0.1:6379"})
        assert "'127.0.0.1:6379'" in str(info.value)
        assert "'://127.0.0.1:6379'" not in str(info.value)

    @pytest.mark.parametrize(
        ("url", "parts"),
        [
            ("redis://h", ("redis", "h", None, None, 0, None, None)),
            ("redis://h:6380/3", ("redis", "h", 6380, None, 3, None, None)),
            ("rediss://u:p%2F%23%3F%40%25w@h:1/0", ("rediss", "h", 1, None, 0, "u", "p/#?@%w")),
            ("redis://[::1]:7000/0?db=2", ("redis", "::1", 7000, None, 2, None, None)),
            ("unix:///run/r.sock?db=1", ("unix", None, None, "/run/r.sock", 1, None, None)),
            ("unix://:pw@/run/r%20s.sock", ("unix", None, None, "/run/r s.sock", 0, None, "pw")),
            (
                "rediss://h:1/0?ssl_cert_reqs=none&socket_timeout=2.5",
                ("rediss", "h", 1, None, 0, None, None),
            ),
        ],
    )
    def test_valid(self, url: str, parts: tuple[object, ...]) -> None:
        parsed = parse_redis_url(url)
        assert (
            parsed.scheme, parsed.host, parsed.port, parsed.path, parsed.db, parsed.username,
            parsed.password,
        ) == parts  # fmt: skip
        assert "p/#?@%w" not in repr(parsed)

    def test_every_accepted_option_is_accepted_by_redis_py(self) -> None:
        import redis

        from remote_cache._settings.options import NOT_FOR_SCHEME as _NOT_FOR_SCHEME
        from remote_cache._settings.options import OPTION_CHECKS as _OPTION_CHECKS

        samples = {"db": "1", "protocol": "3", "ssl_cert_reqs": "none", "max_connections": "2"}
        for scheme, base in [("redis", "redis://h:1"), ("rediss", "rediss://h:1"),
                             ("unix", "unix:///tmp/r.sock")]:  # fmt: skip
            for name, (check, _) in _OPTION_CHECKS.items():
                if name in _NOT_FOR_SCHEME[scheme]:
                    continue
                value = samples.get(name, "1" if check("1") else "x")
                url = f"{base}?{name}={value}"
                parse_redis_url(url)
                redis.Redis.from_url(url).connection_pool.make_connection()

    def test_every_option_documented(self) -> None:
        from pathlib import Path

        from remote_cache._settings.options import OPTION_CHECKS as _OPTION_CHECKS

        docs = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
        assert [name for name in _OPTION_CHECKS if f"`{name}`" not in docs] == []

    def test_unix_with_cluster_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="cluster"):
            resolve_redis_settings(url="unix:///tmp/r.sock", cluster=True, environ={})

    @pytest.mark.parametrize("host", ["redis://h:1", "h:1", "a b", "h/0"])
    def test_bad_host_variable(self, host: str) -> None:
        with pytest.raises(ConfigurationError, match="REMOTE_CACHE_REDIS_HOST"):
            resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_HOST": host})

    @pytest.mark.parametrize("host", ["localhost", "10.0.0.1", "::1", "[::1]", "cache-1.internal"])
    def test_good_host_variable(self, host: str) -> None:
        settings = resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_HOST": host})
        assert settings.host == host.strip("[]")
        assert settings.describe().endswith("[::1]:6379" if ":" in host else f"{host}:6379")


class TestExpireLimit:
    """An expire Redis would refuse is refused when the settings are built."""

    @pytest.mark.parametrize("expire", [10**16, MAX_EXPIRE + 1, (2**63 - 1) // 1000])
    def test_too_long(self, expire: int) -> None:
        with pytest.raises(ConfigurationError, match="expire"):
            resolve_redis_settings(expire=expire, environ={})
        with pytest.raises(ConfigurationError, match="REMOTE_CACHE_REDIS_EXPIRE"):
            resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_EXPIRE": str(expire)})

    def test_longest_accepted(self) -> None:
        assert resolve_redis_settings(expire=MAX_EXPIRE, environ={}).expire == MAX_EXPIRE


class TestAsciiNumbers:
    """A number is written in ASCII digits: ``int`` and ``float`` alone take many more."""

    @pytest.mark.parametrize(
        ("suffix", "value"),
        [
            ("REDIS_EXPIRE", "\u0663"),  # ARABIC-INDIC DIGIT THREE
            ("REDIS_EXPIRE", "1_0"),
            ("REDIS_EXPIRE", "+5"),
            ("REDIS_PORT", "\u0667\u0660\u0660\u0660"),
            ("REDIS_PORT", "\uff17\uff10\uff10\uff10"),  # FULLWIDTH DIGITS
            ("REDIS_PORT", "70_00"),
            ("REDIS_TIMEOUT", "\u0663"),
            ("REDIS_TIMEOUT", "1_0"),
            ("REDIS_TIMEOUT", "\u0661.5"),
            ("REDIS_RETRY_AFTER", "\u0663"),
            ("REDIS_RETRY_AFTER", "1_0"),
            ("MAX_VALUE_BYTES", "\u0663"),
            ("MAX_VALUE_BYTES", "1_000"),
        ],
    )
    def test_variable_refused(self, suffix: str, value: str) -> None:
        variable = f"REMOTE_CACHE_{suffix}"
        resolve = resolve_max_value_bytes if suffix == "MAX_VALUE_BYTES" else resolve_redis_settings
        with pytest.raises(ConfigurationError, match=variable):
            resolve(environ={variable: value})

    @pytest.mark.parametrize(
        ("argument", "value"),
        [
            ("expire", "\u0663"),
            ("port", "\u0663"),
            ("port", " 6379 "),
            ("timeout", " 5 "),
            ("timeout", "1_0"),
            ("timeout", "\u0663"),
            ("retry_after", "\u0663"),
            ("retry_after", "nan"),
        ],
    )
    def test_argument_refused(self, argument: str, value: str) -> None:
        with pytest.raises(ConfigurationError, match=argument):
            resolve_redis_settings(**{argument: value}, environ={})  # type: ignore[arg-type]

    def test_max_value_bytes_argument_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="max_value_bytes"):
            resolve_max_value_bytes("\u0663")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("value", "seconds"), [("2", 2.0), ("2.5", 2.5), (".5", 0.5), ("2.", 2.0), ("1e-05", 1e-05)]
    )
    def test_ascii_seconds_accepted(self, value: str, seconds: float) -> None:
        env = {"REMOTE_CACHE_REDIS_TIMEOUT": value}
        assert resolve_redis_settings(environ=env).timeout == seconds
        assert resolve_redis_settings(timeout=seconds, environ={}).timeout == seconds


class TestUrlSecrets:
    """``url_secrets`` finds every form of a password, whatever characters it holds."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("redis://h:1/0", []),
            ("redis://user@h:1/0", []),
            ("redis://:pw@h:1/0", ["pw"]),
            ("redis://u:a%2Fb@h:1/0", ["a%2Fb", "a/b"]),
            ("redis://u:a/b#c?d@e@h:1/0", ["a/b#c?d@e"]),
            ("unix:///s.sock?password=p%40q", ["p%40q", "p@q"]),
            ("redis://h/0?password=a@b", ["a@b"]),  # valid: read as redis-py reads it
            ("redis://h:x/?password=a@b", ["x/?password=a@b", "x/?password=a", "a@b"]),
            ("redis://h/?client_name=build@ci", []),
            ("unix:///run/a@b.sock", ["/run/a"]),  # an @ in a socket path: hidden all the same
        ],
    )
    def test_found(self, url: str, expected: list[str]) -> None:
        found = url_secrets(url)
        assert set(expected) <= set(found)
        if parse_is_valid(url) and not (url.startswith("unix:") and "@" in url):
            assert set(found) == {form for secret in expected for form in (secret, unquote(secret))}
        assert found == sorted(found, key=len, reverse=True)
        for secret in found:
            assert secret not in redact_url(url)


def parse_is_valid(url: str) -> bool:
    try:
        parse_redis_url(url)
    except ConfigurationError:
        return False
    return True


class TestPasswordInAnyVariable:
    """A URL with a password put in any variable or argument is shown without it."""

    SECRET = "hunter2SECRET"

    @pytest.mark.parametrize(
        "variable",
        [
            "TORCHINDUCTOR_REDIS_HOST",
            "REMOTE_CACHE_REDIS_HOST",
            "REMOTE_CACHE_REDIS_PORT",
            "TORCHINDUCTOR_REDIS_EXPIRE",
            "REMOTE_CACHE_REDIS_CLUSTER",
            "REMOTE_CACHE_REDIS_TIMEOUT",
            "REMOTE_CACHE_REDIS_RETRY_AFTER",
        ],
    )
    @pytest.mark.parametrize(
        "value",
        [
            "redis://:hunter2SECRET@cache.internal:6379/0",
            "rediss://user:hunter2SECRET@cache.internal/0",
            "redis://cache.internal/0?password=hunter2SECRET",
        ],
    )
    def test_variable(self, variable: str, value: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(environ={variable: value})
        assert info.value.name == variable
        assert self.SECRET not in str(info.value)
        assert self.SECRET not in repr(info.value.value)
        assert "cache.internal" in str(info.value)  # the rest is still shown

    @pytest.mark.parametrize("argument", ["host", "port", "expire", "timeout"])
    def test_argument(self, argument: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(
                **{argument: "redis://:hunter2SECRET@cache.internal:6379/0"},  # type: ignore[arg-type]
                environ={},
            )
        assert self.SECRET not in str(info.value)
        assert self.SECRET not in repr(info.value.value)

    def test_plain_values_are_shown_as_they_are(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_HOST": "bad host!"})
        assert info.value.value == "bad host!"

    @pytest.mark.parametrize(
        "value",
        [
            ["redis://:hunter2SECRET@cache.internal:6379/0"],
            b"redis://:hunter2SECRET@cache.internal:6379/0",
            ("rediss://user:hunter2SECRET@cache.internal/0",),
        ],
        ids=["list", "bytes", "tuple"],
    )
    def test_argument_of_the_wrong_type(self, value: object) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(host=value, environ={})  # type: ignore[arg-type]
        assert self.SECRET not in str(info.value)
        assert self.SECRET not in repr(info.value.value)
        assert "cache.internal" in str(info.value)
