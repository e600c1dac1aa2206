"""Every ``--altpatch-*`` option, and its ``altpatch_*`` ini twin."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from altpatch_cases import (
    CASE_APPLIED,
    CASE_NEEDS_ADRP,
    CASE_NEEDS_LIVEPATCH,
    CASE_WRONG_STREAM,
    SPINNING_PATCHER,
    CaseWriter,
)


def _run(pytester: pytest.Pytester, how: str, option: str, value: str,
         *args: str) -> pytest.RunResult:
    """Run with ``--altpatch-<option> value`` (``how="cli"``) or the ini twin (``"ini"``)."""
    if how == "cli":
        return pytester.runpytest("--altpatch-corpus", "corpus", f"--altpatch-{option}={value}",
                                  *args)
    pytester.makeini(f"[pytest]\naltpatch_corpus = corpus\naltpatch_{option.replace('-', '_')} "
                     f"= {value}\n")
    return pytester.runpytest(*args)


def _ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


BOTH = pytest.mark.parametrize("how", ["cli", "ini"])


@BOTH
def test_unknown_patcher_is_a_usage_error(pytester: pytest.Pytester, two_cases: Path,
                                          how: str) -> None:
    result = _run(pytester, how, "patcher", "reference:linux-9.9", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-patcher*PATCHER_DIALECT*linux-9.9*"
                                 "did you mean 'linux-4.9'?*"])


@BOTH
def test_patcher_and_dialect_show_in_the_header(pytester: pytest.Pytester, two_cases: Path,
                                                how: str) -> None:
    result = _run(pytester, how, "patcher", "reference:xen-4.17", "--collect-only")
    result.stdout.fnmatch_lines(["altpatch: patcher reference:xen-4.17 *, dialect xen-4.17, "
                                 "features: *livepatch*"])


@BOTH
def test_dialect_option_chooses_the_reference_dialect(pytester: pytest.Pytester,
                                                      two_cases: Path, how: str) -> None:
    result = _run(pytester, how, "dialect", "linux-4.9", "--collect-only")
    result.stdout.fnmatch_lines(["altpatch: patcher reference:linux-4.9 *, dialect linux-4.9*"])


@BOTH
def test_modes_option_selects_modes(pytester: pytest.Pytester, two_cases: Path,
                                    how: str) -> None:
    # Both cases have boot expectations only: asking for late leaves nothing.
    assert _ids(_run(pytester, how, "modes", "late", "--collect-only", "-q")) == []
    assert len(_ids(_run(pytester, how, "modes", "boot,late", "--collect-only", "-q"))) == 2


def test_unknown_mode_is_a_usage_error(pytester: pytest.Pytester, two_cases: Path) -> None:
    result = _run(pytester, "cli", "modes", "bot", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown mode 'bot'*"])


@BOTH
def test_schedules_option_makes_one_item_per_schedule(pytester: pytest.Pytester,
                                                      corpus: CaseWriter, how: str) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED})
    result = _run(pytester, how, "schedules", "rr:100,random:1-2,adversarial",
                  "--collect-only", "-q")
    assert _ids(result) == [f"corpus/cases/demo/applied.yaml::boot[{label}]"
                            for label in ("rr:100", "random:1", "random:2", "adversarial")]


@BOTH
def test_features_include_keeps_only_cases_requiring_them(pytester: pytest.Pytester,
                                                          two_cases: Path, how: str) -> None:
    result = _run(pytester, how, "features-include", "adrp-reloc", "--collect-only", "-q")
    assert _ids(result) == ["corpus/cases/demo/needs-adrp.yaml::boot[pct:0]"]
    result.stdout.fnmatch_lines(["*1 deselected*"])


@BOTH
def test_features_exclude_drops_cases_requiring_them(pytester: pytest.Pytester,
                                                     two_cases: Path, how: str) -> None:
    result = _run(pytester, how, "features-exclude", "adrp-reloc", "--collect-only", "-q")
    assert _ids(result) == ["corpus/cases/demo/applied.yaml::boot[pct:0]"]


def test_unknown_feature_is_a_usage_error_with_a_suggestion(pytester: pytest.Pytester,
                                                            two_cases: Path) -> None:
    result = _run(pytester, "cli", "features-include", "adrp-relocs", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown feature 'adrp-relocs' (did you mean 'adrp-reloc'?)*"])


SKIPS = """\
# one id or id prefix per line
demo/applied            # case id: every item of the case
corpus/cases/demo/needs-adrp.yaml::boot
demo/app                # not an id boundary: matches nothing, so it warns
"""


@BOTH
def test_skip_file_skips_listed_items_and_warns_about_stale_lines(
        pytester: pytest.Pytester, two_cases: Path, how: str) -> None:
    pytester.makefile(".txt", skips=SKIPS)
    result = _run(pytester, how, "skip-file", "skips.txt", "-rs")
    result.assert_outcomes(skipped=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*warnings summary*",
        "*skips.txt:4*",
        "*AltpatchExpectationWarning: skip entry 'demo/app' matches no collected item*",
        "*short test summary info*",
        "SKIPPED *demo/applied.yaml: case id: every item of the case",
        "SKIPPED *demo/needs-adrp.yaml: listed in skips.txt:3",
    ])


def test_stale_line_warning_can_be_made_an_error(pytester: pytest.Pytester,
                                                 two_cases: Path) -> None:
    pytester.makefile(".txt", skips="demo/gone\n")
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-skip-file=skips.txt",
                                "-W", "error::pytest_altpatch.plugin.AltpatchExpectationWarning")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*skips.txt:1: skip entry 'demo/gone' matches no collected "
                                 "item*"])


def test_missing_skip_file_is_a_usage_error(pytester: pytest.Pytester, two_cases: Path) -> None:
    result = _run(pytester, "cli", "skip-file", "nowhere.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-skip-file: cannot read*nowhere.txt*"])


@BOTH
def test_xfail_file_expects_failure_and_a_pass_is_a_strict_xpass(
        pytester: pytest.Pytester, corpus: CaseWriter, how: str) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/wrong-stream.yaml": CASE_WRONG_STREAM})
    pytester.makefile(".txt", xfails="demo/wrong-stream  # bad on purpose\ndemo/applied\n")
    result = _run(pytester, how, "xfail-file", "xfails.txt", "-rxX")
    result.assert_outcomes(xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*[[]XPASS(strict)[]]*listed in xfails.txt:2*",
                                 "*XFAIL*wrong-stream*bad on purpose*"])


SHARD_SCHEDULES = "--altpatch-schedules=rr:100,random:1-2"


@pytest.fixture
def nine_items(corpus: CaseWriter) -> Path:
    """Three cases under three schedules."""
    return corpus({"demo/applied.yaml": CASE_APPLIED, "demo/wrong-stream.yaml": CASE_WRONG_STREAM,
                   "demo/needs-adrp.yaml": CASE_NEEDS_ADRP})


@pytest.mark.parametrize("count", [2, 3])
def test_shards_partition_the_items_exactly(pytester: pytest.Pytester, nine_items: Path,
                                            count: int) -> None:
    everything = set(_ids(pytester.runpytest("--altpatch-corpus", "corpus", SHARD_SCHEDULES,
                                             "--collect-only", "-q")))
    assert len(everything) == 9
    shards = [_ids(_run(pytester, "cli", "shard", f"{k}/{count}", SHARD_SCHEDULES,
                        "--collect-only", "-q")) for k in range(1, count + 1)]
    assert set(itertools.chain(*shards)) == everything
    assert sum(map(len, shards)) == len(everything)  # no item in two shards
    # Round-robin over the sorted ids: shard K holds positions K-1, K-1+N, ...
    assert sorted(shards[0]) == sorted(everything)[::count]


def test_shard_ini_key_selects_the_same_items(pytester: pytest.Pytester,
                                              nine_items: Path) -> None:
    cli = _ids(_run(pytester, "cli", "shard", "2/3", SHARD_SCHEDULES, "--collect-only", "-q"))
    ini = _ids(_run(pytester, "ini", "shard", "2/3", SHARD_SCHEDULES, "--collect-only", "-q"))
    assert len(cli) == 3
    assert ini == cli


@pytest.mark.parametrize("value", ["0/2", "3/2", "1", "a/b"])
def test_bad_shard_is_a_usage_error(pytester: pytest.Pytester, two_cases: Path,
                                    value: str) -> None:
    result = _run(pytester, "cli", "shard", value, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-shard: expected K/N*"])


@BOTH
def test_newer_corpus_major_needs_accept_version(pytester: pytest.Pytester, two_cases: Path,
                                                 how: str) -> None:
    (two_cases / "VERSION").write_text("3.0.0\n")
    refused = pytester.runpytest("--altpatch-corpus", "corpus")
    refused.assert_outcomes(failed=2)
    refused.stdout.fnmatch_lines(["*VERSION:1:1: SPEC_VERSION: corpus version 3.0.0 is newer*"])
    accepted = _run(pytester, how, "accept-version", "3", "--collect-only")
    accepted.stdout.fnmatch_lines(["altpatch: corpus 3.0.0 at *corpus", "collected 2 items"])
    assert "::load" not in accepted.stdout.str()


def test_not_applicable_case_is_skipped_with_the_reason(pytester: pytest.Pytester,
                                                        corpus: CaseWriter) -> None:
    corpus({"demo/needs-livepatch.yaml": CASE_NEEDS_LIVEPATCH})
    # Under one named dialect (the reference's default runs it as xen-4.17: see
    # test_the_reference_runs_each_case_under_a_dialect_that_applies).
    result = pytester.runpytest("--altpatch-corpus", "corpus", "-rs",
                                "--altpatch-dialect", "linux-6.1")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*livepatch*"])


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_timeout_is_a_usage_error(pytester: pytest.Pytester, two_cases: Path,
                                      value: str) -> None:
    result = _run(pytester, "cli", "timeout", value, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-timeout: expected positive seconds*"])


@BOTH
def test_timeout_fails_a_hung_item_and_the_session_goes_on(
        pytester: pytest.Pytester, corpus: CaseWriter, how: str) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/needs-adrp.yaml": CASE_NEEDS_ADRP})
    pytester.makepyfile(spinner=SPINNING_PATCHER)
    pytester.syspathinsert()
    result = _run(pytester, how, "timeout", "0.5", "--altpatch-patcher=spinner:Spinner")
    # Both items run (the first hung one did not end the session) and both fail on time.
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*budget: [[]cpu* run budget spent*"] * 2)
