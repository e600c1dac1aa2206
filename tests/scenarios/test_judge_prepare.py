"""``judge.prepare``: the expected streams assembled ahead (while an item runs) are the
ones the judge uses, so its verdicts are unchanged and it assembles nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch import judge as judge_module
from pytest_altpatch.a64 import asm
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Case
from pytest_altpatch.image.model import Image
from pytest_altpatch.judge import Verdict, judge, prepare
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.outcome import Outcome
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


def _run(path: Path) -> tuple[Case, Outcome, Image]:
    catalog = load_catalog()
    case = load_case(path, catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=ReferencePatcher(case.dialects[0]))
    assert outcome.image is not None
    return case, outcome, outcome.image


def _unprepared(case: Case, outcome: Outcome) -> Verdict:
    """The verdict of a judge that has assembled nothing before."""
    asm._MEMO.clear()
    return judge(case, outcome)


def test_prepared_streams_are_kept_and_read_back_without_assembling(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case, outcome, image = _run(CASES[0])
    unprepared = _unprepared(case, outcome)
    prepare(case, image.symbols)
    assert len([p for p in (cache / "expected-streams").rglob("*") if p.is_file()]) == 1
    monkeypatch.setattr(judge_module, "_prepared", None)  # as in the next process
    asm._MEMO.clear()
    monkeypatch.setattr(asm, "_assemble", no_assembling)
    prepare(case, image.symbols)  # read back: it would raise if it assembled
    assert judge(case, outcome) == unprepared


def test_streams_prepared_for_other_symbols_are_not_used(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case, outcome, image = _run(CASES[0])
    unprepared = _unprepared(case, outcome)
    # Every symbol but the streams' own labels moves: same addresses, other targets.
    labels = {stream.label for stream in case.expect.boot.text} if case.expect.boot else set()
    moved = {name: value if name in labels else value + 0x1000
             for name, value in image.symbols.items()}
    prepare(case, moved)
    assert judge_module._prepared is not None
    assert any(judge_module._prepared[1].get(key) != code for key, code in
               judge_module._assembled_expectations(case, image.symbols).items())
    assembled: list[object] = []
    real = asm._assemble
    monkeypatch.setattr(asm, "_assemble", lambda *a, **k: assembled.append(a) or real(*a, **k))
    asm._MEMO.clear()
    assert judge(case, outcome) == unprepared and assembled


def test_a_kept_entry_of_another_shape_is_assembled_afresh(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case, _, image = _run(CASES[0])
    key = judge_module._kept_key(case, image.symbols)
    assert key is not None
    judge_module._KEPT.keep(key, (("nop", 0, "not bytes"),))
    prepared: list[object] = []
    real = judge_module._assembled_expectations
    monkeypatch.setattr(judge_module, "_assembled_expectations",
                        lambda *a: prepared.append(a) or real(*a))
    prepare(case, image.symbols)
    assert prepared and judge_module._prepared is not None
    assert all(isinstance(code, bytes) for code in judge_module._prepared[1].values())
