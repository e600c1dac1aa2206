"""Package namespaces whose names import their submodule when first used (PEP 562).

A layer's ``__init__`` re-exports the names of its submodules.  Importing them all
eagerly made ``import pytest_altpatch.a64.classify`` load the assembler, keystone and
capstone too, and a collection that needs a few facts load the emulator.  A package
built with :func:`submodule_exports` lists, per submodule, the names it re-exports;
each submodule is imported the first time one of its names is read, and the names are
then plain module attributes.  The ``if TYPE_CHECKING:`` imports beside the table give
type checkers the same names; ``tests/test_lazy_exports.py`` holds all three lists
(table, those imports, ``__all__``) equal.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

#: package -> its submodules that export names, for :func:`import_submodules`.
_LAZY_PACKAGES: dict[str, tuple[str, ...]] = {}


def submodule_exports(
    package: str, table: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` that serve ``table``'s names
    (submodule name -> names it exports), importing each submodule on first use."""
    owner = {name: module for module, names in table.items() for name in names}
    _LAZY_PACKAGES[package] = tuple(table)
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> object:
        module = owner.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *owner})

    return __getattr__, __dir__


def import_submodules(package: str) -> None:
    """Import every submodule ``package`` re-exports from, as an eager ``__init__`` would
    (a process that forks warm children wants them all loaded before it forks)."""
    importlib.import_module(package)
    for module in _LAZY_PACKAGES.get(package, ()):
        importlib.import_module(f"{package}.{module}")


__all__ = ["import_submodules", "submodule_exports"]
