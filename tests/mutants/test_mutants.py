"""The bundled corpus, run with the plugin's default options, fails every mutant patcher
(one historical or architectural bug each)."""

from __future__ import annotations

import pytest

from conformance.mutants import MUTANTS, RENDEZVOUS_MUTANTS
from pytest_altpatch.cases import load_corpus
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.pipeline import not_applicable, parse_schedules
from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES
from pytest_altpatch.scenarios.runner import run_case

CORPUS = load_corpus()


def first_failing_item(name: str, schedules: str = DEFAULT_SCHEDULES) -> str | None:
    """The first ``case::mode[schedule]`` the mutant fails, in corpus order, or None."""
    for choice in parse_schedules(schedules):
        for case in CORPUS.cases:
            for mode in ("boot", "late"):
                patcher = MUTANTS[name].make()
                if not has_mode(case, mode) or not_applicable(case, patcher, mode):
                    continue
                outcome = run_case(case, CORPUS.catalog, mode=mode, patcher=patcher,
                                   schedule=choice.name, seed=choice.seed)
                if not judge(case, outcome).passed:
                    return f"{case.id}::{mode}[{choice.label}]"
    return None


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_default_options_fail_every_mutant(name: str) -> None:
    assert first_failing_item(name), f"no bundled case catches {name}: {MUTANTS[name].bug}"


def test_every_mutant_names_its_bug_and_the_rendezvous_family_is_listed() -> None:
    assert len(MUTANTS) >= 40
    assert set(MUTANTS) >= RENDEZVOUS_MUTANTS
    assert all(m.bug for m in MUTANTS.values())


def test_mutants_are_reachable_by_patcher_name() -> None:
    patcher = resolve_patcher("conformance.mutants:no_branch_retarget")
    assert patcher.name == "mutant:NoBranchRetarget:linux-6.1"
