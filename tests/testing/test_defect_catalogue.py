"""Every defect of the catalogue is caught by the default suite, with a message to act on."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remote_cache import RemoteCacheBackend
from remote_cache.testing.conformance import check_backend
from tests.testing import defects

Factory = Callable[[], RemoteCacheBackend[Any]]


def _files(cls: type[Any]) -> Callable[[Path], Factory]:
    def build(tmp_path: Path) -> Factory:
        counter = itertools.count()
        return lambda: cls(tmp_path / f"backend-{next(counter)}")

    return build


def _plain(cls: type[Any]) -> Callable[[Path], Factory]:
    return lambda _tmp_path: cls


# (defect, how to build its factory, the check that catches it, what the message must say)
CATALOGUE: list[tuple[str, Callable[[Path], Factory], str, str]] = [
    ("EmptyBytesIsMissing", _plain(defects.EmptyBytesIsMissing), "check_contract",
     r"get\('value-0'\).*expected: 0 bytes b''.*actual:   None \(a miss\)"),
    ("DropsValuesOver1MiB", _plain(defects.DropsValuesOver1MiB), "check_values",
     r"get\('size-1048577'\).*expected: 1,048,577 bytes.*actual:   None"),
    ("TruncatesAt1MiB", _plain(defects.TruncatesAt1MiB), "check_values",
     r"get\('size-1048577'\).*expected: 1,048,577 bytes.*actual:   1,048,576 bytes"),
    ("DeclaresMoreThanItHolds", _plain(defects.DeclaresMoreThanItHolds), "check_values",
     r"get\('size-1048577'\).*actual:   None"),
    ("RefusesWithoutDeclaring", _plain(defects.RefusesWithoutDeclaring), "check_values",
     r"put\('size-1048577', 1,048,577 bytes\) raised ValueTooLargeError.*max_value_bytes=None"),
    ("StripsTrailingNul", _plain(defects.StripsTrailingNul), "check_contract",
     r"wrote 1 bytes under 'value-1'.*expected: 1 bytes b'\\x00'.*actual:   0 bytes b''"),
    ("ReturnsStr", _plain(defects.ReturnsStr), "check_contract",
     r"expected: 0 bytes b''.*actual:   a str \(not bytes\)"),
    ("ReturnsBytearray", _plain(defects.ReturnsBytearray), "check_contract",
     r"actual:   a bytearray \(not bytes\)"),
    ("ReusesWriteBuffer", _plain(defects.ReusesWriteBuffer), "check_contract",
     r"get_many\(.*key:      'batch-a'.*expected: 0 bytes b''.*actual:   1 bytes b'b'.*"
     r"value written under 'batch-b'"),
    ("CaseInsensitiveKeys", _plain(defects.CaseInsensitiveKeys), "check_keys",
     r"get\('cache-key'\).*value written under 'Cache-Key'.*case"),
    ("NormalisesUnicodeKeys", _plain(defects.NormalisesUnicodeKeys), "check_keys",
     r"get\('café'\).*value written under 'cafe\\u0301'.*Unicode normalisation"),
    ("TruncatesKeysAt250Bytes", _plain(defects.TruncatesKeysAt250Bytes), "check_keys",
     r"get\('kkkkkkkkkkkkkkkkkkkk'…'kkkkkkka' \(250 characters, 250 bytes\)\).*written under"),
    ("ManglesNonAsciiKeys", _plain(defects.ManglesNonAsciiKeys), "check_keys",
     r"get\('\\u0131'\)|get\('İ'\)|get\('ǆ'\).*written under"),
    ("CutsKeysAtNul", _plain(defects.CutsKeysAtNul), "check_keys",
     r"get\('k'\).*written under 'k\\x00\\x00'"),
    ("StripsKeyWhitespace", _plain(defects.StripsKeyWhitespace), "check_keys",
     r"get\('k'\).*written under 'k\\r\\n'"),
    ("StripsCachePrefix", _plain(defects.StripsCachePrefix), "check_keys",
     r"get\('pt2:graphs::h:c1'\).*written under 'h:c1'.*cache prefix pt2:<cache id>::.*"
     r"caches with different ids would read each other's entries"),
    ("SqliteTextKeys", _plain(defects.SqliteTextKeys), "check_keys",
     r"put\('x\\ud800', .* raised UnicodeEncodeError"),
    ("KeepsFirstWrite", _plain(defects.KeepsFirstWrite), "check_contract",
     r"second write to a key did not replace the first.*expected: 6 bytes b'second'"),
    ("StaleReadAfterOverwrite", _plain(defects.StaleReadAfterOverwrite), "check_overwrites",
     r"put\(b'first'\), get, put\(b'second'\), then get\('ow'\).*actual:   5 bytes b'first'"),
    ("GetManyMissesAsNone", _plain(defects.GetManyMissesAsNone), "check_contract",
     r"get_many\(\['batch-a', 'batch-b', 'batch-absent', 'batch-a'\]\).*'batch-absent': None"),
    ("GetManyMisaligned", _plain(defects.GetManyMisaligned), "check_batches",
     r"get_many\(.*key:      'batch-absent-1'.*expected: the key left out.*"
     r"actual:   the key present with 7 bytes b'value 0'.*written under 'batch-0'"),
    ("KeepsOnlyTheLastBatchKey", _plain(defects.KeepsOnlyTheLastBatchKey), "check_contract",
     r"get_many\(\['batch-a', .*expected: \{'batch-a': b'', 'batch-b': b'b'\}"),
    ("TruncatesBatchesAt999", _plain(defects.TruncatesBatchesAt999), "check_batches",
     r"put_many of 1,200 keys, then get_many.*expected: 6 bytes.*actual:   None"),
    ("SharedStore", _plain(defects.SharedStore), "check_contract",
     r"a second backend from the factory.*share a store"),
    ("SingleFileNoLock", _files(defects.SingleFileNoLock), "check_concurrency",
     r"4 threads.* get\('conc-\d-\d+'\).*key:      'conc-.*actual:   None \(a miss\).*"
     r"(concurrent write of another key lost it|concurrent writes lost)"),
    ("LocksOnlyWithinOneProcess", _files(defects.LocksOnlyWithinOneProcess), "check_concurrency",
     r"2 processes.* get\('proc-\d-\d+'\).*key:      'proc-.*actual:   None \(a miss\).*"
     r"(concurrent write of another key lost it|concurrent writes lost)"),
    ("TornWrites", _files(defects.TornWrites), "check_concurrency",
     r"get\('torn'\) while another worker overwrote it.*expected: one of the two values "
     r"written, whole.*partly written value"),
    ("CompressionSniffing", _plain(defects.CompressionSniffing), "check_values",
     r"put\('special-\d+', 47 bytes b'x\\x9c.*then get\('special-\d+'\).*"
     r"key:      'special-\d+'.*expected: 47 bytes b'x\\x9c.*actual:   39 bytes b'\{\"already"),
    ("KeyPlusValueLimit", _plain(defects.KeyPlusValueLimit), "check_values",
     r"largest value allowed \(1,048,476 bytes\) under a key of 4,063 bytes.*"
     r"key:      'size-limit-.*\(1,024 characters, 4,063 bytes\).*"
     r"expected: 1,048,476 bytes.*actual:   None \(a miss\).*counts the key too"),
    ("BackslashReplaceKeys", _plain(defects.BackslashReplaceKeys), "check_keys",
     r"get\('x\\ud800'\).*key:      'x\\ud800'.*expected: .*"
     r"value written under 'x\\\\ud800'"),
    ("PutManyDedupesCaseInsensitively", _plain(defects.PutManyDedupesCaseInsensitively),
     "check_keys",
     r"put_many of the 15 keys of the case family, then get_many\(.*key:      'CACHE-KEY'.*"
     r"expected: 22 bytes b'1:case:batch:CACHE-KEY'.*in one put_many"),
    ("SharedConnectionReplies", _plain(defects.SharedConnectionReplies), "check_concurrency",
     r"4 threads at once; thread \d: get(_many)?\(.*key:      '(conc|torn|absent).*expected: .*"
     r"(that is the value of '.*a reply meant for another call|a miss for a key)"),
    ("LastReadCacheRacy", _plain(defects.LastReadCacheRacy), "check_concurrency",
     r"4 threads at once; thread \d: get(_many)?\(.*key:      '.*expected: .*"
     r"(that is the value of '.*read cache updated without a lock|a miss for a key)"),
    ("FolderFixedTempName", _files(defects.FolderFixedTempName), "check_concurrency",
     r"(4 threads|2 processes).* at once; (thread|process) \d: (put\('same', [\d,]+ bytes\)|"
     r"get\('same'\)).*key:      'same'.*expected: (the call to succeed|one of the \d values)"),
    ("FolderNamedByHash", _files(defects.FolderNamedByHash), "check_concurrency",
     r"2 processes \(started by spawn: .*\) at once; process \d: .*get(_many)?\(.*"
     r"expected: .*actual:   None \(a miss\).*keys named by hash\(\)"),
    ("SqliteLikeLookup", _plain(defects.SqliteLikeLookup), "check_keys",
     r"get\('CACHE-KEY'\).*written under 'cache-key'.*SQL LIKE instead of =\?"),
    ("NamesEntriesByShortMd5", _plain(defects.NamesEntriesByShortMd5), "check_keys",
     r"get\('pt2:graphs::key-99314'\).*written under 'pt2:graphs::key-114856'.*"
     r"short checksum"),
    ("JoinsBatchKeysWithComma", _plain(defects.JoinsBatchKeysWithComma), "check_keys",
     r"get_many\(\['a,b', .*separators or their escapes \(batch keys joined"),
    ("EscapesCommasOnly", _plain(defects.EscapesCommasOnly), "check_keys",
     r"get\('a,b'\).*value written under 'a%2Cb'.*does not escape its own escape"),
    ("ChunksInTheKeySpace", _plain(defects.ChunksInTheKeySpace), "check_keys",
     r"put\('big', 3,145,729 bytes\), then put of keys named like its chunks, then "
     r"get\('big'\).*"
     r"expected: 3,145,729 bytes.*chunks stored under names in the caller's own key space"),
    ("TtlInMilliseconds", _plain(defects.TtlInMilliseconds), "check_time",
     r"0.5 s after the puts, get\('time-0'\).*expected: 100 bytes.*actual:   None \(a miss\).*"
     r"gone 0.5 s after it was written.*milliseconds"),
    ("EvictsNewestWhenFull", _plain(defects.EvictsNewestWhenFull), "check_capacity",
     r"bytes written, then get\('fill-\d+'\).*expected: 65,536 bytes.*actual:   None.*"
     r"never the one just written"),
    ("FolderRemembersMisses", _files(defects.FolderRemembersMisses), "check_concurrency",
     r"2 processes .* at once; process \d: after another worker wrote it, "
     r"get\('late-proc'\).*key:      'late-proc'.*expected: 46 bytes b'late: .*"
     r"actual:   None \(a miss\).*a miss remembered"),
    ("FolderWithNearCache", _files(defects.FolderWithNearCache), "check_concurrency",
     r"2 processes \(started by fork: the backend cannot be pickled .*\) at once; "
     r"process \d: after another worker overwrote it, get\('stale'\).*key:      'stale'.*"
     r"expected: 25 bytes b'stale: the value.*a stale read"),
]  # fmt: skip


class TestCatalogue:
    """``check_backend`` with default settings catches each defect with a full message."""

    def test_the_catalogue_is_large_enough(self) -> None:
        assert len(CATALOGUE) >= 20
        assert len({name for name, *_ in CATALOGUE}) == len(CATALOGUE)

    @pytest.mark.parametrize(
        ("name", "build", "check", "detail"), CATALOGUE, ids=[entry[0] for entry in CATALOGUE]
    )
    def test_caught(
        self,
        name: str,
        build: Callable[[Path], Factory],
        check: str,
        detail: str,
        tmp_path: Path,
    ) -> None:
        defects.SharedStore.shared.clear()
        with pytest.raises(AssertionError) as caught:
            check_backend(build(tmp_path))
        message = str(caught.value)
        assert message.startswith(f"{name}: {check}: "), message
        assert re.search(detail, message, re.DOTALL), message
        assert "\n  replay:   check_" in message, message
        if "raised" not in message.splitlines()[0]:
            assert "\n  expected: " in message, message
            assert "\n  actual:   " in message, message


class TestMessages:
    """Failure messages shorten long keys, and random checks name the seed that replays them."""

    def test_long_keys_are_shortened(self) -> None:
        with pytest.raises(AssertionError) as caught:
            check_backend(defects.TruncatesKeysAt250Bytes)
        assert "k" * 60 not in str(caught.value)

    def test_the_seed_replays_a_random_failure(self) -> None:
        from remote_cache.testing.conformance import check_model

        class ForgetsNonAscii(defects.DictBackend):
            def _put(self, key: str, data: bytes) -> None:
                if key.isascii():
                    super()._put(key, data)

        with pytest.raises(AssertionError) as caught:
            check_model(ForgetsNonAscii, examples=200)
        message = str(caught.value)
        found = re.search(r"random_seed=(\d+)\)", message)
        assert found is not None, message
        assert re.search("Falsifying example|Failing test case", message), message
        with pytest.raises(AssertionError) as again:
            check_model(ForgetsNonAscii, examples=200, random_seed=int(found.group(1)))
        assert str(again.value) == message
