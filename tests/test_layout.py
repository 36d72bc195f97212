"""The package's layout, read from its own imports: layers, no cycles, faces between packages.

Every ``import`` in ``motorpatch/`` (at module level or inside a function) is
read with ``ast``, so a lazy import that dodges a circle at run time still
counts. The layers, bottom up, are those of docs/architecture.md#the-layout:
``errors``; ``bridge/``; ``socket_shim/``, ``_detector``, ``_stats``, ``_recorder``, ``_sites``;
``patches/``; ``_versions``, ``audit/``; ``_install``; the face ``motorpatch/__init__``;
the opt-in pytest plugin ``testing/``.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import motorpatch

PACKAGE = Path(motorpatch.__file__).resolve().parent

LAYERS = {
    "motorpatch.errors": 0,
    "motorpatch.bridge": 1,
    "motorpatch.socket_shim": 2,
    "motorpatch._detector": 2,
    "motorpatch._stats": 2,
    "motorpatch._recorder": 2,
    "motorpatch._sites": 2,
    "motorpatch.patches": 3,
    "motorpatch._versions": 4,
    "motorpatch.audit": 4,
    "motorpatch._install": 5,
    "motorpatch": 6,
    "motorpatch.testing": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _package_of(name: str) -> str:
    """The package a module belongs to (a package's __init__ belongs to its parent)."""
    return name.rpartition(".")[0] if "." in name else name


def _imports(name: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name if _is_package(name) else _package_of(name)
                for _ in range(node.level - 1):
                    anchor = _package_of(anchor)
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:  # ``from package import module``
                    found.append((f"{base}.{alias.name}", "", node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
    return found


def _edges() -> dict[str, set[str]]:
    """Module -> the motorpatch modules it imports."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _ in _imports(name):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _layer(name: str) -> int:
    while name not in LAYERS:
        name = _package_of(name)
    return LAYERS[name]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        _layer(name)  # raises KeyError for a module outside every layer


def test_no_import_cycle_in_the_package() -> None:
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in _edges().items()
        for target in targets
        if _layer(target) > _layer(name)
    ]
    assert upward == []


def test_between_packages_only_faces_and_public_names_are_imported() -> None:
    """A module imports another package's ``__init__`` (its face), never a private module or
    a ``_name`` of it, the control plane included; inside a package, anything goes."""
    crossings = []
    for name in MODULES:
        home = name if _is_package(name) else _package_of(name)
        for target, imported, line in _imports(name):
            if target not in MODULES or target == name:
                continue
            there = target if _is_package(target) else _package_of(target)
            if there == home or home.startswith(f"{there}."):
                continue  # the same package, or a module of an enclosing one (control plane)
            if not _is_package(target) or imported.startswith("_"):
                crossings.append(f"{name}:{line} imports {target} {imported}".rstrip())
    assert crossings == []


def test_every_name_imported_from_a_module_is_in_its_all() -> None:
    """``__all__`` lists exactly what other modules may use: each name they import is there."""
    missing = []
    for name in MODULES:
        for target, imported, line in _imports(name):
            if target not in MODULES or target == name or not imported:
                continue
            public = getattr(importlib.import_module(target), "__all__", None)
            if public is None or imported not in public:
                missing.append(f"{name}:{line} imports {imported} from {target}")
    assert missing == []


def test_the_bridge_imports_only_the_standard_library_greenlet_and_errors() -> None:
    allowed = set(sys.stdlib_module_names) | {"greenlet"}
    foreign = []
    for name in MODULES:
        if not name.startswith("motorpatch.bridge"):
            continue
        for target, _, line in _imports(name):
            top = target.partition(".")[0]
            if target.startswith("motorpatch."):
                if not target.startswith(("motorpatch.bridge", "motorpatch.errors")):
                    foreign.append(f"{name}:{line} imports {target}")
            elif top not in allowed and target != "__future__":
                foreign.append(f"{name}:{line} imports {target}")
    assert foreign == []


@pytest.mark.parametrize("expected_absent", [("pymongo", "motorpatch.patches", "tornado")])
def test_import_motorpatch_loads_neither_pymongo_nor_the_patches(
    expected_absent: tuple[str, ...],
) -> None:
    """docs/architecture.md#import-motorpatch-stays-light: install() loads them."""
    code = textwrap.dedent(
        f"""
        import sys
        import motorpatch
        before = [m for m in {expected_absent!r} if m in sys.modules]
        motorpatch.install()
        after = [m for m in {expected_absent[:2]!r} if m not in sys.modules]
        motorpatch.uninstall()
        print(before, after)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["[]", "[]"], out.stdout + out.stderr
