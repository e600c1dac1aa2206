"""Kept resolved cases and catalogs: a kept one is what resolving afresh gives, keyed by
every input it depends on (the file, the name it is reported under, the catalog), and
only what resolved with no problem is ever kept."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from pytest_altpatch.cases import case as case_module
from pytest_altpatch.cases import catalog as catalog_module
from pytest_altpatch.cases import kept_resolved
from pytest_altpatch.cases.case import read_case
from pytest_altpatch.cases.catalog import read_catalog
from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.kept import NO_CACHE_ENV
from pytest_altpatch.resources import bundled_corpus

from .conftest import VALID_CASE


def resolved(root: Path) -> list[Path]:
    """The kept resolved entries under a cache root."""
    folder = root / "resolved"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def fresh(path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> Case | None:
    """``path`` resolved with every kept kind off."""
    with monkeypatch.context() as patch:
        patch.setenv(NO_CACHE_ENV, "1")
        return read_case(path, catalog)[0]


def no_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any resolving or document reading fail the test."""
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("resolved although the value was kept")

    monkeypatch.setattr(case_module, "_Resolver", refuse)
    monkeypatch.setattr(case_module, "load_valid_document", refuse)
    monkeypatch.setattr(catalog_module, "load_valid_document", refuse)


def test_a_kept_case_is_the_fresh_resolve_and_resolves_nothing(
        cache: Path, write_case: Callable[[str], Path], catalog: Catalog,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(VALID_CASE)
    first, problems = read_case(path, catalog)
    assert first is not None and problems == [] and len(resolved(cache)) == 1
    no_resolving(monkeypatch)
    kept, problems = read_case(path, catalog)
    assert problems == [] and kept is not first and kept == first
    assert kept.location_of("expect.boot.text.site") == first.location_of(
        "expect.boot.text.site")
    assert kept.location_of("expect.boot.text.site").line == 20  # (its line in VALID_CASE)


def test_the_catalog_is_part_of_a_cases_key(
        cache: Path, write_case: Callable[[str], Path], catalog: Catalog,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(VALID_CASE)
    read_case(path, catalog)
    a57 = catalog.cpus["cortex-a57"]
    other = dataclasses.replace(catalog, cpus=MappingProxyType(
        {**catalog.cpus, "cortex-a57": dataclasses.replace(a57, ctr=a57.ctr ^ 0x1)}))
    case, problems = read_case(path, other)
    assert case is not None and problems == [] and case == fresh(path, other, monkeypatch)
    assert case.platform[0].ctr == a57.ctr ^ 0x1 and len(resolved(cache)) == 2


def test_an_edited_case_and_another_reported_name_are_resolved_again(
        cache: Path, write_case: Callable[[str], Path], catalog: Catalog,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(VALID_CASE)
    read_case(path, catalog)
    path.write_text(VALID_CASE.replace('"minimal case"', '"edited case"'), encoding="utf-8")
    edited, _ = read_case(path, catalog)
    assert edited is not None and edited.title == "edited case"
    monkeypatch.chdir(tmp_path)  # the same file, reported under another name
    moved, _ = read_case(path, catalog)
    assert moved is not None and moved.location.file == path.name != edited.location.file
    assert len(resolved(cache)) == 3


def test_a_case_with_problems_is_never_kept(
        cache: Path, write_case: Callable[[str], Path], catalog: Catalog) -> None:
    path = write_case(VALID_CASE.replace("cortex-a53/r0p4", "cortex-a99/r0p4"))
    for _ in range(2):  # found again, at the same line, every time
        case, problems = read_case(path, catalog)
        assert case is None
        assert {(p.code, p.location.line) for p in problems} == {("SPEC_UNKNOWN_CPU", 6)}
    assert resolved(cache) == [] and (cache / "documents").is_dir()  # (its document is)


def test_the_catalog_is_kept_and_an_edited_file_is_a_new_key(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "corpus"
    shutil.copytree(bundled_corpus() / "catalog", root / "catalog")
    shutil.copytree(bundled_corpus() / "schema", root / "schema")
    cold, problems = read_catalog(root)
    assert cold is not None and problems == [] and len(resolved(cache)) == 1
    with monkeypatch.context() as patch:
        no_resolving(patch)
        warm, problems = read_catalog(root)
    assert problems == [] and warm is not cold and warm == cold
    cpus = root / "catalog" / "cpus.yaml"
    cpus.write_text(cpus.read_text(encoding="utf-8").replace("Cortex-A57", "Cortex-A57 (edited)"),
                    encoding="utf-8")
    edited, problems = read_catalog(root)
    assert edited is not None and problems == [] and edited != cold
    assert edited.cpus["cortex-a57"].display_name == "Cortex-A57 (edited)"
    assert len(resolved(cache)) == 2


def test_an_entry_of_another_kind_or_switched_off_is_not_taken(
        cache: Path, write_case: Callable[[str], Path], catalog: Catalog,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(VALID_CASE)
    case, _ = read_case(path, catalog)
    assert case is not None
    key = kept_resolved.case_key(
        case_module.document_key(path, case.location.file or "", case_module._case_schema(None))[1],
        catalog)
    assert kept_resolved.load(key, Case) == case
    kept_resolved.keep(key, catalog)  # a catalog where a case belongs
    assert kept_resolved.load(key, Case) is None and kept_resolved.load(key, Catalog) == catalog
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert kept_resolved.case_key("0" * 64, catalog) is None
    assert read_case(path, catalog)[0] == case
