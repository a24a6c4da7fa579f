"""Properties of URL handling: a password never shows anywhere we print, and every malformed
URL is a ``ConfigurationError`` at construction that names the variable or argument."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from functools import partial
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_cache import (
    BackendError,
    ConfigurationError,
    RedisRemoteCache,
    RedisRemoteCacheBackend,
)
from remote_cache._settings import (
    RedisSettings,
    parse_redis_url,
    redact_url,
    resolve_redis_settings,
    url_secrets,
)
from remote_cache.cli import main
from remote_cache.testing._processes import free_port

START, END = "\u00a7", "\u00a4"
"""Every generated password starts with § and ends with ¤, and nothing else holds them: a
leak of either end of a password (raw or percent-encoded) is then unmistakable."""

PRINTABLE = st.characters(
    blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"),
    blacklist_characters=START + END,
)
users = st.text(PRINTABLE, max_size=12)
passwords = st.builds(lambda middle: START + middle + END, st.text(PRINTABLE, max_size=16))
DEAD_PORT = free_port()  # nothing listens there: every call fails fast with "refused"
VARIABLES = ("REMOTE_CACHE_REDIS_URL", "TORCHINDUCTOR_REDIS_URL")


def leaks(password: str, shown: str) -> list[str]:
    """The forms of ``password`` (or of its two ends) found in ``shown``: as written, percent-
    encoded once or twice, decoded once or twice."""
    forms = {password, quote(password, safe=""), quote_plus(password), START, END}
    forms |= {quote(quote(password, safe=""), safe=""), unquote_plus(password)}
    forms |= {unquote(unquote_plus(password))}
    for end in (START, END):
        forms |= {quote(end), quote(quote(end))}
    return [form for form in forms if form in shown]


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every line the ``remote_cache`` logger emits, at every level."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger = logging.getLogger("remote_cache")
    handler, level = Collect(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def attempt(build: Callable[[], object]) -> tuple[object, ConfigurationError | None]:
    """``(what build() returned, None)``, or ``(None, the ConfigurationError it raised)``."""
    try:
        return build(), None
    except ConfigurationError as exc:
        return None, exc


def cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue() + err.getvalue()


def percent(text: str) -> str:
    """Every character of ``text`` percent-encoded, even those that need not be."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


@st.composite
def option_names(draw: st.DrawFn, name: str) -> str:
    """``name`` as written (then redis-py uses it), or in any of the ways redis-py, parse_qs,
    urllib or an older redis-py would decode to it or to something close: characters
    percent-encoded once or twice, in upper or lower hex, in another case, ``+`` for a space."""
    if draw(st.booleans()):
        return name
    written = []
    for char in name:
        how = draw(st.sampled_from(["as is", "percent", "lower hex", "twice", "upper", "plus"]))
        written.append(
            {
                "as is": char,
                "percent": percent(char),
                "lower hex": percent(char).lower(),
                "twice": quote(percent(char)),
                "upper": char.upper(),
                "plus": f"{char}+",
            }[how]
        )
    return "".join(written)


@st.composite
def urls_with_passwords(draw: st.DrawFn) -> tuple[str, str, bool]:
    """``(url, password, valid)``: the password in the user part or the query (under any
    encoding of the option's name), raw or percent-encoded (once or twice), on every scheme.
    ``valid``: the URL is one redis-py reads as meant, so it must be accepted."""
    user, password = draw(users), draw(passwords)
    encoded = draw(st.booleans())
    scheme = draw(st.sampled_from(["redis", "rediss", "unix"]))
    where = f"127.0.0.1:{DEAD_PORT}/0" if scheme != "unix" else "/nonexistent-dir/redis.sock"
    if draw(st.booleans()):
        userinfo = (
            f"{quote(user, safe='')}:{quote(password, safe='')}"
            if encoded
            else f"{user}:{password}"
        )
        return f"{scheme}://{userinfo}@{where}", password, encoded
    option = "ssl_password" if scheme == "rediss" and draw(st.booleans()) else "password"
    name = draw(option_names(option))
    value = draw(st.sampled_from(VALUE_ENCODINGS))(password) if encoded else password
    before = draw(st.sampled_from(["", "db=0&", "client_name=a@b&"]))
    after = draw(st.sampled_from(["", "&socket_timeout=1", "&retry_on_timeout=0"]))
    url = f"{scheme}://{where}?{before}{name}={value}{after}"
    return url, password, encoded and name == option


def double_quote(text: str) -> str:
    return quote(quote(text, safe=""), safe="")


VALUE_ENCODINGS: list[Callable[[str], str]] = [quote_plus, partial(quote, safe=""), double_quote]


PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class TestPasswordNeverShown:
    """Whatever a password holds, it never appears in a repr, an error, a log line or the CLI."""

    @PROPERTY
    @given(urls_with_passwords())
    def test_backend_errors_and_logs(
        self, log_lines: list[str], case: tuple[str, str, bool]
    ) -> None:
        url, password, valid = case
        log_lines.clear()
        shown: list[str] = []
        backend, error = attempt(
            lambda: RedisRemoteCacheBackend(url=url, timeout=0.2, retry_after=0)
        )
        if error is not None:
            assert not valid, f"a valid URL was refused: {error}"
            assert error.name == "url"
            shown += [str(error), repr(error), repr(error.value)]
        else:
            assert isinstance(backend, RedisRemoteCacheBackend)
            shown += [repr(backend), backend.description, repr(backend.settings)]
            try:
                backend.get("k")
            except BackendError as exc:
                shown += [str(exc), repr(exc)]
            cache = RedisRemoteCache("urls", backend=backend)
            assert cache.get("k") is None  # fails open: never a ValueError from the URL
            cache.put("k", 1)
            shown.append(repr(cache))
        for variable in VARIABLES:
            settings_, error = attempt(
                lambda variable=variable: resolve_redis_settings(environ={variable: url})
            )
            shown.append(repr(settings_))
            if error is not None:
                assert error.name == variable
                shown += [str(error), repr(error.value)]
        shown += log_lines
        everything = "\n".join(shown)
        assert leaks(password, everything) == [], everything

    @settings(max_examples=30, deadline=None)
    @given(urls_with_passwords())
    def test_command_line(self, case: tuple[str, str, bool]) -> None:
        url, password, _ = case
        for argv in (["inspect", "--url", url], ["check", "--url", url, "--examples", "1"]):
            status, shown = cli(*argv)
            assert status == 2, shown  # nothing listens: unreachable, or a bad URL
            assert shown.count("\n") == 1, shown
            assert leaks(password, shown) == [], shown


@st.composite
def malformed_urls(draw: st.DrawFn) -> str:
    """A URL that is wrong in one way, with a password in it (so redaction is tested too)."""
    password = quote(draw(passwords), safe="")
    host = draw(st.sampled_from(["127.0.0.1", "cache.internal", "[::1]"]))
    word = draw(st.text("abcxyz-_.", min_size=1, max_size=6))
    number = draw(st.integers(1, 65535))
    kind = draw(
        st.sampled_from(
            [
                "no scheme",
                "other scheme",
                "one slash",
                "port word",
                "port zero",
                "port big",
                "empty port",
                "no host",
                "db word",
                "unknown option",
                "bad option value",
                "tls option without tls",
                "fragment",
                "raw delimiter in password",
                "stray percent",
                "relative unix path",
            ]
        )
    )
    auth = f":{password}@"
    templates = {
        "no scheme": f"{auth}{host}:{number}",
        "other scheme": f"{draw(st.sampled_from(['http', 'HTTP', 'tcp', 'redis+tls', '']))}://"
        f"{auth}{host}:{number}",
        "one slash": f"redis:/{auth}{host}:{number}",
        "port word": f"redis://{auth}{host}:{word}/0",
        "port zero": f"redis://{auth}{host}:0/0",
        "port big": f"redis://{auth}{host}:{65536 + number}/0",
        "empty port": f"redis://{auth}{host}:/0",
        "no host": f"redis://{auth}:{number}/0",
        "db word": f"redis://{auth}{host}:{number}/{word}",
        "unknown option": f"redis://{auth}{host}:{number}/0?{word}_opt=1",
        "bad option value": f"redis://{auth}{host}:{number}/0?"
        f"{draw(st.sampled_from(['db', 'socket_timeout', 'protocol', 'max_connections']))}"
        f"={word}",
        "tls option without tls": f"redis://{auth}{host}:{number}/0?ssl_cert_reqs=none",
        "fragment": f"redis://{auth}{host}:{number}/0#{word}",
        "raw delimiter in password": f"redis://:{START}{draw(st.sampled_from('/?#@[]'))}"
        f"{word}{END}@{host}:{number}/0",
        "stray percent": f"redis://:{START}%{draw(st.sampled_from(['', 'z', 'g1', '%']))}"
        f"{END}@{host}:{number}/0",
        "relative unix path": f"unix://{auth}{word}/redis.sock",
    }
    return templates[kind]


class TestMalformedUrls:
    """Every malformed URL is refused when built, naming where it came from, never later."""

    @settings(deadline=None)
    @given(malformed_urls(), st.sampled_from(["url", *VARIABLES]))
    def test_refused_at_construction(self, url: str, source: str) -> None:
        _, error = attempt(
            (lambda: RedisRemoteCacheBackend(url=url))
            if source == "url"
            else (lambda: resolve_redis_settings(environ={source: url}))
        )
        assert error is not None, f"{source}={url!r} was accepted"
        assert error.name == source
        assert str(error).startswith(f"{source}=")
        assert isinstance(error, ValueError)
        assert START not in str(error) + repr(error.value)
        assert END not in str(error) + repr(error.value)
        assert quote(START) not in str(error)

    @settings(max_examples=30, deadline=None)
    @given(malformed_urls(), st.sampled_from(["check", "inspect"]))
    def test_command_line_exits_2_in_one_line(self, url: str, command: str) -> None:
        status, shown = cli(command, "--url", url)
        assert status == 2
        assert shown.count("\n") == 1, shown
        assert "--url" in shown
        assert START not in shown
        assert quote(START) not in shown


class TestRedactionOfAnyText:
    """``redact_url``, the reprs and the errors hide a password however it is written."""

    @settings(max_examples=400, deadline=None)
    @given(urls_with_passwords())
    def test_never_shown(self, case: tuple[str, str, bool]) -> None:
        url, password, valid = case
        shown = [redact_url(url), repr(RedisSettings(url=url)), RedisSettings(url=url).describe()]
        backend, error = attempt(
            lambda: RedisRemoteCacheBackend(url=url, timeout=0.2, retry_after=0)
        )
        if error is not None:
            assert not valid, f"a valid URL was refused: {error}"
            shown += [str(error), repr(error.value)]
        else:
            assert isinstance(backend, RedisRemoteCacheBackend)
            shown += [repr(backend), backend.description]
        everything = "\n".join(shown)
        assert leaks(password, everything) == [], everything
        secrets = url_secrets(url)
        if valid:
            assert password in secrets
        assert any(START in secret or quote(START) in secret for secret in secrets), secrets

    @settings(max_examples=300, deadline=None)
    @given(st.text(st.sampled_from("/?#@:&=%+ab") | PRINTABLE, max_size=30), passwords)
    def test_any_text_after_a_password(self, noise: str, password: str) -> None:
        """Raw delimiters around a password: hidden in what is printed, found by url_secrets."""
        for url in (
            f"redis://u:{password}{noise}@h:1/0",
            f"redis://:{noise}{password}@h:1/0?db=0",
            f"redis://h:1/0?password={password}{noise}",
            f"redis://h:1/0?{noise}&password={password}",
        ):
            shown = [redact_url(url), repr(RedisSettings(url=url))]
            _, error = attempt(partial(parse_redis_url, url))
            if error is not None:
                shown.append(str(error))
            assert leaks(password, "\n".join(shown)) == [], (url, shown)


def redis_py_reads(url: str) -> dict[str, object]:
    """What redis-py makes of ``url``: the keyword arguments of its connections."""
    from redis.connection import parse_url

    parsed: dict[str, object] = parse_url(url)  # type: ignore[no-untyped-call]
    return parsed


HOSTS = st.sampled_from(["127.0.0.1", "cache.internal", "[::1]", "h"])
QUERY_TEXT = st.text(PRINTABLE | st.sampled_from("@/?:="), min_size=1, max_size=10)


@st.composite
def urls_with_at_in_query(draw: st.DrawFn) -> str:
    """A valid URL with an ``@`` in at least one query value (raw: RFC 3986 allows it)."""
    scheme = draw(st.sampled_from(["redis", "rediss"]))
    userinfo = ""
    if draw(st.booleans()):
        user, password = draw(users), draw(passwords)
        userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    db = draw(st.one_of(st.none(), st.integers(0, 15)))
    address = draw(HOSTS) + ("" if port is None else f":{port}")
    path = draw(st.sampled_from(["", "/"])) if db is None else f"/{db}"
    # Credentials in the user part and in the query at once are refused (TestUrls).
    options = ["client_name"] if userinfo else ["client_name", "password", "username"]
    names = draw(st.lists(st.sampled_from(options), min_size=1, unique=True))
    fields = []
    for index, name in enumerate(names):
        value = draw(QUERY_TEXT)
        if index == 0:
            value = f"{value}@{draw(QUERY_TEXT)}"
        fields.append(f"{name}={quote(value, safe='@/?:=')}")
    return f"{scheme}://{userinfo}{address}{path}?{'&'.join(fields)}"


class TestAtInQueryValues:
    """A URL with ``@`` in a query value is read exactly as redis-py (urllib) reads it."""

    @settings(max_examples=300, deadline=None)
    @given(urls_with_at_in_query())
    def test_same_as_redis_py(self, url: str) -> None:
        parsed, expected = parse_redis_url(url), redis_py_reads(url)
        assert (parsed.host, parsed.port) == (expected.get("host"), expected.get("port"))
        assert parsed.db == expected.get("db", 0)
        assert (parsed.username or parsed.options.get("username")) == expected.get("username")
        assert (parsed.password or parsed.options.get("password")) == expected.get("password")
        assert parsed.options.get("client_name") == expected.get("client_name")
        shown = redact_url(url)
        if "client_name" in parsed.options:
            written = url.partition("client_name=")[2].partition("&")[0]
            assert f"client_name={written}" in shown  # shown readably
        if "@" not in url.partition("?")[0] and "password" not in parsed.options:
            assert shown == url
        for secret in (parsed.password, parsed.options.get("password")):
            if secret:
                assert secret in url_secrets(url)
                if START in secret:
                    assert leaks(secret, shown) == [], shown
