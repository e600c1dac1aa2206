"""``judge.prepare``: the expected streams assembled ahead (while an item runs) are the
ones the judge uses, so its verdicts are unchanged and it assembles nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.a64 import asm
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.judge import judge, prepare
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.runner import run_case

CASES = sorted((bundled_corpus() / "cases" / "branch").glob("*.yaml")) + sorted(
    (bundled_corpus() / "cases" / "adrp").glob("*.yaml"))


def no_assembling(*_: object) -> None:
    raise AssertionError("the judge assembled a stream prepare should have made")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_a_prepared_judge_gives_the_same_verdict_and_assembles_nothing(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog()
    case = load_case(path, catalog)
    patcher = ReferencePatcher(case.dialects[0])
    outcome = run_case(case, catalog, mode="boot", patcher=patcher)
    asm._MEMO.clear()
    unprepared = judge(case, outcome)
    asm._MEMO.clear()
    assert outcome.image is not None
    prepare(case, outcome.image.symbols)
    monkeypatch.setattr(asm, "_assemble", no_assembling)
    assert judge(case, outcome) == unprepared


def test_prepare_leaves_what_does_not_assemble_to_the_judge() -> None:
    catalog = load_catalog()
    case = load_case(CASES[0], catalog)
    prepare(case, {})  # no label is defined: nothing to assemble, nothing raised
    prepare(case, {"not a symbol name": 1})  # an unusable table: the judge reports it
