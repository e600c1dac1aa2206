"""The fixtures offered to people writing their own tests."""

from __future__ import annotations

import pytest
from altpatch_cases import CASE_APPLIED, CASE_BROKEN, CASE_WRONG_STREAM

TESTS = f'''
import pytest
from pytest_altpatch.errors import SpecError

APPLIED = {CASE_APPLIED!r}
WRONG = {CASE_WRONG_STREAM!r}
BROKEN = {CASE_BROKEN!r}


def test_platform_from_a_string(altpatch_platform):
    cpus = altpatch_platform("2x cortex-a57/r1p0, 2x cortex-a53/r0p4")
    assert [cpu.model for cpu in cpus] == ["cortex-a57"] * 2 + ["cortex-a53"] * 2
    # MIDR_EL1: implementer 0x41 [31:24], variant 1 [23:20], architecture 0xf [19:16],
    # part 0xd07 [15:4], revision 0 [3:0].
    assert cpus[0].midr == 0x411FD070


def test_catalog_knows_the_cortex_a53(altpatch_catalog):
    assert "cortex-a53" in altpatch_catalog.cpus


def test_run_judge_and_assert(altpatch_case_from_yaml, altpatch_run, altpatch_judge,
                              altpatch_assert_conforms):
    case = altpatch_case_from_yaml(APPLIED)
    outcome = altpatch_run(case, patcher="reference:linux-6.1", schedule="random:2")
    assert (outcome.mode, outcome.seed) == ("boot", 2)
    assert altpatch_judge(case, outcome).passed
    altpatch_assert_conforms(case, outcome)


def test_bad_case_text_raises_a_located_spec_error(altpatch_case_from_yaml):
    with pytest.raises(SpecError) as caught:
        altpatch_case_from_yaml(BROKEN)
    assert (caught.value.code, caught.value.location.line) == ("SPEC_SCHEMA", 4)


def test_assert_conforms_reports_the_discrepancy(altpatch_case_from_yaml, altpatch_run,
                                                  altpatch_assert_conforms):
    case = altpatch_case_from_yaml(WRONG)
    altpatch_assert_conforms(case, altpatch_run(case))
'''


def test_fixtures_build_run_and_judge_cases(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_own=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_assert_conforms_reports_the_discrepancy _*",
        "case demo/wrong-stream (*): mode boot, schedule pct:0 seed 0, *",
        "*stream-mismatch (boot) at *case-1.yaml:17:*",
        "reproduce: altpatch show *case-1.yaml --mode boot *",
    ])
    failure = result.stdout.str().split("test_assert_conforms_reports_the_discrepancy")[1]
    assert "def test_" not in failure  # the report, not the test's source and traceback
