"""CPU-side objects (contexts, service calls, code traps) use only the machine's port."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_altpatch.machine as machine_package

MACHINE = Path(machine_package.__file__).parent
CPU_SIDE = ("context.py", "guest_services.py", "traps.py")


def _foreign_private_uses(tree: ast.AST) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``: a reach into another's internals."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id == "self"):
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("name", CPU_SIDE)
def test_cpu_side_module_reaches_no_private_member_of_another_object(name: str) -> None:
    tree = ast.parse((MACHINE / name).read_text(encoding="utf-8"))
    assert _foreign_private_uses(tree) == []


@pytest.mark.parametrize("name", CPU_SIDE)
def test_cpu_side_module_does_not_import_the_machine_facade(name: str) -> None:
    tree = ast.parse((MACHINE / name).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "pytest_altpatch.machine.core" not in imported
    assert "pytest_altpatch.machine.scheduler" not in imported


def test_the_check_sees_a_reach_into_private_state() -> None:
    tree = ast.parse("def f(machine):\n    return machine._cpus[0]\n")
    assert _foreign_private_uses(tree) == ["line 2: ._cpus"]
