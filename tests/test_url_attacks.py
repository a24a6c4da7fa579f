"""Attacks on URL handling: a password hidden behind an encoded option name, an ``@`` where
the user part does not end, Unicode digits; each is refused or read as redis-py reads it."""

from __future__ import annotations

import pytest
from redis.connection import parse_url as untyped_parse_url

from remote_cache import BackendError, ConfigurationError, RedisRemoteCacheBackend
from remote_cache._settings import (
    RedisSettings,
    parse_redis_url,
    redact_url,
    resolve_redis_settings,
    url_secrets,
)

SECRET = "S3CRET"


def parse_url(url: str) -> dict[str, object]:
    """What redis-py makes of ``url``: the keyword arguments of its connections."""
    parsed: dict[str, object] = untyped_parse_url(url)  # type: ignore[no-untyped-call]
    return parsed


ENCODED_NAMES = [
    "redis://h:6379/?%70assword=S3CRET",
    "redis://h:6379/?passwor%64=S3CRET",
    "redis://h:6379/?%70%61%73%73%77%6F%72%64=S3CRET",
    "redis://h:6379/?db=1&%70assword=S3CRET",
    "rediss://h/?ssl%5Fpassword=S3CRET",
    "rediss://h/?ssl%5fpassword=S3CRET&ssl_cert_reqs=none",
    "redis://h/?%2570assword=S3CRET",  # decoded twice
    "redis://h/?PASSWORD=S3CRET",
    "redis://h/?Pass%77ord=S3CRET&db=1",
    "redis://h/?pass+word=S3CRET",
    "redis://h/?password+=S3CRET",
    "redis://h/?+password=S3CRET",
    "redis://h/?pass%20word=S3CRET",
    "redis://h/?pass\tword=S3CRET",
    "redis://h/?password%3DS3CRET",
    "redis://h/?password:S3CRET",
    "redis://h/?ｐａｓｓｗｏｒｄ=S3CRET",  # noqa: RUF001 - fullwidth letters on purpose
    "unix:///run/r.sock?%70assword=S3CRET",
]


class TestEncodedOptionNames:
    """A password option is recognised by its decoded name: never shown, and refused."""

    @pytest.mark.parametrize("url", ENCODED_NAMES)
    def test_redacted(self, url: str) -> None:
        assert SECRET not in redact_url(url)
        assert SECRET not in repr(RedisSettings(url=url))
        assert SECRET not in RedisSettings(url=url).describe()

    @pytest.mark.parametrize("url", ENCODED_NAMES)
    def test_refused_without_showing_it(self, url: str) -> None:
        with pytest.raises(ConfigurationError) as info:
            parse_redis_url(url)
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value.value)
        with pytest.raises(ConfigurationError) as info:
            RedisRemoteCacheBackend(url=url)
        assert SECRET not in str(info.value)
        with pytest.raises(ConfigurationError) as info:
            resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_URL": url})
        assert SECRET not in str(info.value)

    @pytest.mark.parametrize("url", ENCODED_NAMES)
    def test_in_url_secrets(self, url: str) -> None:
        if "=" in url:  # a value a client could send: found on its own, to scrub it anywhere
            assert SECRET in url_secrets(url)
        else:  # no client reads a password there, but what is hidden is a secret all the same
            assert any(SECRET in secret for secret in url_secrets(url))

    def test_an_encoded_name_is_one_redis_py_would_use(self) -> None:
        """Why it matters: redis-py decodes the name and sends the password."""
        assert parse_url("redis://h/?%70assword=S3CRET")["password"] == SECRET

    def test_plain_names_still_shown_readably(self) -> None:
        url = "rediss://h/?ssl_password=S3CRET&ssl_cert_reqs=none&password=x"
        assert redact_url(url) == "rediss://h/?ssl_password=***&ssl_cert_reqs=none&password=***"
        assert redact_url("redis://h/?PASSWORD=S3CRET") == "redis://h/?PASSWORD=***"
        assert redact_url("redis://h/?%70assword=S3CRET&db=1") == "redis://h/?***&db=1"

    def test_refusal_says_why(self) -> None:
        with pytest.raises(ConfigurationError, match="name is percent-encoded"):
            parse_redis_url("redis://h/?%64b=1")
        with pytest.raises(ConfigurationError, match="not shown: it may hold a password"):
            parse_redis_url("redis://h/?password:S3CRET")


class TestDoubleDecodedValues:
    """redis-py before 5.1 decodes a query value twice: that form is a secret too."""

    @pytest.mark.parametrize(
        ("url", "decoded_twice"),
        [
            ("redis://h/?password=a%2541", "aA"),
            ("redis://h/?password=p%252Fq", "p/q"),
            ("redis://h/?password=a%2Bb%2520c", "a+b c"),
            ("rediss://h/?ssl_password=x%2525", "x%"),
        ],
    )
    def test_found(self, url: str, decoded_twice: str) -> None:
        assert decoded_twice in url_secrets(url)
        assert decoded_twice not in redact_url(url)


class TestAtInTheQuery:
    """The user part ends at the authority (RFC 3986, urllib): ``@`` in a query value is fine."""

    @pytest.mark.parametrize(
        ("url", "redacted"),
        [
            ("redis://h:6379/?password=p@ss", "redis://h:6379/?password=***"),
            ("redis://h/?client_name=build@ci", "redis://h/?client_name=build@ci"),
            ("redis://h?client_name=a@b&db=2", "redis://h?client_name=a@b&db=2"),
            ("redis://u@h/?password=p@ss", "redis://u@h/?password=***"),
            ("redis://u:pw@h/3?client_name=@@", "redis://u:***@h/3?client_name=@@"),
            ("rediss://h/?ssl_keyfile=/k@y.pem", "rediss://h/?ssl_keyfile=/k@y.pem"),
            # accepted, but a socket path with an @ may be a misplaced user part: hidden
            ("unix:///run/a@b.sock", "unix://***@b.sock"),
            ("unix://:pw@/run/a@b.sock?db=1", "unix://:***@b.sock?db=1"),
        ],
    )
    def test_accepted_as_redis_py_reads_it(self, url: str, redacted: str) -> None:
        parsed = parse_redis_url(url)
        expected = parse_url(url)
        assert parsed.host == expected.get("host")
        assert parsed.port == expected.get("port")
        assert parsed.path == expected.get("path")
        assert (parsed.username, parsed.password or parsed.options.get("password")) == (
            expected.get("username"),
            expected.get("password"),
        )
        for name in ("client_name", "ssl_keyfile"):
            assert parsed.options.get(name) == expected.get(name)
        assert redact_url(url) == redacted
        assert resolve_redis_settings(url=url, environ={}).url == url

    @pytest.mark.parametrize(
        ("url", "redacted"),
        [
            ("redis://u:p/w@h", "redis://u:***@h"),
            ("redis://:p/w@h:1/0", "redis://:***@h:1/0"),
            ("redis://:p?w@h:1/0", "redis://:***@h:1/0"),
            ("redis://:p#w@h:1/0", "redis://:***@h:1/0"),
            ("redis://u:12/34@h/0", "redis://u:***@h/0"),
            ("redis://h:1/p@ss", "redis://h:***@ss"),
            ("redis://u:p/w@h/?password=x@y", "redis://u:***"),
            ("redis://h:p/?password=x@y", "redis://h:***"),
            ("unix://u:p/w@/run/r.sock", "unix://u:***@/run/r.sock"),
        ],
    )
    def test_raw_delimiter_in_a_password_is_never_shown(self, url: str, redacted: str) -> None:
        """Read by the RFC, such a URL puts a piece of the password in the port or the path;
        the error quotes no piece, and the redaction hides everything up to the last @."""
        with pytest.raises(ConfigurationError) as info:
            parse_redis_url(url)
        message = str(info.value)
        assert message == (
            f"url={redacted!r} is not a valid Redis URL: the user part, or what follows it, "
            "is not valid (an @ follows the first / ? or #, so where the user part ends is "
            "unclear); percent-encode / ? # @ [ ] % and control characters in a user name or "
            "password (%2F for /)"
        )
        assert redact_url(url) == redacted


class TestSchemeCase:
    """RFC 3986: a scheme is case-insensitive. Any case is accepted; redis-py gets lower case."""

    @pytest.mark.parametrize(
        ("url", "canonical"),
        [
            ("REDIS://h", "redis://h"),
            ("Redis://h:1/0", "redis://h:1/0"),
            ("REDISS://h", "rediss://h"),
            ("UNIX:///s.sock", "unix:///s.sock"),
            ("rEdIs://Host:1/2?client_name=CI", "redis://Host:1/2?client_name=CI"),
        ],
    )
    def test_accepted_and_written_in_lower_case(self, url: str, canonical: str) -> None:
        parsed = parse_redis_url(url)
        assert parsed == parse_redis_url(canonical)
        settings = resolve_redis_settings(url=url)
        assert settings.url == canonical  # what every redis-py release accepts
        assert resolve_redis_settings(environ={"REMOTE_CACHE_REDIS_URL": url}).url == canonical
        assert parse_url(canonical)  # redis-py reads what we hand it

    def test_password_hidden(self) -> None:
        backend = RedisRemoteCacheBackend(url="REDIS://:S3CRET@h")
        assert SECRET not in repr(backend)
        assert SECRET not in redact_url("REDIS://:S3CRET@h")
        assert url_secrets("REDIS://:S3CRET@h")[0] == SECRET
        with pytest.raises(ConfigurationError) as info:
            parse_redis_url("REDIS://:S3CRET@h:port")
        assert SECRET not in str(info.value)


class TestControlCharacters:
    """urllib drops tabs and newlines anywhere, so a URL holding one would mean something else."""

    @pytest.mark.parametrize(
        "url", ["redis://h/?client_name=a\tb", "redis://h\n:1", "redis://h/?pass\nword=S3CRET"]
    )
    def test_refused(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="control character") as info:
            parse_redis_url(url)
        assert SECRET not in str(info.value)


class TestUnicodeDigitsInOptions:
    """A number in a URL is written in ASCII digits."""

    @pytest.mark.parametrize(
        "query",
        [
            "socket_timeout=\u0663",
            "socket_timeout=1_0",
            "socket_timeout=nan",
            "socket_timeout=%205",
            "socket_connect_timeout=\u0661.5",
            "db=\u0663",
            "max_connections=\u0663",
        ],
    )
    def test_refused(self, query: str) -> None:
        with pytest.raises(ConfigurationError, match="expected"):
            parse_redis_url(f"redis://h/?{query}")

    @pytest.mark.parametrize("port", ["\u0663", "\uff11"])
    def test_port_refused(self, port: str) -> None:
        with pytest.raises(ConfigurationError):
            parse_redis_url(f"redis://h:{port}/0")


class TestUnixPathHoldingAnAt:
    """``unix:///:pw@/path``: a user part one slash too late is a valid socket path for urllib
    and redis-py, but what precedes its ``@`` is hidden all the same."""

    URL = "unix:///:p\u00e5ss-\u00a7@/nonexistent-dir/redis.sock"

    def test_hidden_everywhere(self) -> None:
        secret = "p\u00e5ss-\u00a7"
        backend = RedisRemoteCacheBackend(url=self.URL, timeout=0.2, retry_after=0)
        shown = [repr(backend), backend.description, repr(backend.settings)]
        with pytest.raises(BackendError) as info:
            backend.get("k")
        shown += [str(info.value), repr(info.value)]
        assert not [text for text in shown if secret in text], shown
        assert "/nonexistent-dir/redis.sock" in backend.description
