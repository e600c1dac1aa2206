"""Items run in supervised workers: one hostile patcher costs one item, never the session."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, CASE_NEEDS_ADRP, CASE_WRONG_STREAM, CaseWriter
from hostile_patchers import EXPECTED_CODES, HOSTILE_PATCHERS, NEED_THE_KILL

from pytest_altpatch import supervisor
from pytest_altpatch.cases import load_corpus
from pytest_altpatch.machine import Schedule
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.pipeline import parse_schedules


@pytest.fixture
def hostile(pytester: pytest.Pytester, corpus: CaseWriter,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A two-case corpus (both pass with the reference patcher) and the hostile module."""
    # Under CI (CI or BUILD_NUMBER set) pytest repeats each failure's whole message in the
    # short summary; the tests count report lines, so the inner run must not inherit it.
    for variable in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(variable, raising=False)
    pytester.makepyfile(hostile=HOSTILE_PATCHERS)
    pytester.syspathinsert()
    return corpus({"demo/applied.yaml": CASE_APPLIED, "demo/needs-adrp.yaml": CASE_NEEDS_ADRP})


@pytest.mark.parametrize("attack", sorted(EXPECTED_CODES))
def test_each_hostile_patcher_fails_every_item_with_its_code_and_the_session_goes_on(
        pytester: pytest.Pytester, hostile: Path, attack: str) -> None:
    # A short timeout where only the kill ends the item; a generous one elsewhere, so a
    # loaded machine cannot turn a crash into a timeout.
    timeout = "1" if attack in NEED_THE_KILL else "60"
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-timeout", timeout,
                                f"--altpatch-patcher=hostile:{attack}")
    # Both items are reported (the first did not end the session), both fail, exit 1.
    result.assert_outcomes(failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = [line for line in result.outlines if EXPECTED_CODES[attack] in line]
    assert len([line for line in lines if "actual" in line]) == 2, result.outlines


def test_an_attack_on_the_first_item_leaves_the_others_passing(
        pytester: pytest.Pytester, hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALTPATCH_HOSTILE_ONCE", str(pytester.path / "attacked"))
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-patcher=hostile:OsExit")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*PATCHER_EXITED*the worker exited with status 0*"])


def test_a_relax_loop_ends_on_the_machines_budget_with_a_hang(
        pytester: pytest.Pytester, hostile: Path) -> None:
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-timeout", "1",
                                "--altpatch-patcher=hostile:RelaxLoop")
    result.assert_outcomes(failed=2)
    assert "PATCHER_TIMEOUT" not in result.stdout.str()  # stopped before the kill


def test_a_patcher_replacing_the_judge_cannot_pass_a_wrong_case(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    pytester.makepyfile(hostile=HOSTILE_PATCHERS)
    pytester.syspathinsert()
    corpus({"demo/wrong-stream.yaml": CASE_WRONG_STREAM})
    result = pytester.runpytest("--altpatch-corpus", "corpus",
                                "--altpatch-patcher=hostile:JudgeTamper")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*mov x0, #3*"])


def test_inprocess_mode_runs_the_patcher_in_the_session(
        pytester: pytest.Pytester, hostile: Path) -> None:
    # What --altpatch-inprocess gives up: a patcher raising SystemExit reaches pytest.
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-inprocess",
                                "--altpatch-patcher=hostile:Raise")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*PATCHER_RAISED*hostile patcher gives up*"])


def test_the_patcher_is_created_in_a_worker_not_the_session(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    pytester.makepyfile(dying="import os\nos._exit(0)\n")
    pytester.syspathinsert()
    corpus({"demo/applied.yaml": CASE_APPLIED})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-patcher=dying:P")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-patcher:*PATCHER_EXITED*"])


def test_outcomes_and_requests_cross_the_boundary_as_plain_data() -> None:
    corpus = load_corpus()
    case = next(c for c in corpus.cases if c.id == "branch/b-external")
    request = supervisor.item_request(case, corpus.catalog, mode="boot", patcher="reference",
                                      dialect=None, schedule="rr:100", seed=0, timeout=None)
    outcome = supervisor.run_item(request, patcher=ReferencePatcher("linux-6.1"))
    assert outcome.trace  # the trace crosses too
    for value in (request, outcome):
        assert supervisor.loads(supervisor.dumps(value)) == value
    assert supervisor.run_item(request) == outcome  # the worker's outcome is the same


def test_a_schedule_object_passes_through_to_the_request_unparsed() -> None:
    corpus = load_corpus()
    case = next(c for c in corpus.cases if c.id == "branch/b-external")
    schedule = Schedule("random", 256, 5)
    (choice,) = parse_schedules(schedule)
    assert choice.schedule is schedule
    assert (choice.name, choice.label, choice.seed) == ("random:5", "random:5", 5)
    request = supervisor.item_request(case, corpus.catalog, mode="boot", patcher="reference",
                                      dialect=None, schedule=choice.schedule, seed=choice.seed,
                                      timeout=None)
    assert request.schedule is schedule
    # A label is parsed once, into the same value the machine would parse it to.
    (parsed,) = parse_schedules("random:5")
    assert parsed.schedule == Schedule.parse("random:5")


def test_a_reply_naming_other_globals_is_refused() -> None:
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        supervisor.loads(b"cos\nsystem\n(S'true'\ntR.")



def test_a_reply_calling_one_of_our_functions_is_refused() -> None:
    # resolve_patcher would import any module: a reply may only build data classes.
    forged = (b"cpytest_altpatch.patchers.registry\nresolve_patcher\n"
              b"(S'os:system'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match="resolve_patcher"):
        supervisor.loads(forged)
