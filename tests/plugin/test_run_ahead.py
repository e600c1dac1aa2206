"""``--altpatch-jobs``: the next supervised items start while one is judged.

Each item still runs alone in its own forked child, so outcomes, reports and their
order never depend on how many run at once.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, CASE_WRONG_STREAM, CaseWriter

SCHEDULES = "--altpatch-schedules=rr:100,random:1-3,adversarial"


def _junit(path: Path) -> list[tuple[str, str, str]]:
    found = []
    for case in ET.parse(path).iter("testcase"):
        failed = [child.get("message") or "" for child in case if child.tag == "failure"]
        found.append((f"{case.get('classname')}::{case.get('name')}",
                      "failed" if failed else "passed", failed[0] if failed else ""))
    return found


def test_items_run_ahead_give_the_same_outcomes_in_the_same_order(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/wrong-stream.yaml": CASE_WRONG_STREAM})
    one = pytester.runpytest_subprocess("--altpatch-corpus", "corpus", SCHEDULES,
                                        "--altpatch-jobs", "1", "--junitxml=one.xml")
    two = pytester.runpytest_subprocess("--altpatch-corpus", "corpus", SCHEDULES,
                                        "--altpatch-jobs", "3", "--junitxml=three.xml")
    assert one.ret == two.ret == pytest.ExitCode.TESTS_FAILED
    expected = _junit(pytester.path / "one.xml")
    assert [outcome for _, outcome, _ in expected] == ["passed"] * 5 + ["failed"] * 5
    assert _junit(pytester.path / "three.xml") == expected

    def reports(text: str) -> list[str]:
        return [line for line in text.splitlines() if "expectations failed" in line
                or line.startswith("reproduce:")]

    assert reports(two.stdout.str()) == reports(one.stdout.str()) != []


def test_stopping_early_abandons_the_items_started_ahead(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/wrong-stream.yaml": CASE_WRONG_STREAM, "demo/zz-applied.yaml":
            CASE_APPLIED.replace("demo/applied", "demo/zz-applied")})
    result = pytester.runpytest_subprocess("--altpatch-corpus", "corpus", SCHEDULES,
                                           "--altpatch-jobs", "2", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)


@pytest.mark.parametrize("value", ["0", "two", "65"])
def test_a_bad_jobs_value_is_a_usage_error(pytester: pytest.Pytester, corpus: CaseWriter,
                                           value: str) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-jobs", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--altpatch-jobs: expected a number from 1 to 64, got "
                                 f"'{value}'*"])
