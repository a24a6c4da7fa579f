"""The package's layers, read from the source: imports run one way, with no cycle and no reach-in.

docs/architecture.md draws the layers. The source is read with ``ast``, never imported; the
test imports nothing but the standard library.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "remote_cache"

LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "exceptions",
        "_guard",
        "_process",
        "_clock",
        "_text",
        "_validation",
        "_serde",
        "_stats",
        "_backend",
        "_breaker",
        "_controller",
    ),
    "settings": ("_settings",),
    "backends": ("_local", "_redis"),
    "caches": ("_caches", "_override_layers", "_factory", "__init__"),
    "torch": ("torch",),
    "testing": ("testing",),
    "cli": ("cli", "__main__"),
}
"""Lowest first. A module is in the layer of its unit: the first name after ``remote_cache``
(``_redis`` for ``remote_cache._redis.clients``; ``__init__`` for the package itself)."""

ENTRY_POINTS = {"remote_cache.testing.cli": "cli", "remote_cache.testing.__main__": "cli"}
"""Modules in the cli layer that sit in testing's folder: ``python -m remote_cache.testing`` and
the older import path of ``main``, kept for users."""

RANK = {unit: rank for rank, units in enumerate(LAYERS.values()) for unit in units}
LAYER_OF = {unit: layer for layer, units in LAYERS.items() for unit in units}


def module_name(path: Path) -> str:
    """``remote_cache._redis.clients`` for ``remote_cache/_redis/clients.py``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The first name after ``remote_cache`` (``__init__`` for the package itself), or the
    unit ``ENTRY_POINTS`` gives."""
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package of ours (rather than a name in one)."""
    relative = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    base = PACKAGE / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@dataclass(frozen=True)
class Import:
    """One import of ours: in ``source``, of module ``target``, of ``name`` (None: the module)."""

    source: str
    target: str
    name: str | None
    line: int


def _resolve(source: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imported_by_call(node: ast.AST) -> str | None:
    """The module of ours that ``importlib.import_module("...")`` or ``__import__("...")``
    names with a constant, or None."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    named = node.args[0].value
    if called not in ("import_module", "__import__") or not isinstance(named, str):
        return None
    return named if named.split(".")[0] == "remote_cache" and is_module(named) else None


def imports_of(path: Path, source: str | None = None) -> Iterator[Import]:
    """Every import of ``remote_cache`` in the file, at any depth (in functions too).

    ``source`` is the file's module name (default: read from its place in the package).
    """
    source = source or module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (named := _imported_by_call(node)) is not None:
            yield Import(source, named, None, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "remote_cache":
                    yield Import(source, alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(source, path, node)
            if target.split(".")[0] != "remote_cache":
                continue
            for alias in node.names:
                dotted = f"{target}.{alias.name}"
                if is_module(dotted):
                    yield Import(source, dotted, None, node.lineno)
                else:
                    yield Import(source, target, alias.name, node.lineno)


def _bound_modules(tree: ast.Module, source: str, path: Path) -> dict[str, str]:
    """Local names bound to our modules by ``import ... as`` and ``from ... import``."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "remote_cache":
                    continue
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:  # import remote_cache.x.y binds remote_cache: reads go down from it
                    bound["remote_cache"] = "remote_cache"
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(source, path, node)
            for alias in node.names:
                dotted = f"{target}.{alias.name}"
                if target.split(".")[0] == "remote_cache" and is_module(dotted):
                    bound[alias.asname or alias.name] = dotted
    return bound


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute) and (head := _chain(node.value)) is not None:
        return [*head, node.attr]
    return None


def _private_read(bound: dict[str, str], words: list[str]) -> tuple[str, str] | None:
    """(module, name) when ``words`` reads a private name of one of our modules."""
    if words[0] not in bound:
        return None
    module, rest = bound[words[0]], words[1:]
    while rest and is_module(f"{module}.{rest[0]}"):
        module, rest = f"{module}.{rest[0]}", rest[1:]
    if rest and rest[0].startswith("_") and not rest[0].startswith("__"):
        return module, rest[0]
    return None


def private_attributes(path: Path, source: str | None = None) -> Iterator[tuple[str, str, int]]:
    """Private names of our modules read through a module: ``module._name``,
    ``remote_cache.module._name`` and ``getattr(module, "_name")``: (module, name, line)."""
    source = source or module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound = _bound_modules(tree, source, path)
    seen: set[tuple[str, str, int]] = set()
    for node in ast.walk(tree):
        words = _chain(node) if isinstance(node, ast.Attribute) else None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            head = _chain(node.args[0])
            words = [*head, node.args[1].value] if head else None
        found = _private_read(bound, words) if words else None
        if found and (*found, node.lineno) not in seen:
            seen.add((*found, node.lineno))
            yield (*found, node.lineno)


def declared(module: str) -> set[str] | None:
    """The names in ``module``'s ``__all__``, or None when it has none."""
    relative = Path(*module.split(".")[1:]) if "." in module else Path()
    path = PACKAGE / relative / "__init__.py"
    path = path if path.is_file() else (PACKAGE / relative).with_suffix(".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return {element.value for element in node.value.elts}  # type: ignore[attr-defined]
    return None


FILES = sorted(PACKAGE.rglob("*.py"))
EVERY_IMPORT = [imported for path in FILES for imported in imports_of(path)]


def where(imported: Import) -> str:
    return f"{imported.source} (line {imported.line}) imports {imported.target}" + (
        f".{imported.name}" if imported.name else ""
    )


def test_every_module_has_a_layer() -> None:
    units = {unit_of(module_name(path)) for path in FILES}
    assert units <= set(RANK), f"modules in no layer: {sorted(units - set(RANK))}"


def test_imports_run_down_the_layers() -> None:
    upward = [
        f"{where(i)}: {LAYER_OF[unit_of(i.source)]} -> {LAYER_OF[unit_of(i.target)]}"
        for i in EVERY_IMPORT
        if RANK[unit_of(i.target)] > RANK[unit_of(i.source)]
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_private_name_of_another_unit() -> None:
    reach_ins = [
        where(i)
        for i in EVERY_IMPORT
        if i.name and i.name.startswith("_") and unit_of(i.target) != unit_of(i.source)
    ]
    for path in FILES:
        source = module_name(path)
        reach_ins += [
            f"{source} (line {line}) reads {target}.{name}"
            for target, name, line in private_attributes(path)
            if unit_of(target) != unit_of(source)
        ]
    assert not reach_ins, "private names used across units:\n" + "\n".join(reach_ins)


def test_names_from_another_unit_are_in_its_all() -> None:
    """A module's ``__all__`` is what other units may use of it: a name left out of it is
    private, underscore or not."""
    undeclared = [
        where(i)
        for i in EVERY_IMPORT
        if i.name
        and unit_of(i.target) != unit_of(i.source)
        and (names := declared(i.target)) is not None
        and i.name not in names
    ]
    assert not undeclared, "names not in their module's __all__:\n" + "\n".join(undeclared)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for i in EVERY_IMPORT:
        if unit_of(i.source) != unit_of(i.target):
            graph.setdefault(unit_of(i.source), set()).add(unit_of(i.target))
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_checks_see_both_forms_of_reach_in(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from remote_cache._controller import _note_failure\n"
        "from remote_cache import _stats as stats_module\n"
        "def f():\n"
        "    from remote_cache.testing import _fixtures\n"
        "    return stats_module._registries, _fixtures.__doc__\n",
        encoding="utf-8",
    )
    found = list(imports_of(planted, "remote_cache.torch"))
    assert sorted((i.target, i.name or "") for i in found) == [
        ("remote_cache._controller", "_note_failure"),
        ("remote_cache._stats", ""),
        ("remote_cache.testing._fixtures", ""),
    ]
    assert [(t, n) for t, n, _ in private_attributes(planted, "remote_cache.torch")] == [
        ("remote_cache._stats", "_registries")
    ]


def test_the_checks_see_reads_through_chains_getattr_and_importlib(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import importlib\n"
        "import remote_cache._controller\n"
        "remote_cache._controller._failing.clear()\n"
        "getattr(remote_cache._stats, '_registries')\n"
        "importlib.import_module('remote_cache.testing')\n"
        "__import__('remote_cache.cli')\n"
        "remote_cache._controller.note_failure\n",
        encoding="utf-8",
    )
    modules = {i.target for i in imports_of(planted, "remote_cache._local") if i.name is None}
    assert {"remote_cache.testing", "remote_cache.cli"} <= modules
    assert sorted((t, n) for t, n, _ in private_attributes(planted, "remote_cache._local")) == [
        ("remote_cache._controller", "_failing"),
        ("remote_cache._stats", "_registries"),
    ]
