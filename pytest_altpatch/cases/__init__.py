"""spec layer of pytest-altpatch: case and catalog models, loading, validation, lint.

Public API::

    load_catalog(root=None) -> Catalog
    load_case(path, catalog) -> Case
    load_corpus(root=None, *, accept_major=None) -> Corpus
    parse_platform(items, catalog) -> tuple[CpuInstance, ...]
    lint_paths(paths) -> list[AltpatchError]

The names import their submodule on first use (:mod:`pytest_altpatch.lazy`), so a
light submodule (``cases.modes``, ``cases.cpu_numbers``) does not load the YAML and
schema machinery with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_altpatch.lazy import submodule_exports

if TYPE_CHECKING:  # the same names, imported on first use (pytest_altpatch.lazy)
    from pytest_altpatch.cases.case import CASE_FORMAT, load_case
    from pytest_altpatch.cases.catalog import load_catalog
    from pytest_altpatch.cases.corpus import SUPPORTED_MAJOR, lint_paths, load_corpus
    from pytest_altpatch.cases.platform import parse_platform

_EXPORTS = {
    "case": ("CASE_FORMAT", "load_case"),
    "catalog": ("load_catalog",),
    "corpus": ("SUPPORTED_MAJOR", "lint_paths", "load_corpus"),
    "platform": ("parse_platform",),
}
__getattr__, __dir__ = submodule_exports(__name__, _EXPORTS)

__all__ = [
    "CASE_FORMAT",
    "SUPPORTED_MAJOR",
    "lint_paths",
    "load_case",
    "load_catalog",
    "load_corpus",
    "parse_platform",
]
