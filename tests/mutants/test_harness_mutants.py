"""The bundled corpus catches the detection, hot-plug and harness-observation mutants."""

from __future__ import annotations

import pytest

from conformance.mutants_harness import HARNESS_MUTANTS
from pytest_altpatch.cases import load_corpus
from pytest_altpatch.cases.model import Case
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.judge import Verdict, judge
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.pipeline import not_applicable, parse_schedules
from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES
from pytest_altpatch.scenarios.runner import run_case

CORPUS = load_corpus()
SCHEDULES = parse_schedules(DEFAULT_SCHEDULES)


def _case(case_id: str) -> Case:
    return next(case for case in CORPUS.cases if case.id == case_id)


def _verdicts(case: Case, patcher: Patcher) -> list[Verdict]:
    verdicts = []
    for mode in ("boot", "late"):
        if not has_mode(case, mode) or not_applicable(case, patcher, mode):
            continue
        for choice in SCHEDULES:
            outcome = run_case(case, CORPUS.catalog, mode=mode, patcher=patcher,
                               schedule=choice.name, seed=choice.seed)
            verdicts.append(judge(case, outcome))
    return verdicts


def _first_failing_case(name: str) -> str | None:
    for case in CORPUS.cases:
        if any(not v.passed for v in _verdicts(case, HARNESS_MUTANTS[name].make())):
            return case.id
    return None


@pytest.mark.parametrize("name", sorted(HARNESS_MUTANTS))
def test_corpus_catches_harness_mutant(name: str) -> None:
    assert _first_failing_case(name), f"no bundled case catches {name}: " \
                                      f"{HARNESS_MUTANTS[name].bug}"


def test_xen_boot_cpu_only_detection_fails_where_the_reference_passes() -> None:
    case = _case("detection/xen-erratum-on-secondary-only")
    reference = _verdicts(case, resolve_patcher("reference:xen-4.17"))
    mutant = _verdicts(case, HARNESS_MUTANTS["xen-boot-cpu-only-detection"].make())
    assert reference and all(v.passed for v in reference)
    # Only the patcher's own decision is wrong: the harness's oracle still patched right.
    assert mutant and all(v.codes == ("patcher-caps-mismatch",) for v in mutant)
    assert "ARM64_WORKAROUND_CLEAN_CACHE" in str(mutant[0].discrepancies[0].detail["expected"])


def test_unchecked_late_cpu_errata_fail_on_the_patchers_own_verdict() -> None:
    case = _case("hotplug/linux-late-cpu-erratum")
    mutant = _verdicts(case, HARNESS_MUTANTS["late-cpu-errata-unchecked"].make())
    assert mutant and all(v.codes == ("patcher-hotplug-mismatch",) for v in mutant)


def test_harness_mutants_are_reachable_by_patcher_name() -> None:
    patcher = resolve_patcher("conformance.mutants_harness:xen_boot_cpu_only_detection")
    assert patcher.name == "mutant:BootCpuOnlyDetection:xen-4.17"
