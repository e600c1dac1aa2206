"""A whole corpus: ``VERSION``, the catalog and every case under ``cases/``.

Versioning follows semver on the *rules* (INTERPRETING.md), not the case count: a
new major version means a patcher that passed may now fail for reasons other than
its own bugs.  The loader therefore refuses a corpus whose major version is newer
than :data:`SUPPORTED_MAJOR` unless the caller explicitly accepts that major.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from pytest_altpatch.cases.case import read_case
from pytest_altpatch.cases.catalog import CATALOG_DIR, display_path, read_catalog
from pytest_altpatch.cases.model import Case, Catalog, Corpus
from pytest_altpatch.errors import AltpatchError, Location, SpecError
from pytest_altpatch.resources import bundled_corpus

#: The newest corpus major version this loader understands.
SUPPORTED_MAJOR: Final = 2

CASES_DIR = "cases"
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def read_version(root: Path) -> tuple[str, int]:
    """The corpus version string and its major number; SPEC_VERSION if malformed."""
    path = root / "VERSION"
    where = Location(file=display_path(path), line=1, column=1)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("SPEC_IO", f"cannot read the corpus version: {exc}",
                        location=where) from None
    found = _SEMVER.match(text)
    if found is None:
        raise SpecError("SPEC_VERSION", f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)",
                        location=where)
    return text, int(found.group(1))


def check_version(root: Path, accept_major: int | None = None) -> str:
    """Refuse a corpus newer than this loader unless ``accept_major`` names its major."""
    version, major = read_version(root)
    if major > SUPPORTED_MAJOR and major != accept_major:
        raise SpecError(
            "SPEC_VERSION",
            f"corpus version {version} is newer than this loader (major {SUPPORTED_MAJOR})",
            location=Location(file=display_path(root / "VERSION"), line=1, column=1),
            hint=f"upgrade pytest-altpatch, or accept major {major} explicitly",
        )
    return version


def case_files(root: Path) -> list[Path]:
    """Every case file of a corpus, in a stable order."""
    cases = root / CASES_DIR
    return sorted(cases.rglob("*.yaml")) if cases.is_dir() else []


def _duplicate_ids(cases: Iterable[Case]) -> list[SpecError]:
    problems: list[SpecError] = []
    first: dict[str, Case] = {}
    for case in cases:
        if case.id in first:
            problems.append(SpecError(
                "SPEC_DUPLICATE_ID",
                f"case id {case.id!r} is also used by {first[case.id].path}",
                location=case.location_of("id"),
            ))
        else:
            first[case.id] = case
    return problems


def load_corpus(root: Path | None = None, *, accept_major: int | None = None) -> Corpus:
    """Load a corpus (default: the bundled one): version gate, catalog, every case.

    Raises the first :class:`SpecError`; use :func:`lint_paths` to see them all.
    """
    base = Path(root) if root is not None else bundled_corpus()
    version = check_version(base, accept_major)
    catalog, problems = read_catalog(base)
    if problems:
        raise problems[0]
    assert catalog is not None  # read_catalog returns a catalog whenever it has no problem
    cases: list[Case] = []
    for path in case_files(base):
        case, case_problems = read_case(path, catalog, corpus_root=base)
        if case_problems:
            raise case_problems[0]
        assert case is not None  # read_case returns a case whenever it has no problem
        cases.append(case)
    duplicates = _duplicate_ids(cases)
    if duplicates:
        raise duplicates[0]
    return Corpus(
        root=str(base),
        version=version,
        catalog=catalog,
        cases=tuple(sorted(cases, key=lambda case: case.id)),
    )


def find_corpus_root(path: Path) -> Path | None:
    """The corpus root above ``path`` (a directory holding ``catalog/`` and ``VERSION``)."""
    for candidate in [path, *path.parents]:
        if (candidate / CATALOG_DIR).is_dir() and (candidate / "VERSION").is_file():
            return candidate
    return None


#: A further check of each loaded case (``altpatch lint`` passes the build check).
CaseCheck = Callable[[Case, Catalog], list[AltpatchError]]


def _lint_corpus(root: Path, problems: list[AltpatchError],
                 check: CaseCheck | None = None) -> None:
    try:
        check_version(root)
    except SpecError as exc:
        problems.append(exc)
    catalog, catalog_problems = read_catalog(root)
    problems.extend(catalog_problems)
    if catalog is None:
        return
    problems.extend(_lint_cases(case_files(root), catalog, root, check))


def _lint_cases(files: Iterable[Path], catalog: Catalog, corpus_root: Path,
                check: CaseCheck | None) -> list[AltpatchError]:
    """Every problem of these case files: loading, ``check`` on each that loads, and
    ids they share."""
    problems: list[AltpatchError] = []
    cases: list[Case] = []
    for path in files:
        case, case_problems = read_case(path, catalog, corpus_root=corpus_root)
        problems.extend(case_problems)
        if case is not None:
            cases.append(case)
            if check is not None:
                problems.extend(check(case, catalog))
    problems.extend(_duplicate_ids(cases))
    return problems


def lint_paths(paths: Iterable[Path], check: CaseCheck | None = None) -> list[AltpatchError]:
    """Every problem in the given corpus roots, case files or case directories.

    One bad file never stops the others.  A case file outside any corpus is checked
    against the bundled catalog.  ``check`` runs on each case that loads.  Problems come
    back in input order, then file order.
    """
    problems: list[AltpatchError] = []
    catalogs: dict[Path, tuple[Catalog | None, list[SpecError]]] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(SpecError("SPEC_IO", "no such file or directory",
                                      location=Location(file=str(path))))
            continue
        root = find_corpus_root(path.resolve())
        if path.is_dir() and root is not None and root == path.resolve():
            _lint_corpus(path, problems, check)
            continue
        catalog_root = root if root is not None else bundled_corpus()
        if catalog_root not in catalogs:
            catalogs[catalog_root] = read_catalog(catalog_root)
            problems.extend(catalogs[catalog_root][1])
        catalog = catalogs[catalog_root][0]
        if catalog is None:
            continue
        files = sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
        # Catalog files were checked with the catalog.
        problems.extend(_lint_cases(
            [file for file in files
             if root is None or (root / CATALOG_DIR) not in file.resolve().parents],
            catalog, catalog_root, check))
    return problems


__all__ = [
    "SUPPORTED_MAJOR",
    "case_files",
    "check_version",
    "find_corpus_root",
    "lint_paths",
    "load_corpus",
    "read_version",
]
