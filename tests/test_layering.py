"""The package's layering, read from its import graph with ``ast``.

The layers, bottom to top: ``errors``; ``a64`` (instruction facts, nothing else);
``dialects`` and the case format; ``image`` and ``machine``; ``patchers``; ``scenarios``;
``judge``/``report``; ``pipeline``; the faces (plugin, fixtures, CLI). An arrow may only
point down. Imports inside ``if TYPE_CHECKING:`` are arrows too: a type that must be
imported from above is a sign the code sits on the wrong floor.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "pytest_altpatch"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100

#: Modules (or packages) that belong to the faces: only they may import pytest, and
#: nothing below them may import them.
FACES = ("plugin", "fixtures", "cli", "faces")

#: Lower layers and what they must never import (prefixes of module names).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "a64": ("dialects", "cases", "image", "machine", "patchers", "scenarios", "judge",
            "report", "pipeline", "native", "kernel", "supervisor", *FACES),
    "machine": ("cases", "patchers", "scenarios", "judge", "report", "pipeline", "native",
                "kernel", "supervisor", *FACES),
    "cases": ("machine", "image", "patchers", "scenarios", "judge", "report", "pipeline",
              "native", "kernel", "supervisor", *FACES),
    "dialects": ("cases", "image", "machine", "patchers", "scenarios", "judge", "report",
                 "pipeline", "native", "kernel", "supervisor", *FACES),
    "image": ("machine", "patchers", "scenarios", "judge", "report", "pipeline", "native",
              "kernel", "supervisor", *FACES),
    "patchers": ("scenarios", "judge", "report", "pipeline", "supervisor", *FACES),
    "scenarios": ("judge", "report", "pipeline", *FACES),
    "judge": ("report", "pipeline", *FACES),
    "pipeline": FACES,
}


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name (without the package) and its file."""

    name: str
    path: Path

    @property
    def top(self) -> str:
        """The first component of the name: the layer it belongs to."""
        return self.name.split(".")[0]


def modules() -> list[Module]:
    """Every module of the package, ``__init__`` files named by their package."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            found.append(Module(".".join(parts), path))
    return found


def _resolve(module: Module, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        name = node.module or ""
        if name == PACKAGE:
            return ""
        return name[len(PACKAGE) + 1:] if name.startswith(PACKAGE + ".") else None
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: Module, names: set[str]) -> Iterator[tuple[str, int]]:
    """Yield (imported module, line) for each import of this package's modules."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    yield alias.name[len(PACKAGE) + 1:], node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                yield (sub if sub in names else target), node.lineno


def third_party_imports(module: Module) -> Iterator[tuple[str, int]]:
    """Yield (top-level name, line) of every absolute import outside the package."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def graph() -> dict[str, set[str]]:
    """Module name -> the package modules it imports (a package import is to its
    ``__init__``, i.e. to the package's own name)."""
    mods = modules()
    names = {m.name for m in mods}
    edges: dict[str, set[str]] = {m.name: set() for m in mods}
    for m in mods:
        for imported, _line in imports_of(m, names):
            target = imported
            while target and target not in names:
                target = target.rpartition(".")[0]
            if target and target != m.name:
                edges[m.name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm).

    A package's ``__init__`` that re-exports its own submodules is not a cycle with
    them: arrows from a package to its own submodules are dropped first.
    """
    down = {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in edges.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(down[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(down):
        if name not in index:
            visit(name)
    return found


def _is_face(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in FACES


def backward_arrows() -> list[str]:
    """Every import that points up the layers, as ``module:line -> target``."""
    mods = modules()
    names = {m.name for m in mods}
    found = []
    for m in mods:
        banned = FORBIDDEN.get(m.top, ())
        for target, line in imports_of(m, names):
            top = target.split(".")[0]
            if top in banned or (not _is_face(m.name) and _is_face(target)):
                found.append(f"{m.name}:{line} -> {target}")
        if not _is_face(m.name):
            for top, line in third_party_imports(m):
                if top in ("pytest", "_pytest", "pluggy"):
                    found.append(f"{m.name}:{line} -> {top}")
    return found


def long_functions() -> list[str]:
    """Every function or method longer than MAX_FUNCTION_LINES, as ``module:line name (n)``."""
    found = []
    for m in modules():
        tree = ast.parse(m.path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{m.name}:{node.lineno} {node.name} ({length})")
    return found


def long_modules() -> list[str]:
    """Every module over MAX_MODULE_LINES lines, as ``module (n)``."""
    found = []
    for m in modules():
        count = len(m.path.read_text(encoding="utf-8").splitlines())
        if count > MAX_MODULE_LINES:
            found.append(f"{m.name} ({count})")
    return found


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(graph()) == []


def test_no_import_points_up_the_layers() -> None:
    assert backward_arrows() == []


def test_no_module_is_over_600_lines() -> None:
    assert long_modules() == []


def test_no_function_is_over_100_lines() -> None:
    assert long_functions() == []


@pytest.mark.parametrize(("text", "expected"), [
    ("from pytest_altpatch.machine import core\n", "machine.core"),
    ("from ..errors import AltpatchError\n", "errors"),
    ("from . import core\n", "machine.core"),
])
def test_imports_are_resolved_to_module_names(tmp_path: Path, text: str, expected: str) -> None:
    # The checker itself must see relative and from-package imports, or it passes vacuously.
    path = ROOT / "machine" / "context.py"
    module = Module("machine.context", path)
    tree_names = {"machine.core", "errors", "machine"}
    fake = tmp_path / "context.py"
    fake.write_text(text, encoding="utf-8")
    found = [t for t, _ in imports_of(Module(module.name, fake), tree_names)]
    assert found == [expected]


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
