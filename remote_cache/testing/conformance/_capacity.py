"""``check_capacity``: a store filled past its declared capacity keeps what was written last.

A backend that declares ``capacity_bytes`` (an LRU store, a size-capped folder) may evict
when full, but the entry just written, and the most recent ones after it, must survive: a
store that evicts what it has just written loses every new compile's result while it is
full. The check writes 64 KiB values until one and a half times the capacity went in; each
must read back right after its put, and the last quarter of the capacity's worth at the end.
"""

from __future__ import annotations

from typing import Any

from remote_cache import RemoteCacheBackend
from remote_cache.testing.conformance._probe import BackendFactory, _pattern, _Probe

__all__ = ["LARGEST_CAPACITY_CHECKED", "check_capacity"]

LARGEST_CAPACITY_CHECKED = 64 * 1024 * 1024
"""The largest ``capacity_bytes`` ``check_capacity`` fills (64 MiB); above it, it says so."""

_VALUE = 64 * 1024


def declared_capacity(backend: RemoteCacheBackend[Any]) -> int | None:
    """The backend's ``capacity_bytes``, validated (None: it declares none)."""
    capacity = getattr(backend, "capacity_bytes", None)
    if capacity is None:
        return None
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 4 * _VALUE:
        raise AssertionError(
            f"{type(backend).__name__}: check_capacity: declares capacity_bytes={capacity!r}; "
            f"it must be None or an int of at least {4 * _VALUE:,}"
        )
    return capacity


def check_capacity(make_backend: BackendFactory) -> str | None:
    """Fill a backend past its declared ``capacity_bytes``: each entry reads back right after
    it is written, and the newest quarter of the capacity at the end. Returns a note when it
    could not run (no capacity declared, or one over ``LARGEST_CAPACITY_CHECKED``)."""
    backend = make_backend()
    capacity = declared_capacity(backend)
    if capacity is None:
        return None
    name = type(backend).__name__
    if capacity > LARGEST_CAPACITY_CHECKED:
        return (
            f"{name}: check_capacity not run: capacity_bytes={capacity:,} is over the "
            f"{LARGEST_CAPACITY_CHECKED:,} bytes it fills"
        )
    probe = _Probe(backend, "check_capacity", "check_capacity(make_backend) (deterministic)")
    count = (capacity * 3 // 2) // _VALUE + 1
    written: list[tuple[str, bytes]] = []
    note = (
        f"the store declares capacity_bytes={capacity:,}: when full it may evict older "
        "entries, never the one just written (an eviction of the newest?)"
    )
    for index in range(count):
        key, value = f"fill-{index}", _pattern(_VALUE, salt=index)
        probe.put(key, value)
        probe.get(key, value, after=f"{(index + 1) * _VALUE:,} bytes written, then ", note=note)
        written.append((key, value))
    newest = written[-max(1, capacity // 4 // _VALUE) :]
    after = f"{count * _VALUE:,} bytes written into {capacity:,}, then "
    for key, value in newest:
        probe.get(key, value, after=after, note=note)
    return None
