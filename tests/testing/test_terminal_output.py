"""What the command line prints from outside (keys, cache ids, server replies) cannot steer a
terminal or forge a line: every control character is shown escaped."""

from __future__ import annotations

import io
import socket
import threading
import unicodedata
from collections.abc import Iterator

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from remote_cache import CacheStat
from remote_cache._text import printable
from remote_cache.cli import main
from remote_cache.cli.inspect import print_inventory
from remote_cache.cli.inventory import inspect_redis
from remote_cache.cli.report import print_report
from remote_cache.testing._check import CheckReport, CheckResult

BIDI_CONTROLS = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
BIDI_MARKS = {"\u200e", "\u200f", "\u061c"}

HOSTILE = [
    "\x1b]0;pwned\x07",  # retitles the terminal
    "\x1b[2J\x1b[H",  # clears it
    "k\r\n  total          999,999",  # forges a row
    "\x9b31m",  # C1 CSI
    "\u202eevil",  # right-to-left override
    "a\u2028b\u2029c\x85d",  # line separators, NEL
    "\x00\x7f\t\x0b\x0c",
    "\ud800",  # a lone surrogate: a UTF-8 terminal stream cannot write it
]


def unsafe(character: str) -> bool:
    """Whether ``character`` can move the cursor, start a line or reorder text on a terminal."""
    return (
        unicodedata.category(character) in {"Cc", "Cs", "Zl", "Zp"}
        or unicodedata.bidirectional(character) in BIDI_CONTROLS
        or character in BIDI_MARKS
    )


def unsafe_in(text: str) -> list[str]:
    """The unsafe characters of ``text``, line feeds between lines excepted."""
    return [character for line in text.split("\n") for character in line if unsafe(character)]


class TestPrintable:
    """``printable`` escapes exactly the characters that can steer a terminal."""

    @given(st.text(alphabet=st.characters(codec=None)))
    def test_nothing_unsafe_is_left(self, text: str) -> None:
        shown = printable(text)
        assert not [character for character in shown if unsafe(character)]
        assert "\n" not in shown

    @given(
        st.text(
            alphabet=st.characters(
                exclude_categories=["Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn"],
                exclude_characters="\\",
            )
        )
    )
    def test_safe_text_is_unchanged(self, text: str) -> None:
        assert printable(text) == text

    @given(st.text())
    def test_told_apart(self, text: str) -> None:
        # An escape never reads as text that spells it: printable() is one to one.
        other = text.replace("\x1b", "\\x1b")
        assert (printable(text) == printable(other)) == (text == other)

    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("\x9b\x7f\x00", "\\x9b\\x7f\\x00"),
            ("\u202eabc\u2028\u2066", "\\u202eabc\\u2028\\u2066"),
            ("\udcff", "\\udcff"),
            ("fx-graph-v1 é ☃ 🚀", "fx-graph-v1 é ☃ 🚀"),
            ("fx\u200bgraph\ufeff\U000e0041", "fx\\u200bgraph\\ufeff\\U000e0041"),
            ("\\x1b]0;pwned", "\\\\x1b]0;pwned"),  # a literal backslash is doubled
        ],
    )
    def test_examples(self, text: str, shown: str) -> None:
        assert printable(text) == shown


def table(keys: dict[bytes, list[bytes]], *, samples: int = 100) -> str:
    """The text ``inspect`` prints for a store holding ``keys`` (cache id -> keys)."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    for cache_id, names in keys.items():
        for name in names:
            client.set(b"pt2:" + cache_id + b"::" + name + b":c1", b"v")
    out = io.StringIO()
    print_inventory(inspect_redis(client, server="s", samples=samples), "s", out)
    return out.getvalue()


# Cache ids that upstream's key format keeps apart (see check_redis_cache_id).
cache_id_bytes = st.binary(min_size=1, max_size=12).filter(
    lambda raw: b"::" not in raw and not raw.startswith(b":") and not raw.endswith(b":")
)


class TestInventoryTable:
    """One row per cache id, whatever bytes the stored ids and keys hold."""

    def test_hostile_keys_and_cache_ids(self) -> None:
        keys = {
            text.encode("utf-8", "surrogatepass"): [
                k.encode("utf-8", "surrogatepass") for k in HOSTILE
            ]
            for text in ["fx-graph-v1", *HOSTILE]
        }
        out = table(keys)
        assert unsafe_in(out) == []
        assert len(out.splitlines()) == 2 + len(keys) + 1  # title, header, ids, total
        assert "\\x1b]0;pwned\\x07" in out
        assert "k\\r\\n  total          999,999" in out
        assert sum(line.split()[0] == "total" for line in out.splitlines()) == 1

    @given(st.dictionaries(cache_id_bytes, st.lists(st.binary(), min_size=1, max_size=4)))
    def test_any_key_bytes(self, keys: dict[bytes, list[bytes]]) -> None:
        out = table(keys)
        assert unsafe_in(out) == []
        shown_ids = {raw.decode("utf-8", "surrogateescape") for raw in keys}  # as inspect does
        assert len(out.splitlines()) == 2 + len(shown_ids) + 1
        rows = out.splitlines()[2:-1]
        for row, cache_id in zip(rows, sorted(shown_ids), strict=True):
            assert row.startswith(f"  {printable(cache_id)}  ")


@pytest.fixture
def hostile_server() -> Iterator[int]:
    """A loopback server answering every command with an error full of escape sequences."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.1)

        def answer(connection: socket.socket) -> None:
            with connection:
                connection.settimeout(5)
                while not stop.is_set() and connection.recv(65536):
                    connection.sendall(b"-ERR \x1b]0;pwned\x07\x1b[2J\xc2\x9b31m\xe2\x80\xae\r\n")

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=answer, args=(connection,), daemon=True).start()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            server.join(timeout=5)


class TestServerRepliesInErrors:
    """An error message quoting the server's reply is printed escaped, on one line."""

    @pytest.mark.parametrize("command", ["inspect", "check"])
    def test_error_reply(self, hostile_server: int, command: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        status = main([command, "--url", f"redis://127.0.0.1:{hostile_server}/0"], out=out, err=err)
        assert status == 2
        assert unsafe_in(err.getvalue()) == []
        assert err.getvalue().count("\n") == 1
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202e" in err.getvalue()


class TestCheckReport:
    """The check report escapes details, log lines and counter names from a backend."""

    def test_hostile_report(self) -> None:
        report = CheckReport(
            target="backend \x1b[2Jmine",
            seed=1,
            results=[CheckResult("round trip", False, "wrote 1\nread \x1b]0;x\x07\r  PASS")],
            stats={"backend:\x1b[31mEvil\u202e": CacheStat(hit=1)},
            log_lines=["WARNING: reply \x1b[2J\rforged\nline"],
        )
        out = io.StringIO()
        print_report(report, out)
        text = out.getvalue()
        assert unsafe_in(text) == []
        assert "read \\x1b]0;x\\x07\\r  PASS" in text  # the detail's own second line, escaped
        assert "WARNING: reply \\x1b[2J\\rforged\\nline" in text
        assert "backend:\\x1b[31mEvil\\u202e" in text
        assert "backend \\x1b[2Jmine" in text
