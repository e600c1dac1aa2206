"""Failure reports, the run header and JUnit properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from altpatch_cases import (
    CASE_APPLIED,
    CASE_EXPECTS_ERROR,
    CASE_NEEDS_LIVEPATCH,
    CASE_WRONG_STREAM,
    MUTANT_PATCHER,
    CaseWriter,
)

# MOVZ Xd, #imm16 (Arm ARM C6.2.191, 64-bit, hw=0): 1 10 100101 00 imm16 Rd
# = 0xd2800000 | imm16 << 5 | Rd, so "mov x0, #2" is 0xd2800040 and "mov x0, #3" 0xd2800060.
MOV_X0_2 = f"{0xD2800000 | 2 << 5:08x}"
MOV_X0_3 = f"{0xD2800000 | 3 << 5:08x}"


def test_wrong_stream_shows_case_line_side_by_side_diff_and_reproduce_command(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/wrong-stream.yaml": CASE_WRONG_STREAM})
    result = pytester.runpytest("--altpatch-corpus", "corpus")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*_ altpatch: demo/wrong-stream _*",
        "case demo/wrong-stream (*wrong-stream.yaml): mode boot, schedule pct:0 seed 0, *",
        "*stream-mismatch (boot) at corpus/cases/demo/wrong-stream.yaml:17:*",
        "*> 17 |       site: \"mov x0, #3\"",
        "*where*address*expected*| actual",
        f"*> site *{MOV_X0_3}  mov x0, #3 * | {MOV_X0_2}  mov x0, #2",
        "reproduce: altpatch show corpus/cases/demo/wrong-stream.yaml --mode boot "
        "--patcher reference --dialect linux-6.1 --schedule pct:0 --seed 0",
    ])
    output = result.stdout.str()
    # No frame of the plugin's own code (a package since #11: plugin/nodes.py, ...).
    assert "Traceback" not in output and "pytest_altpatch/plugin" not in output


def test_finding_is_shown_with_its_timeline(pytester: pytest.Pytester,
                                            corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED})
    pytester.makepyfile(mutant=MUTANT_PATCHER)
    pytester.syspathinsert()
    result = pytester.runpytest("--altpatch-corpus", "corpus",
                                "--altpatch-patcher=mutant:NoMaintenance")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*unexpected-finding (boot) at corpus/cases/demo/applied.yaml:*",
        "*stale-fetch: [[]cpu*",
        "*timeline around step *",
        "*step*cpu0*cpu1*",
        "*>*",
        "reproduce: altpatch show * --patcher mutant:NoMaintenance *",
    ])


def test_missing_error_compares_expected_and_actual_code_and_phase(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/expects-error.yaml": CASE_EXPECTS_ERROR})
    result = pytester.runpytest("--altpatch-corpus", "corpus")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*missing-error (boot) at corpus/cases/demo/expects-error.yaml:16:*",
        "*code*phase",
        "*expected*LENGTH_MISMATCH*boot",
        "*actual*(no error)*-",
    ])


def test_header_names_plugin_corpus_patcher_and_engines(pytester: pytest.Pytester,
                                                        two_cases: Path) -> None:
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--collect-only")
    result.stdout.fnmatch_lines([
        "altpatch: plugin 0.1.0",
        f"altpatch: corpus 2.0.0 at {two_cases}",
        "altpatch: patcher reference:linux-6.1 0.1.0, dialect linux-6.1, features: *branch-reloc*",
        "altpatch: unicorn 2.*, capstone 5.*, keystone-engine 0.9.*",
    ])


def test_header_is_absent_when_the_plugin_is_inert(pytester: pytest.Pytester) -> None:
    assert "altpatch:" not in pytester.runpytest("--collect-only").stdout.str()


def test_junit_xml_carries_user_properties(pytester: pytest.Pytester,
                                           corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/needs-livepatch.yaml": CASE_NEEDS_LIVEPATCH})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--junitxml=out.xml")
    result.assert_outcomes(passed=1, skipped=1)
    tree = ET.parse(pytester.path / "out.xml")
    properties = {
        case.get("classname", "") + "::" + case.get("name", ""): {
            p.get("name"): p.get("value") for p in case.iter("property")}
        for case in tree.iter("testcase")}
    applied = properties["corpus.cases.demo.applied.yaml::boot[pct:0]"]
    assert applied == {
        "altpatch_case": "demo/applied", "altpatch_mode": "boot", "altpatch_schedule": "pct:0",
        "altpatch_seed": "0", "altpatch_patcher": "reference:linux-6.1 0.1.0",
        "altpatch_dialect": "linux-6.1", "altpatch_corpus_version": "2.0.0",
        "altpatch_findings": "", "altpatch_discrepancies": ""}
    skipped = properties["corpus.cases.demo.needs-livepatch.yaml::boot[pct:0]"]
    assert skipped["altpatch_case"] == "demo/needs-livepatch"


def test_a_bug_in_the_harness_keeps_its_traceback(pytester: pytest.Pytester,
                                                  corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED})
    pytester.makeconftest(
        "import pytest_altpatch.judge as judge_module\n"
        "def broken(case, outcome):\n"
        "    raise RuntimeError('judge bug')\n"
        "judge_module.judge = broken\n")
    # A subprocess, so the broken judge never leaks into this test session.
    result = pytester.runpytest_subprocess("--altpatch-corpus", "corpus")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*raise RuntimeError('judge bug')*",
                                 "E       RuntimeError: judge bug"])
