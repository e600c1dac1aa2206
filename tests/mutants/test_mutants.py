"""The bundled corpus catches every mutant patcher (one historical bug each)."""

from __future__ import annotations

import pytest

from conformance.mutants import MUTANTS
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.scenarios.runner import has_mode, not_applicable, run_case
from pytest_altpatch.spec import load_corpus

CORPUS = load_corpus()


def _failing_cases(name: str) -> list[str]:
    failing = []
    for case in CORPUS.cases:
        for mode in ("boot", "late"):
            patcher = MUTANTS[name].make()
            if not has_mode(case, mode) or not_applicable(case, patcher, mode):
                continue
            outcome = run_case(case, CORPUS.catalog, mode=mode, patcher=patcher)
            if not judge(case, outcome).passed:
                failing.append(f"{case.id}::{mode}")
    return failing


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_corpus_catches_mutant(name: str) -> None:
    assert _failing_cases(name), f"no bundled case catches {name}: {MUTANTS[name].bug}"


def test_mutants_are_reachable_by_patcher_name() -> None:
    patcher = resolve_patcher("conformance.mutants:no_branch_retarget")
    assert patcher.name == "mutant:NoBranchRetarget:linux-6.1"
