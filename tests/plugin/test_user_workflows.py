"""What a new user meets first (issue #15): own case directories, every dialect in one
run, class patchers, coverage and strictness.  Each test runs the command that used to
fail and asserts what it does now."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, CASE_WRONG_STREAM, CaseWriter, write_corpus


def _own_cases(pytester: pytest.Pytester, cases: dict[str, str]) -> Path:
    """Case files in a plain directory: no VERSION, no catalog/ above them."""
    root = pytester.path / "mycases"
    for relative, text in cases.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


# --------------------------------------------------------------------------- own cases


def test_own_case_directory_runs_with_the_bundled_catalog(pytester: pytest.Pytester) -> None:
    # Before: "--altpatch-corpus: mycases is not inside a corpus", a usage error.
    _own_cases(pytester, {"applied.yaml": CASE_APPLIED, "sub/wrong.yaml": CASE_WRONG_STREAM})
    result = pytester.runpytest("--altpatch-corpus", "mycases", "--altpatch-dialect",
                                "linux-6.1")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED mycases/sub/wrong.yaml::boot*"])


def test_own_case_file_runs_with_a_named_catalog(pytester: pytest.Pytester) -> None:
    other = write_corpus(pytester.path / "vendor", {})
    own = _own_cases(pytester, {"applied.yaml": CASE_APPLIED})
    result = pytester.runpytest("--altpatch-corpus", str(own / "applied.yaml"),
                                "--altpatch-catalog", "vendor", "--altpatch-dialect",
                                "linux-6.1", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"altpatch: corpus * at {other}"])


def test_a_catalog_that_is_not_a_corpus_is_a_usage_error(pytester: pytest.Pytester) -> None:
    _own_cases(pytester, {"applied.yaml": CASE_APPLIED})
    (pytester.path / "empty").mkdir()
    result = pytester.runpytest("--altpatch-corpus", "mycases", "--altpatch-catalog", "empty")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-catalog: empty is not a corpus*"])


# --------------------------------------------------------------------------- dialects

CASE_TWO_DIALECTS = CASE_APPLIED.replace("demo/applied", "demo/two-dialects").replace(
    "requires: [branch-reloc]", "requires: [branch-reloc]\ndialects: [linux-4.9, xen-4.17]")


def _collected(result: pytest.RunResult) -> list[str]:
    return sorted(line.strip() for line in result.outlines if "::" in line)


def test_dialect_all_gives_one_item_per_dialect_the_case_lists(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    # Before: "--altpatch-dialect all" was PATCHER_UNKNOWN; one dialect per session.
    corpus({"demo/two.yaml": CASE_TWO_DIALECTS})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-dialect", "all",
                                "--collect-only", "-q")
    assert _collected(result) == ["corpus/cases/demo/two.yaml::boot[linux-4.9,pct:0]",
                                  "corpus/cases/demo/two.yaml::boot[xen-4.17,pct:0]"]
    ran = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-dialect",
                             "linux-4.9,xen-4.17,strict", "-v")
    ran.assert_outcomes(passed=2)
    ran.stdout.fnmatch_lines(["altpatch: patcher reference:linux-4.9 *",
                              "altpatch: patcher reference:xen-4.17 *",
                              "altpatch: patcher reference:strict *"])


def test_dialect_list_keeps_a_skipped_item_for_a_case_written_for_none(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/two.yaml": CASE_TWO_DIALECTS})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-dialect",
                                "linux-6.1,strict", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*not applicable: case is written for linux-4.9, xen-4.17*"])


def test_unknown_dialect_is_a_dialect_error_with_a_suggestion(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    # Before: "--altpatch-patcher: PATCHER_UNKNOWN: no reference dialect 'linux-6.2'".
    corpus({"demo/applied.yaml": CASE_APPLIED})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-dialect",
                                "linux-6.2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-dialect: PATCHER_DIALECT: unknown dialect "
                                 "'linux-6.2'*did you mean 'linux-6.1'?*"])


INSTANCE_AND_CLASS_PATCHERS = '''
from pytest_altpatch.patchers.reference import ReferencePatcher


class MyPatcher:
    """Class attributes only: the plugin must instantiate it."""

    name = "mine"
    version = "1.0"
    dialect = "linux-6.1"
    features = frozenset({"boot-alternatives", "branch-reloc"})

    def __init__(self):
        self._reference = ReferencePatcher("linux-6.1")

    def apply_boot_alternatives(self, ctx, env):
        self._reference.apply_boot_alternatives(ctx, env)

    def apply_alternatives_all(self, ctx, env):
        self._reference.apply_alternatives_all(ctx, env)

    def apply_alternatives_region(self, ctx, env):
        self._reference.apply_alternatives_region(ctx, env)


INSTANCE = MyPatcher()
'''


def test_a_class_patcher_is_instantiated(pytester: pytest.Pytester,
                                         corpus: CaseWriter) -> None:
    # Before: every item failed "PATCHER_RAISED: TypeError ... missing 1 required
    # positional argument" (the class itself was called as the patcher).
    corpus({"demo/applied.yaml": CASE_APPLIED})
    pytester.makepyfile(mine=INSTANCE_AND_CLASS_PATCHERS)
    pytester.syspathinsert()
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-patcher",
                                "mine:MyPatcher")
    result.assert_outcomes(passed=1)


def test_dialect_for_a_patcher_instance_is_an_error_not_ignored(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    # Before: --altpatch-dialect was silently ignored for an instance.
    corpus({"demo/applied.yaml": CASE_APPLIED})
    pytester.makepyfile(mine=INSTANCE_AND_CLASS_PATCHERS)
    pytester.syspathinsert()
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-patcher",
                                "mine:INSTANCE", "--altpatch-dialect", "xen-4.17")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--altpatch-dialect: PATCHER_DIALECT: 'mine:INSTANCE' is an "
                                 "instance implementing 'linux-6.1', not 'xen-4.17'*"])
    same = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-patcher",
                              "mine:INSTANCE", "--altpatch-dialect", "linux-6.1")
    same.assert_outcomes(passed=1)


# --------------------------------------------------------------------------- coverage

CASE_NEEDS_LIVEPATCH = CASE_APPLIED.replace("demo/applied", "demo/needs-livepatch").replace(
    "requires: [branch-reloc]", "requires: [branch-reloc, livepatch]")


@pytest.mark.parametrize("how", ["cli", "ini"])
def test_coverage_line_and_strict_mode(pytester: pytest.Pytester, corpus: CaseWriter,
                                       how: str) -> None:
    # Before: "1 passed, 1 skipped", exit 0, and nothing said how little had run.
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/needs-livepatch.yaml": CASE_NEEDS_LIVEPATCH})
    lenient = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-dialect", "linux-6.1")
    lenient.assert_outcomes(passed=1, skipped=1)
    lenient.stdout.fnmatch_lines(["altpatch coverage: 1 item(s) run, 1 not applicable: "
                                  "1 lacking livepatch (--altpatch-strict makes them fail)"])
    if how == "cli":
        strict = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-strict",
                                    "--altpatch-dialect", "linux-6.1")
    else:
        pytester.makeini("[pytest]\naltpatch_corpus = corpus\naltpatch_strict = true\n"
                         "altpatch_dialect = linux-6.1\n")
        strict = pytester.runpytest()
    strict.assert_outcomes(passed=1, failed=1)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines([
        "*not applicable (failed under --altpatch-strict): reference:linux-6.1 does not "
        "declare feature(s): livepatch*",
        "altpatch coverage: 1 item(s) run, 1 not applicable: 1 lacking livepatch"])


def test_coverage_line_counts_items_run_on_xdist_workers(pytester: pytest.Pytester,
                                                         corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/needs-livepatch.yaml": CASE_NEEDS_LIVEPATCH})
    result = pytester.runpytest_subprocess("--altpatch-corpus", "corpus", "-n", "2",
                                           "--altpatch-dialect", "linux-6.1",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["altpatch coverage: 1 item(s) run, 1 not applicable: "
                                 "1 lacking livepatch*"])


# --------------------------------------------------------------------------- auto dialect

CASE_XEN_ONLY = CASE_APPLIED.replace("demo/applied", "demo/xen-only").replace(
    "requires: [branch-reloc]", "requires: [branch-reloc]\ndialects: [xen-4.17]")


def test_the_reference_runs_each_case_under_a_dialect_that_applies(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    # Before (#14): the default ran linux-6.1 only, so these two were skipped as not
    # applicable (written for xen-4.17; lacking livepatch) and tested nothing.
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/needs-livepatch.yaml": CASE_NEEDS_LIVEPATCH,
            "demo/xen-only.yaml": CASE_XEN_ONLY})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--junitxml=out.xml")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["altpatch: dialect auto: each case runs under the first "
                                 "dialect it lists that applies (linux-6.1 first)*",
                                 "altpatch coverage: 3 item(s) run, 0 not applicable"])
    dialects = {}
    for case in ET.parse(pytester.path / "out.xml").iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        dialects[properties["altpatch_case"]] = (properties["altpatch_dialect"],
                                                 case.get("name"))
    # One item per case and mode; ids do not name the dialect (one dialect per item).
    assert dialects == {"demo/applied": ("linux-6.1", "boot[pct:0]"),
                        "demo/needs-livepatch": ("xen-4.17", "boot[pct:0]"),
                        "demo/xen-only": ("xen-4.17", "boot[pct:0]")}


def test_a_named_dialect_still_skips_what_it_cannot_run(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/xen-only.yaml": CASE_XEN_ONLY})
    for option in (["--altpatch-dialect", "linux-6.1"], ["--altpatch-patcher",
                                                         "reference:linux-6.1"]):
        result = pytester.runpytest("--altpatch-corpus", "corpus", *option)
        result.assert_outcomes(passed=1, skipped=1)
