"""The fault language's JSON: a ``Fault`` as data, and any word rebuilt from its data.

``faults`` registers every word (``_register``) and reads schedules with
``_term_from_data``; exception classes travel as ``module:Qualified.Name``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from remote_cache.testing._fault_terms import Action, Raise, When, _Term

if TYPE_CHECKING:
    from remote_cache.testing.faults import Fault


def _fault_data(fault: Fault) -> dict[str, Any]:
    data = fault.to_data()
    data["does"] = fault.does.to_data()
    if "when" in data:
        data["when"] = fault.when.to_data()
    return data


_TERMS: dict[str, type[_Term]] = {}


def _register(*classes: type[_Term]) -> None:
    for cls in classes:
        _TERMS[cls.__name__] = cls


def _term_from_data(data: Any, expected: type[_Term]) -> Any:
    """Rebuild a term from its ``to_data``; ``ValueError`` naming the problem."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(
            f"Expected {{'type': ..., ...}} for a {expected.__name__} but got {data!r}"
        )
    cls = _TERMS.get(data["type"])
    if cls is None or not issubclass(cls, expected):
        raise ValueError(f"unknown {expected.__name__} type {data['type']!r}")
    fields = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    arguments: dict[str, Any] = {}
    for name, given in data.items():
        if name == "type":
            continue
        if name not in fields:
            raise ValueError(f"{cls.__name__} has no field {name!r}")
        arguments[name] = _field_from_data(cls, name, given)
    try:
        return cls(**arguments)
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: {exc}") from exc


def _field_from_data(cls: type[_Term], name: str, given: Any) -> Any:
    """One field's value from JSON: terms rebuilt, exception classes imported, lists as tuples."""
    if name == "does":
        return _term_from_data(given, Action)
    if name == "when":
        return _term_from_data(given, When)
    if name == "error" and cls is Raise:
        return _exception_class(given)
    if name == "on" and isinstance(given, list):
        return tuple(given)
    return given


def _exception_class(path: Any) -> type[BaseException]:
    """The exception class named ``module.Name`` (builtins by their name alone)."""
    import builtins
    import importlib

    if not isinstance(path, str) or not path:
        raise ValueError(f"Expected an exception class's name (module:Class) but got {path!r}")
    if ":" in path:  # module:Qualified.Name, as to_json writes it
        module_name, _, qualname = path.partition(":")
    else:  # module.Name, or a builtin's bare name
        module_name, _, qualname = path.rpartition(".")
    try:
        found: Any = importlib.import_module(module_name) if module_name else builtins
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"no exception class {path!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"{path!r} is not an exception class")
    return found
