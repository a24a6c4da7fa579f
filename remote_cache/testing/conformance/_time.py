"""``check_time``: what was written is still there a while later.

A store that expires the working set (a TTL in seconds handed to an API that takes
milliseconds, an eviction that drops entries just written) passes every check that reads
right after it writes. This one writes a working set, waits ``after`` seconds on the
process's clock (the test's ``VirtualClock`` when one is installed, for backends that read it,
as ours do; real time otherwise, kept short), and reads every entry back; with a declared
``expire`` (seconds, as the Redis backend's), it also reads them back just before that.
"""

from __future__ import annotations

from typing import Any

from remote_cache import RemoteCacheBackend, _clock
from remote_cache.testing.conformance._probe import BackendFactory, _pattern, _Probe

__all__ = ["READ_BACK_AFTER", "check_time"]

READ_BACK_AFTER = 0.5
"""Seconds ``check_time`` waits before it reads the working set back, by default."""

_ENTRIES = 64


LONGEST_REAL_WAIT = 5.0
"""The longest wait for a declared ``expire`` in real time (no test clock installed)."""


def check_time(make_backend: BackendFactory, *, after: float = READ_BACK_AFTER) -> str | None:
    """Entries written, by ``put`` and ``put_many``, read back whole ``after`` seconds later
    (and just before a declared ``expire``, when the backend declares one: on the test's
    clock, or in real time when that is at most ``LONGEST_REAL_WAIT``). Returns a note when
    a declared expiry was too long to wait for."""
    if not (isinstance(after, int | float) and after >= 0):
        raise ValueError(f"Expected after >= 0 seconds but got {after!r}")
    backend = make_backend()
    replay = f"check_time(make_backend, after={after:g}) (deterministic)"
    probe = _Probe(backend, "check_time", replay)
    single = {f"time-{n}": _pattern(100 + n, salt=7) for n in range(_ENTRIES // 2)}
    batch = {f"time-batch-{n}": _pattern(300 + n, salt=7) for n in range(_ENTRIES // 2)}
    for key, value in single.items():
        probe.put(key, value)
    probe.put_many(batch)
    waits = [after]
    expire = _declared_expire(backend)
    unchecked = None
    if expire is not None and expire * 0.9 > after:
        if _clock.installed() is None and expire * 0.9 - after > LONGEST_REAL_WAIT:
            unchecked = (
                f"{type(backend).__name__}: check_time did not wait for its expire={expire:g} "
                "s in real time: install a VirtualClock (remote_cache_clock) if the backend "
                "reads remote_cache's clock"
            )
        else:
            waits.append(expire * 0.9 - after)
    waited = 0.0
    for wait in waits:
        _clock.sleep(wait)
        waited += wait
        _read_back(probe, {**single, **batch}, waited, expire)
    return unchecked


def _declared_expire(backend: RemoteCacheBackend[Any]) -> float | None:
    """The backend's declared expiry in seconds (``expire``), if it declares a number."""
    expire = getattr(backend, "expire", None)
    if isinstance(expire, bool) or not isinstance(expire, int | float) or expire <= 0:
        return None
    return float(expire)


def _read_back(
    probe: _Probe, written: dict[str, bytes], waited: float, expire: float | None
) -> None:
    declared = f"; it declares expire={expire:g} s" if expire is not None else ""
    note = (
        f"gone {waited:g} s after it was written{declared}: an expiry shorter than meant "
        "(seconds given to an API that takes milliseconds?), or an eviction of what was "
        "just written"
    )
    for key, value in written.items():
        probe.get(key, value, after=f"{waited:g} s after the puts, ", note=note)
    probe.get_many(list(written), written, after=f"{waited:g} s after the puts, ", note=note)
