"""Collection: which files become items, their ids, markers and locations."""

from __future__ import annotations

from pathlib import Path

import pytest
from altpatch_cases import (
    CASE_APPLIED,
    CASE_BROKEN,
    CASE_NEEDS_ADRP,
    CASE_WRONG_STREAM,
    CaseWriter,
)

from pytest_altpatch.plugin import CaseItem
from pytest_altpatch.resources import bundled_corpus


def _collected_ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_each_case_becomes_one_item_per_mode_and_schedule_with_sorted_ids(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/wrong-stream.yaml": CASE_WRONG_STREAM, "demo/applied.yaml": CASE_APPLIED,
            "adrp/needs-adrp.yaml": CASE_NEEDS_ADRP})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--collect-only", "-q")
    assert _collected_ids(result) == [
        "corpus/cases/adrp/needs-adrp.yaml::boot[pct:0]",
        "corpus/cases/demo/applied.yaml::boot[pct:0]",
        "corpus/cases/demo/wrong-stream.yaml::boot[pct:0]",
    ]


def test_corpus_option_alone_replaces_testpaths(pytester: pytest.Pytester,
                                                two_cases: Path) -> None:
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--collect-only", "-q")
    ids = _collected_ids(result)
    assert ids and all(i.startswith("corpus/cases/") for i in ids)


def test_corpus_option_joins_paths_given_on_the_command_line(pytester: pytest.Pytester,
                                                             two_cases: Path) -> None:
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = pytester.runpytest("test_mine.py", "--altpatch-corpus", "corpus",
                                "--collect-only", "-q")
    ids = _collected_ids(result)
    assert "test_mine.py::test_mine" in ids
    assert "corpus/cases/demo/applied.yaml::boot[pct:0]" in ids


def test_a_single_case_file_can_be_selected(pytester: pytest.Pytester, two_cases: Path) -> None:
    result = pytester.runpytest("--altpatch-corpus", "corpus/cases/demo/applied.yaml",
                                "--collect-only", "-q")
    assert _collected_ids(result) == ["corpus/cases/demo/applied.yaml::boot[pct:0]"]


def test_ini_key_switches_the_plugin_on_alongside_the_project_tests(
        pytester: pytest.Pytester, two_cases: Path) -> None:
    pytester.makeini("[pytest]\naltpatch_corpus = corpus\n")
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    ids = _collected_ids(pytester.runpytest("--collect-only", "-q"))
    assert "test_mine.py::test_mine" in ids
    assert "corpus/cases/demo/needs-adrp.yaml::boot[pct:0]" in ids


def test_without_the_option_case_files_are_not_collected(pytester: pytest.Pytester,
                                                         two_cases: Path) -> None:
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "corpus", "test_mine.py")
    assert _collected_ids(result) == ["test_mine.py::test_mine"]


def test_disabled_plugin_does_not_know_its_options(pytester: pytest.Pytester,
                                                   two_cases: Path) -> None:
    result = pytester.runpytest("-p", "no:altpatch", "--altpatch-corpus", "corpus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --altpatch-corpus*"])


def test_a_directory_outside_any_corpus_is_read_with_the_bundled_catalog(
        pytester: pytest.Pytester) -> None:
    # Own cases (issue #15): no longer "not inside a corpus"; here there are none.
    pytester.mkdir("not-a-corpus")
    result = pytester.runpytest("--altpatch-corpus", "not-a-corpus")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([f"altpatch: corpus * at {bundled_corpus()}", "collected 0 items"])


def test_bundled_corpus_is_the_default(pytester: pytest.Pytester) -> None:
    ids = _collected_ids(pytester.runpytest("--altpatch-corpus", "--collect-only", "-q"))
    assert any(i.endswith("cases/branch/b-external.yaml::boot[pct:0]") for i in ids)
    assert ids == sorted(ids)


def test_unloadable_case_is_one_failing_item_with_file_line_column(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/broken.yaml": CASE_BROKEN, "demo/applied.yaml": CASE_APPLIED})
    collected = pytester.runpytest("--altpatch-corpus", "corpus", "--collect-only", "-q")
    assert _collected_ids(collected) == ["corpus/cases/demo/applied.yaml::boot[pct:0]",
                                         "corpus/cases/demo/broken.yaml::load"]
    result = pytester.runpytest("--altpatch-corpus", "corpus", "-k", "load")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(
        ["corpus/cases/demo/broken.yaml:4:1: SPEC_SCHEMA: unknown key 'colour'*"])
    assert "Traceback" not in result.stdout.str()


def test_items_carry_markers_and_locate_the_expectation(pytester: pytest.Pytester,
                                                        corpus: CaseWriter) -> None:
    corpus({"demo/needs-adrp.yaml": CASE_NEEDS_ADRP})
    items, _ = pytester.inline_genitems("--altpatch-corpus", "corpus")
    (item,) = items
    assert isinstance(item, CaseItem)
    case_marker = item.get_closest_marker("altpatch_case")
    assert case_marker is not None and case_marker.args == ("demo/needs-adrp",)
    assert [m.args for m in item.iter_markers("altpatch_feature")] == [("adrp-reloc",)]
    path, line, domain = item.reportinfo()
    # "expect:" is line 15 and "  boot:" line 16 of the case text; reportinfo is 0-based.
    assert (Path(path).name, line, domain) == ("needs-adrp.yaml", 15, "altpatch: demo/needs-adrp")


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester,
                                                   two_cases: Path) -> None:
    result = pytester.runpytest("--strict-markers", "--altpatch-corpus", "corpus",
                                "--collect-only", "-q", "-m", "altpatch_feature")
    assert result.ret == pytest.ExitCode.OK
    assert len(_collected_ids(result)) == 2


@pytest.mark.parametrize("how", ["cli", "ini"])
def test_a_corpus_directory_is_data_its_conftest_and_tests_never_run(
        pytester: pytest.Pytester, corpus: CaseWriter, how: str) -> None:
    root = corpus({"demo/applied.yaml": CASE_APPLIED})
    planted = "open({marker!r}, 'w').close()\nraise SystemExit('corpus code ran')\n"
    for where in (root, root / "cases", root / "cases" / "demo"):
        (where / "conftest.py").write_text(planted.format(marker=str(where / "conftest-ran")))
        (where / "test_planted.py").write_text(
            planted.format(marker=str(where / "test-ran")) + "def test_x():\n    pass\n")
    if how == "ini":  # switched on from the ini file: pytest walks the project too
        pytester.makeini("[pytest]\naltpatch_corpus = corpus\n")
        result = pytester.runpytest()
    else:
        result = pytester.runpytest("--altpatch-corpus", "corpus")
    result.assert_outcomes(passed=1)
    assert not list(root.rglob("*-ran"))  # neither kind of file was ever imported


def test_a_case_id_used_twice_is_a_located_load_error(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    copy = CASE_APPLIED.replace("requires:", "# the same id again\nrequires:")
    corpus({"a/first.yaml": CASE_APPLIED, "b/second.yaml": copy})
    result = pytester.runpytest("--altpatch-corpus", "corpus")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["corpus/cases/b/second.yaml:2:*SPEC_DUPLICATE_ID*"
                                 "demo/applied*corpus/cases/a/first.yaml*"])
