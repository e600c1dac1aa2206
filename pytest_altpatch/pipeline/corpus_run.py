"""Run the bundled corpus against one patcher in this process (tests and benchmarks).

The plugin is the way users run the corpus; this is the same pipeline without pytest,
so a test can ask which cases a native build fails and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_altpatch.cases import load_corpus
from pytest_altpatch.cases.modes import MODES, has_mode
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.pipeline.applicability import not_applicable
from pytest_altpatch.pipeline.checking import Checked, judged, run_in_process
from pytest_altpatch.pipeline.schedules import parse_schedules
from pytest_altpatch.scenarios.outcome import Outcome


@dataclass(frozen=True)
class CaseResult:
    """One case, mode and schedule, judged."""

    item: str  # "case-id::mode[schedule]"
    passed: bool
    outcome: Outcome
    report: str  # the discrepancies, one per line (empty when passed)


def _report(checked: Checked) -> str:
    """Discrepancies, the error and every finding, one per line (empty when passed)."""
    if checked.passed:
        return ""
    outcome = checked.outcome
    lines = [f"{d.code}: {d.message}" for d in checked.verdict.discrepancies]
    if outcome.error is not None:
        lines.append(f"error {outcome.error.code}: {outcome.error.message}")
    for phase in outcome.phases:
        lines += [f"finding {f.render()}" for f in phase.findings]
    return "\n".join(lines)


def run_corpus(patcher: Patcher, schedules: str = "rr:100",
               only: Sequence[str] | None = None) -> tuple[list[CaseResult], int]:
    """Every applicable (case, mode, schedule) judged; and how many were not applicable."""
    corpus = load_corpus()
    results: list[CaseResult] = []
    skipped = 0
    for case in corpus.cases:
        if only is not None and case.id not in only:
            continue
        for mode in MODES:
            if not has_mode(case, mode):
                continue
            if not_applicable(case, patcher, mode):
                skipped += 1
                continue
            for choice in parse_schedules(schedules):
                outcome = run_in_process(case, corpus.catalog, patcher, mode, choice)
                checked = judged(case, outcome, mode=mode, patcher=str(patcher.name),
                                 schedule=choice.label, seed=choice.seed)
                results.append(CaseResult(f"{case.id}::{mode}[{choice.label}]",
                                          checked.passed, checked.outcome, _report(checked)))
    return results, skipped


__all__ = ["CaseResult", "run_corpus"]
