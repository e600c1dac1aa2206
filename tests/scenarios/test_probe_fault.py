"""Probes expected to fault (``fault: CODE``): loaded, run and judged."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.errors import SpecError
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.runner import run_case

CASE = bundled_corpus() / "cases" / "probes" / "text-store-faults.yaml"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "variant.yaml"
    path.write_text(CASE.read_text().replace(old, new, 1))
    return path


def test_a_probe_storing_to_text_passes_when_it_must_fault(catalog: Catalog) -> None:
    case = load_case(CASE, catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=resolve_patcher("reference"))
    boot = outcome.phase("boot")
    assert boot is not None
    faulted = [p for p in boot.probes if p.call == "poke_text"]
    assert [f.code for p in faulted for f in p.findings] == ["ro-write", "ro-write"]
    assert judge(case, outcome).passed


def test_a_probe_expecting_another_fault_fails_at_its_line(tmp_path: Path,
                                                           catalog: Catalog) -> None:
    case = load_case(_variant(tmp_path, "fault: ro-write", "fault: cmodx"), catalog)
    verdict = judge(case, run_case(case, catalog, mode="boot",
                                   patcher=resolve_patcher("reference")))
    # Once per CPU; and the ro-write nobody expected is an extra finding.
    assert sorted(verdict.codes) == ["probe-mismatch", "probe-mismatch", "unexpected-finding"]
    first = verdict.discrepancies[0]
    assert "expected the fault cmodx, but it raised ro-write instead" in first.message
    assert first.location.line == 27


def test_a_probe_that_returns_instead_of_faulting_fails(tmp_path: Path,
                                                        catalog: Catalog) -> None:
    case = load_case(_variant(tmp_path, "{call: poke_text, cpus: all, fault: ro-write}",
                              "{call: answer, cpus: all, fault: ro-write}"), catalog)
    verdict = judge(case, run_case(case, catalog, mode="boot",
                                   patcher=resolve_patcher("reference")))
    assert "but it returned without one" in verdict.discrepancies[0].message


def test_an_unknown_fault_code_is_a_located_load_error_with_a_suggestion(
        tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(SpecError) as caught:
        load_case(_variant(tmp_path, "fault: ro-write", "fault: ro-writes"), catalog)
    assert caught.value.code == "SPEC_UNKNOWN_CODE"
    assert caught.value.location.line == 27
    assert caught.value.hint == "did you mean 'ro-write'?"


def test_a_probe_needs_a_result_or_a_fault(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(SpecError) as caught:
        load_case(_variant(tmp_path, ", fault: ro-write}", "}"), catalog)
    assert caught.value.code == "SPEC_SCHEMA"
