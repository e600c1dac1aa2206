"""What a face loads before it runs anything: corpora, case files and the patchers.

A corpus's version and catalog are read once per process (keyed by the files they come
from); a case file outside any corpus is resolved with the bundled catalog; the patchers
under test are resolved in a supervised worker, or in this process when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_altpatch.cases.case import read_case
from pytest_altpatch.cases.catalog import read_catalog
from pytest_altpatch.cases.corpus import check_version, find_corpus_root
from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.dialects import preferred_dialect
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.patchers.facts import PatcherFacts
from pytest_altpatch.patchers.registry import is_reference, reference_facts, resolve_patchers
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.supervisor import patchers_facts, prestart_workers

# --------------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class CorpusState:
    """One corpus root: its version and catalog, or why it cannot be used."""

    root: Path
    version: str | None
    catalog: Catalog | None
    error: BaseException | None


#: Loaded catalogs by (root, accepted major, fingerprint of the files they come from).
#: A process runs one session, except under pytester or an IDE that runs pytest again
#: in-process; catalogs are frozen values, so sharing them between sessions is safe.
_CORPUS_CACHE: dict[tuple[Path, int | None, tuple[tuple[str, int, int], ...]], CorpusState] = {}


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of every file a corpus's catalog depends on."""
    files = [root / "VERSION"]
    for part in ("catalog", "schema"):
        if (root / part).is_dir():
            files += sorted(path for path in (root / part).rglob("*") if path.is_file())
    found = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def corpus_state(root: Path, accept_major: int | None) -> CorpusState:
    """The version and catalog of ``root`` (never raising), loaded once per process."""
    key = (root, accept_major, _fingerprint(root))
    if key not in _CORPUS_CACHE:
        _CORPUS_CACHE[key] = _read_corpus_state(root, accept_major)
    return _CORPUS_CACHE[key]


def _read_corpus_state(root: Path, accept_major: int | None) -> CorpusState:
    try:
        version = check_version(root, accept_major)
        catalog, problems = read_catalog(root)
    except AltpatchError as exc:
        return CorpusState(root, None, None, exc)
    if problems or catalog is None:
        return CorpusState(root, version, None, problems[0] if problems else None)
    return CorpusState(root, version, catalog, None)


# --------------------------------------------------------------------------- case files


@dataclass(frozen=True)
class LoadedCase:
    """A case read from its file, with the catalog that resolved it."""

    case: Case
    catalog: Catalog
    root: Path


def read_case_file(path: Path, corpus: Path | None = None
                   ) -> tuple[LoadedCase | None, tuple[AltpatchError, ...]]:
    """Read one case file with the catalog of ``corpus``, else of the corpus holding the
    file, else the bundled one; None and every problem when it cannot be used."""
    root = corpus or find_corpus_root(path.resolve().parent) or bundled_corpus()
    catalog, problems = read_catalog(root)
    if catalog is None or problems:
        return None, tuple(problems)
    case, problems = read_case(path, catalog, corpus_root=root)
    if case is None:
        return None, tuple(problems)
    return LoadedCase(case, catalog, root), ()


# --------------------------------------------------------------------------- patchers


@dataclass(frozen=True)
class PatcherUnderTest:
    """One patcher to judge: as the user named it, what it declares, and (only when run
    in this process) the patcher object itself."""

    spec: str  # reference, reference:xen-4.17, native:PATH, package.module:attr
    facts: PatcherFacts
    instance: Patcher | None = None

    @property
    def dialect(self) -> str:
        """The dialect the patcher implements."""
        return self.facts.dialect


def patchers_under_test(spec: str, dialects: tuple[str, ...] | None, *, inprocess: bool,
                        timeout: float | None,
                        prestart: bool = True) -> tuple[PatcherUnderTest, ...]:
    """Resolve ``spec`` (one patcher per dialect asked); raises a coded error if it cannot.

    Even creating a patcher runs its code, so that happens in a supervised worker too,
    unless ``inprocess``.  The workers start now unless ``prestart`` is false (a session
    that runs no item: one starts only if a patcher's facts need it).
    """
    if inprocess:
        resolved = resolve_patchers(spec, dialects)
        facts = PatcherFacts.of_all(resolved, dialects)
        return tuple(PatcherUnderTest(spec, fact, patcher)
                     for fact, patcher in zip(facts, resolved, strict=True))
    if prestart:
        prestart_workers()  # they start (and warm up) while this process carries on
    if is_reference(spec):
        # The bundled reference is this package's own code: its facts follow from its
        # dialects (its module is not even imported here), and only its items run in
        # workers.
        return tuple(PatcherUnderTest(spec, fact) for fact in reference_facts(spec, dialects))
    return tuple(PatcherUnderTest(spec, fact)
                 for fact in patchers_facts(spec, dialects, timeout=timeout))


def patchers_for(case: Case, patchers: Sequence[PatcherUnderTest]
                 ) -> tuple[PatcherUnderTest, ...]:
    """The patchers that run ``case``: those whose dialect it lists, the case's preferred
    dialect first, then in the case's order; the first patcher if it lists none of them."""
    first = preferred_dialect(case.dialects)
    listed = sorted((p for p in patchers if p.dialect in case.dialects),
                    key=lambda p: (p.dialect != first, case.dialects.index(p.dialect)))
    return tuple(listed) or tuple(patchers[:1])


__all__ = ["CorpusState", "LoadedCase", "PatcherUnderTest", "corpus_state", "patchers_for",
           "patchers_under_test", "read_case_file"]
