"""spec layer of pytest-altpatch: case and catalog models, loading, validation, lint.

Public API::

    load_catalog(root=None) -> Catalog
    load_case(path, catalog) -> Case
    load_corpus(root=None, *, accept_major=None) -> Corpus
    parse_platform(items, catalog) -> tuple[CpuInstance, ...]
    lint_paths(paths) -> list[AltpatchError]
"""

from pytest_altpatch.cases.case import CASE_FORMAT, load_case
from pytest_altpatch.cases.catalog import load_catalog
from pytest_altpatch.cases.corpus import SUPPORTED_MAJOR, lint_paths, load_corpus
from pytest_altpatch.cases.platform import parse_platform

__all__ = [
    "CASE_FORMAT",
    "SUPPORTED_MAJOR",
    "lint_paths",
    "load_case",
    "load_catalog",
    "load_corpus",
    "parse_platform",
]
