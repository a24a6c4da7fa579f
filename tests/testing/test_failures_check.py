"""``check_failures``: a backend whose store cannot be reached raises ``BackendError``
subclasses on every call. Each defect is caught by ``check_backend`` given the way to reach
its store broken, with a message to act on; the bug-free twin passes; a backend that offers no
broken store is told so."""

from __future__ import annotations

import itertools
import re
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remote_cache import BackendUnavailableError, RemoteCacheBackend
from remote_cache.testing import InMemoryBackend
from remote_cache.testing.conformance import BackendConformance, check_backend, check_failures
from tests.testing import defects

Factory = Callable[[], RemoteCacheBackend[Any]]


def _remote(cls: type[defects._Remote]) -> Callable[[Path], tuple[Factory, Factory]]:
    return lambda _tmp_path: (cls, cls.broken)


def _sqlite(tmp_path: Path) -> tuple[Factory, Factory]:
    counter = itertools.count()
    return (
        lambda: defects.SqliteUntranslated(tmp_path / f"db-{next(counter)}.sqlite"),
        lambda: defects.SqliteUntranslated(tmp_path / "missing-folder" / "db.sqlite"),
    )


# (defect, its factories (working, broken), what the message must say)
FAILURES: list[tuple[str, Callable[[Path], tuple[Factory, Factory]], str]] = [
    ("LetsDriverErrorsOut", _remote(defects.LetsDriverErrorsOut),
     r"get\('failure-a'\) on a store that cannot be reached.*expected: a BackendError "
     r"subclass raised.*actual:   ConnectionRefusedError: \[Errno 111\] Connection refused.*"
     r"raise BackendUnavailableError\(\.\.\.\) from exc"),
    ("BaseExceptionOnDeadline", _remote(defects.BaseExceptionOnDeadline),
     r"actual:   StoreTimeout, a BaseException: no answer within 5 s.*never BaseExceptions"),
    ("MissesWhenDown", _remote(defects.MissesWhenDown),
     r"get\('failure-a'\) on a store.*actual:   no error: None \(a miss\).*hides the outage"),
    ("HangsWhenDown", _remote(defects.HangsWhenDown),
     r"check_failures: get\('failure-a'\) on a broken store did not return within 0.5 s"),
    ("SqliteUntranslated", _sqlite,
     r"actual:   OperationalError: unable to open database file.*translate the store's errors"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "build", "detail"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_defect_is_caught(
    name: str, build: Callable[[Path], tuple[Factory, Factory]], detail: str, tmp_path: Path
) -> None:
    working, broken = build(tmp_path)
    deadline = 0.5 if name == "HangsWhenDown" else 10.0  # a file per put is slow on a busy disk
    with pytest.raises(AssertionError) as caught:
        check_backend(working, make_broken_backend=broken, call_deadline=deadline, examples=10)
    message = str(caught.value)
    assert message.startswith(f"{name}: check_failures: "), message
    assert re.search(detail, message, re.DOTALL), message
    assert "\n  replay:   check_failures(make_broken_backend)" in message, message


def test_the_twin_passes() -> None:
    twin = defects.TranslatesStoreErrors
    check_failures(twin.broken)
    assert check_backend(twin, make_broken_backend=twin.broken, examples=10) == []


def test_without_a_broken_store_the_run_says_so() -> None:
    unchecked = check_backend(InMemoryBackend, examples=10, random_seed=0)
    assert len(unchecked) == 1
    assert "check_failures not run: no make_broken_backend given" in unchecked[0]


def test_a_put_acknowledged_on_a_store_that_is_down() -> None:
    class AcksWhenDown(defects.TranslatesStoreErrors):
        def _put(self, key: str, data: bytes) -> None:
            if self.reachable:
                super()._put(key, data)

    with pytest.raises(AssertionError, match=r"(?s)put.*actual:   no error: the write acknowl"):
        check_failures(AcksWhenDown.broken)


class TestTheTestCase:
    def test_skipped_plainly_without_a_broken_store(self) -> None:
        class TestPlain(BackendConformance):
            def make_backend(self) -> Any:
                return InMemoryBackend()

        with pytest.raises(unittest.SkipTest, match="check_failures not run"):
            TestPlain().test_failures()

    def test_run_with_one(self) -> None:
        class TestLeaky(BackendConformance):
            call_deadline = 0.5

            def make_backend(self) -> Any:
                return defects.LetsDriverErrorsOut()

            def make_broken_backend(self) -> Any:
                return defects.LetsDriverErrorsOut.broken()

        with pytest.raises(AssertionError, match="LetsDriverErrorsOut: check_failures"):
            TestLeaky().test_failures()


def test_a_broken_store_built_with_a_driver_error(tmp_path: Path) -> None:
    def reaches_at_once() -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(AssertionError, match="make_broken_backend\\(\\) raised Connection"):
        check_failures(reaches_at_once)


def test_a_backend_that_reaches_its_store_when_built_may_fail_there() -> None:
    def refused_when_built() -> Any:
        raise BackendUnavailableError("connect: refused", backend="x", operation="connect")

    check_failures(refused_when_built)  # typed, as the contract asks


class TestTime:
    """``check_time``: entries read back later, on the test's clock where the backend reads it."""

    def test_a_declared_expiry_is_checked_on_the_test_clock(self) -> None:
        from remote_cache.testing import VirtualClock
        from remote_cache.testing.conformance import check_time

        with VirtualClock() as clock, pytest.raises(AssertionError) as caught:
            check_time(defects.ExpiresEarlierThanDeclared)
        message = str(caught.value)
        assert message.startswith("ExpiresEarlierThanDeclared: check_time: 54 s after the puts")
        assert "it declares expire=60 s" in message
        assert clock.slept == pytest.approx(54)  # advanced, not waited

    def test_our_in_memory_backend_with_an_expiry_passes(self) -> None:
        from remote_cache.testing import VirtualClock
        from remote_cache.testing.conformance import check_time

        with VirtualClock() as clock:
            check_time(lambda: InMemoryBackend(expire=60))
        assert clock.slept == pytest.approx(54)

    def test_a_mistake(self) -> None:
        from remote_cache.testing.conformance import check_time

        with pytest.raises(ValueError, match="after"):
            check_time(InMemoryBackend, after=-1)


class TestCapacity:
    """``check_capacity``: a store filled past its declared capacity keeps the newest."""

    def test_evicting_the_oldest_passes(self) -> None:
        from remote_cache.testing.conformance import check_capacity

        assert check_capacity(defects._Capped) is None

    def test_no_capacity_declared_is_nothing_to_check(self) -> None:
        from remote_cache.testing.conformance import check_capacity

        assert check_capacity(InMemoryBackend) is None

    def test_too_large_to_fill_is_said(self) -> None:
        from remote_cache.testing.conformance import check_capacity

        class Huge(defects._Capped):
            capacity_bytes = 1 << 40

        note = check_capacity(Huge)
        assert note is not None
        assert "check_capacity not run: capacity_bytes=1,099,511,627,776" in note
        assert any("check_capacity not run" in n for n in check_backend(Huge, examples=5))

    @pytest.mark.parametrize("capacity", [True, "1MiB", 10])
    def test_a_bad_declaration(self, capacity: Any) -> None:
        from remote_cache.testing.conformance import check_capacity

        class Odd(defects._Capped):
            capacity_bytes = capacity

        with pytest.raises(AssertionError, match="capacity_bytes="):
            check_capacity(Odd)


class TestThePropertiesMeetTheFamilies:
    """``check_model`` draws two keys of one of ``check_keys``'s families in every example, so a
    store that merges them is found on every seed, not by luck."""

    @pytest.mark.parametrize(
        "defect", [defects.CaseInsensitiveKeys, defects.EscapesCommasOnly], ids=lambda d: d.__name__
    )
    @pytest.mark.parametrize("seed", [0, 1])
    def test_found_on_every_seed(self, defect: type[Any], seed: int) -> None:
        from remote_cache.testing.conformance import check_model

        with pytest.raises(AssertionError, match="check_model"):
            check_model(defect, examples=50, random_seed=seed)


class TestCausesNamed:
    """A message names the likely cause from the two keys that collided."""

    @pytest.mark.parametrize(
        ("key", "other", "cause"),
        [
            ("a_b", "a/b", "SQL LIKE"),
            ("A%", "a-long-key", "SQL LIKE"),
            ("a*", "a-long-key", "a glob"),
            ("a?c", "abc", "a glob"),
            ("a_b", "a_c", None),
            ("cache-key", "CACHE-KEY", None),
        ],
    )
    def test_a_key_read_as_a_pattern(self, key: str, other: str, cause: str | None) -> None:
        from remote_cache.testing.conformance._probe import _pattern_match

        said = _pattern_match(key, other)
        assert (said is None) if cause is None else (said is not None and cause in said)

    def test_a_store_per_thread(self) -> None:
        from remote_cache.testing.conformance._worker import _miss_note

        assert "a store per thread" in _miss_note(other_process=False)


def test_a_long_declared_expiry_is_not_waited_in_real_time() -> None:
    import time as _time

    from remote_cache.testing.conformance import check_time

    started = _time.monotonic()
    note = check_time(lambda: InMemoryBackend(expire=600))
    assert _time.monotonic() - started < 3
    assert note is not None
    assert "did not wait for its expire=600 s" in note


def test_a_backend_that_exits_fails_its_check() -> None:
    class Exits(defects.DictBackend):
        def _get(self, key: str) -> Any:
            if "\n" in key:
                raise SystemExit(3)
            return super()._get(key)

    with pytest.raises(AssertionError, match=r"raised SystemExit\(3\)"):
        check_backend(Exits, examples=5)


def test_a_backend_that_exits_under_hypothesis_fails_its_check() -> None:
    from remote_cache.testing.conformance import check_model

    class ExitsOnNonAscii(defects.DictBackend):
        def _put(self, key: str, data: bytes) -> None:
            if not key.isascii():
                raise SystemExit(4)
            super()._put(key, data)

    with pytest.raises(AssertionError, match="raised SystemExit: 4"):
        check_model(ExitsOnNonAscii, examples=50, random_seed=0)
