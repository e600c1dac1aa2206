"""The document cache: a kept document is the one a fresh parse gives, and only a file
that parsed and validated with no problem is ever kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_altpatch.cases import document_cache, yamlload
from pytest_altpatch.cases.case import read_case
from pytest_altpatch.cases.catalog import read_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.cases.schema import schema_path
from pytest_altpatch.cases.yamlload import LocatedDocument, load_yaml_file
from pytest_altpatch.kept import installed_stamps
from pytest_altpatch.resources import bundled_corpus

from .conftest import VALID_CASE

CASE_SCHEMA = schema_path(bundled_corpus(), "case")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache root for this test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ALTPATCH_CACHE", str(root))
    monkeypatch.delenv(document_cache.NO_CACHE_ENV, raising=False)
    return root


def entries(root: Path) -> list[Path]:
    """The kept entries under a cache root (not the temporary files of a write)."""
    folder = root / "documents"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def same(one: LocatedDocument, other: LocatedDocument) -> bool:
    """Equal in every field a loader reads."""
    return (one.file, one.value, dict(one.locations), dict(one.key_locations),
            dict(one.text_starts)) == (other.file, other.value, dict(other.locations),
                                       dict(other.key_locations), dict(other.text_starts))


def test_a_kept_document_is_the_fresh_parse(
        cache: Path, write_case: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(VALID_CASE)
    fresh = load_yaml_file(path, "cases/x.yaml")
    first, problems = document_cache.load_valid_document(path, "cases/x.yaml", CASE_SCHEMA)
    assert problems == [] and len(entries(cache)) == 1 and same(first, fresh)

    def no_parse(*_: object) -> None:
        raise AssertionError("parsed although the document was kept")

    monkeypatch.setattr(yamlload, "load_yaml_text", no_parse)
    kept, problems = document_cache.load_valid_document(path, "cases/x.yaml", CASE_SCHEMA)
    assert problems == [] and kept is not first and same(kept, fresh)
    assert kept.location("expect.boot.text.site") == fresh.location("expect.boot.text.site")


def test_each_bundled_case_resolves_the_same_from_the_cache(cache: Path,
                                                            catalog: Catalog) -> None:
    root = bundled_corpus()
    paths = sorted((root / "cases").rglob("*.yaml"))
    assert len(paths) >= 150
    cold = [read_case(path, catalog, corpus_root=root) for path in paths]
    assert len(entries(cache)) == len(paths)
    warm = [read_case(path, catalog, corpus_root=root) for path in paths]
    assert [repr(case) for case, _ in warm] == [repr(case) for case, _ in cold]
    assert all(case is not None and problems == [] for case, problems in warm)


def test_an_edited_file_is_parsed_again(cache: Path,
                                        write_case: Callable[[str], Path]) -> None:
    path = write_case(VALID_CASE)
    document_cache.load_valid_document(path, "x.yaml", CASE_SCHEMA)
    path.write_text(VALID_CASE.replace('"minimal case"', '"edited case"'), encoding="utf-8")
    edited, _ = document_cache.load_valid_document(path, "x.yaml", CASE_SCHEMA)
    assert isinstance(edited.value, dict) and edited.value["title"] == "edited case"
    assert len(entries(cache)) == 2


def test_the_reported_name_is_part_of_the_key(cache: Path,
                                              write_case: Callable[[str], Path]) -> None:
    path = write_case(VALID_CASE)
    document_cache.load_valid_document(path, "a.yaml", CASE_SCHEMA)
    other, _ = document_cache.load_valid_document(path, "b.yaml", CASE_SCHEMA)
    assert other.file == "b.yaml" and other.location("id").file == "b.yaml"


def test_a_document_with_problems_is_never_kept(
        cache: Path, write_case: Callable[[str], Path], catalog: Catalog) -> None:
    path = write_case(VALID_CASE.replace("title:", "titel:"))
    for _ in range(2):  # found again, at the same line, every time
        case, problems = read_case(path, catalog)
        assert case is None and problems
        assert {(p.code, p.location.line) for p in problems} >= {("SPEC_SCHEMA", 3)}
    assert entries(cache) == []
    broken = write_case("format: 1\nid: [unclosed\n")
    for _ in range(2):
        case, problems = read_case(broken, catalog)
        assert case is None and problems[0].code == "SPEC_SYNTAX"
    assert entries(cache) == []


def test_a_too_new_format_is_refused_from_the_cache_too(
        cache: Path, write_case: Callable[[str], Path], catalog: Catalog,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(VALID_CASE)
    assert read_case(path, catalog)[0] is not None
    from pytest_altpatch.cases import case as case_module  # noqa: PLC0415

    monkeypatch.setattr(case_module, "CASE_FORMAT", 0)  # the loader is older than the file
    # (code that changed so is a new key for what it resolved: only the document is kept)
    shutil.rmtree(cache / "resolved")
    case, problems = read_case(path, catalog)
    assert case is None and [p.code for p in problems] == ["SPEC_VERSION"]


def test_a_damaged_entry_counts_as_absent(cache: Path,
                                          write_case: Callable[[str], Path]) -> None:
    path = write_case(VALID_CASE)
    fresh, _ = document_cache.load_valid_document(path, "x.yaml", CASE_SCHEMA)
    (entry,) = entries(cache)
    for damage in (b"", b"not a pickle", entry.read_bytes()[:40]):
        entry.write_bytes(damage)
        again, problems = document_cache.load_valid_document(path, "x.yaml", CASE_SCHEMA)
        assert problems == [] and same(again, fresh)
        assert entry.read_bytes() not in (b"", b"not a pickle")  # written afresh


def test_an_entry_of_another_key_is_not_taken(cache: Path,
                                              write_case: Callable[[str], Path]) -> None:
    first = write_case(VALID_CASE)
    second = write_case(VALID_CASE.replace("test/minimal", "test/other"))
    document_cache.load_valid_document(first, "x.yaml", CASE_SCHEMA)
    (first_entry,) = entries(cache)
    document_cache.load_valid_document(second, "x.yaml", CASE_SCHEMA)
    (second_entry,) = set(entries(cache)) - {first_entry}
    first_entry.write_bytes(second_entry.read_bytes())  # holds the other file's document
    document, _ = document_cache.load_valid_document(first, "x.yaml", CASE_SCHEMA)
    assert isinstance(document.value, dict) and document.value["id"] == "test/minimal"


def test_a_changed_schema_directory_is_a_new_key(cache: Path, tmp_path: Path,
                                                 write_case: Callable[[str], Path]) -> None:
    schemas = tmp_path / "schema"
    shutil.copytree(CASE_SCHEMA.parent, schemas)
    path = write_case(VALID_CASE)
    document_cache.load_valid_document(path, "x.yaml", schemas / CASE_SCHEMA.name)
    assert len(entries(cache)) == 1
    catalog_schema = schemas / "catalog.schema.json"
    catalog_schema.write_text(catalog_schema.read_text() + "\n")
    document_cache.load_valid_document(path, "x.yaml", schemas / CASE_SCHEMA.name)
    assert len(entries(cache)) == 2


def test_switched_off_or_unwritable_it_still_loads(
        cache: Path, write_case: Callable[[str], Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(VALID_CASE)
    monkeypatch.setenv(document_cache.NO_CACHE_ENV, "1")
    document, problems = document_cache.load_valid_document(path, "x.yaml", CASE_SCHEMA)
    assert problems == [] and isinstance(document.value, dict)
    assert not cache.exists()
    monkeypatch.delenv(document_cache.NO_CACHE_ENV)
    cache.write_text("a file where the cache directory would be")
    document, problems = document_cache.load_valid_document(path, "x.yaml", CASE_SCHEMA)
    assert problems == [] and isinstance(document.value, dict)


def test_the_catalog_is_kept_and_resolves_the_same(cache: Path) -> None:
    cold, problems = read_catalog()
    assert cold is not None and problems == []
    count = len(entries(cache))
    assert count == len(list((bundled_corpus() / "catalog").glob("*.yaml")))
    warm, problems = read_catalog()
    assert problems == [] and repr(warm) == repr(cold) and len(entries(cache)) == count


def test_a_kept_document_is_read_without_loading_pyyaml(tmp_path: Path) -> None:
    """A case whose documents are kept loads in a fresh interpreter without PyYAML (or
    the parser and schema check that use it); the first run, which parses, loads it."""
    code = (
        "import sys\n"
        "from pytest_altpatch.cases import load_case, load_catalog\n"
        "from pytest_altpatch.resources import bundled_corpus\n"
        "catalog = load_catalog()\n"
        "case = load_case(bundled_corpus() / 'cases/branch/b-al-external.yaml', catalog)\n"
        "print(case.id, sorted(m for m in ('yaml', 'pytest_altpatch.cases.yamlload')"
        " if m in sys.modules) or 'none')\n")
    env = dict(os.environ, ALTPATCH_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    env.pop(document_cache.NO_CACHE_ENV, None)
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, env=env, check=False) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    parsed, kept = (run.stdout.split(maxsplit=1) for run in runs)
    assert parsed[0] == kept[0] == "branch/b-al-external"
    assert "'yaml'" in parsed[1] and kept[1].strip() == "none"


def test_the_installed_parser_is_part_of_the_key(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The key names PyYAML's installed files by name, size and modification time (its
    libyaml extension among them), found without importing it: another PyYAML, or one
    with or without libyaml, is another key."""
    home = tmp_path / "site"
    (home / "fakeyaml").mkdir(parents=True)
    (home / "fakeyaml" / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(home))
    first = installed_stamps("fakeyaml")
    assert b"__init__.py" in first
    (home / "fakeyaml" / "_yaml.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    with_libyaml = installed_stamps("fakeyaml")
    assert with_libyaml != first and b"_yaml.cpython" in with_libyaml
    assert installed_stamps("no_such_package_here") == b"no_such_package_here absent\n"
    fingerprint = document_cache._code_fingerprint.__wrapped__
    here = fingerprint()
    monkeypatch.setattr(document_cache, "installed_stamps", lambda name: first)
    assert fingerprint() != here
