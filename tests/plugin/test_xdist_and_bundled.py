"""Whole-session behaviour: xdist parity and the bundled corpus against the reference."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from altpatch_cases import (
    CASE_APPLIED,
    CASE_BROKEN,
    CASE_NEEDS_LIVEPATCH,
    CASE_WRONG_STREAM,
    CaseWriter,
)


def _outcomes(junit: Path) -> dict[str, str]:
    """testcase id -> passed/failed/skipped/error, from a JUnit XML file."""
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "skipped", "error")]
        found[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return found


def test_two_xdist_workers_give_the_same_outcomes_as_one_process(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/wrong-stream.yaml": CASE_WRONG_STREAM,
            "demo/needs-livepatch.yaml": CASE_NEEDS_LIVEPATCH, "demo/broken.yaml": CASE_BROKEN})
    options = ["--altpatch-corpus", "corpus", "--altpatch-schedules=rr:100,random:1",
               "--altpatch-dialect", "linux-6.1", "-p", "no:cacheprovider"]
    single = pytester.runpytest_subprocess(*options, "--junitxml=single.xml")
    parallel = pytester.runpytest_subprocess(*options, "-n", "2", "--junitxml=parallel.xml")
    expected = _outcomes(pytester.path / "single.xml")
    assert sorted(expected.values()) == ["failure", "failure", "failure", "passed", "passed",
                                         "skipped", "skipped"]
    assert _outcomes(pytester.path / "parallel.xml") == expected
    assert "Different tests were collected" not in parallel.stdout.str()
    assert single.ret == parallel.ret == pytest.ExitCode.TESTS_FAILED


def test_bundled_corpus_passes_with_the_reference_patcher(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--altpatch-corpus", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert outcomes.get("passed", 0) > 0 and "failed" not in outcomes
