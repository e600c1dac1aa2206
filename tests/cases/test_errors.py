"""Every error code the spec layer raises, from a bad file, with its exact location."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_altpatch.cases import lint_paths, load_case, load_catalog, load_corpus
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.cli.cases import format_problem
from pytest_altpatch.errors import SpecError
from pytest_altpatch.resources import bundled_corpus

from .conftest import VALID_CASE

WriteCase = Callable[[str], Path]


def _edit(old: str, new: str) -> str:
    assert old in VALID_CASE
    return VALID_CASE.replace(old, new, 1)


def _error(path: Path, catalog: Catalog) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_case(path, catalog)
    return caught.value


def _assert_at(error: SpecError, path: Path, code: str, line: int, column: int) -> None:
    assert error.code == code, error.render()
    assert (error.location.line, error.location.column) == (line, column), error.render()
    assert f"{path.name}:{line}:{column}" in error.render()
    assert f"{path.name}:{line}:{column}: {code}: " in format_problem(error)


def _column_of(text: str, line: int, needle: str) -> int:
    return text.splitlines()[line - 1].index(needle) + 1


def test_valid_case_loads(write_case: WriteCase, catalog: Catalog) -> None:
    case = load_case(write_case(VALID_CASE), catalog)
    assert case.id == "test/minimal"


def test_spec_syntax_points_at_the_yaml_problem(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case("format: 1\nid: x\n  bad: indent\n")
    # PyYAML reports "mapping values are not allowed here" at the second colon.
    _assert_at(_error(path, catalog), path, "SPEC_SYNTAX", 3, 6)


def test_duplicate_key_points_at_the_second_key(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit('title: "minimal case"\n', 'title: "minimal case"\ntitle: "x"\n'))
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_DUPLICATE_KEY", 4, 1)
    assert "first at line 3" in error.message


def test_unknown_key_is_a_schema_error_with_a_suggestion(
    write_case: WriteCase, catalog: Catalog
) -> None:
    path = write_case(_edit("title:", "titel:"))
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_SCHEMA", 3, 1)
    assert error.hint == "did you mean 'title'?"


def test_wrong_type_is_a_schema_error_at_the_value(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit('refs: ["unit test"]', "refs: 7"))
    _assert_at(_error(path, catalog), path, "SPEC_SCHEMA", 4, 7)


def test_newer_case_format_is_refused(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit("format: 1", "format: 2\nfuture_key: yes"))
    _assert_at(_error(path, catalog), path, "SPEC_VERSION", 1, 9)


def test_unknown_cpu_suggests_the_closest_name(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit("2x cortex-a57/r1p3", "2x cortex-a75x/r1p3"))
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_UNKNOWN_CPU", 6, 12)
    assert error.hint == "did you mean 'cortex-a75'?"


def test_revision_out_of_midr_range(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit('"cortex-a53/r0p4 revidr=0x100"', '"cortex-a53/r0p16"'))
    _assert_at(_error(path, catalog), path, "SPEC_BAD_RANGE", 6, 34)


def test_platform_item_without_revision(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit("2x cortex-a57/r1p3", "2x cortex-a57"))
    _assert_at(_error(path, catalog), path, "SPEC_BAD_PLATFORM", 6, 12)


def test_unknown_patcher_feature(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit("requires: [branch-reloc]", "requires: [branch-relocs]"))
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_UNKNOWN_FEATURE", 5, 12)
    assert error.hint == "did you mean 'branch-reloc'?"


def test_unknown_erratum(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit("{name: ALT_TEST_ON, when: always}",
                            "{name: ALT_TEST_ON, when: always}\n  - {erratum: arm-84341}"))
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_UNKNOWN_ERRATUM", 9, 15)
    assert error.hint == "did you mean 'arm-843419'?"


def test_unknown_capability_in_a_macro_points_into_the_text(
    write_case: WriteCase, catalog: Catalog
) -> None:
    text = _edit('"b fast", ALT_TEST_ON)', '"b fast", ALT_TEST_OM)')
    path = write_case(text)
    error = _error(path, catalog)
    # The block's first text line is file line 11 and its content is indented 4 columns.
    _assert_at(error, path, "SPEC_UNKNOWN_CAP", 12, _column_of(text, 12, "ALT_TEST_OM"))
    assert error.hint == "did you mean 'ALT_TEST_ON'?"


def test_capability_a_dialect_does_not_number(write_case: WriteCase, catalog: Catalog) -> None:
    text = _edit('"b fast", ALT_TEST_ON)', '"b fast", ARM64_HAS_LSE_ATOMICS)')
    path = write_case(text)
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_UNKNOWN_CAP", 12, _column_of(text, 12, "ARM64_HAS_LSE"))
    assert "xen-4.17" in error.message


def test_unknown_dialect(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit("requires: [branch-reloc]\n",
                            "requires: [branch-reloc]\ndialects: [linux-6.1, linux-6.2]\n"))
    _assert_at(_error(path, catalog), path, "SPEC_UNKNOWN_DIALECT", 6, 23)


def test_probe_of_an_undefined_label(write_case: WriteCase, catalog: Catalog) -> None:
    text = _edit("{call: entry,", "{call: entri,")
    path = write_case(text)
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_BAD_REFERENCE", 22, _column_of(text, 22, "entri"))
    assert error.hint == "did you mean 'entry'?"


def test_unregistered_finding_code(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit('      site: "b fast"\n',
                            '      site: "b fast"\n    findings: [stale-fetchh]\n'))
    error = _error(path, catalog)
    _assert_at(error, path, "SPEC_UNKNOWN_CODE", 21, 16)
    assert error.hint == "did you mean 'stale-fetch'?"


def test_unregistered_error_code(write_case: WriteCase, catalog: Catalog) -> None:
    path = write_case(_edit('      site: "b fast"\n',
                            '      site: "b fast"\n    error: {code: LENGTH_MISMATCHED}\n'))
    _assert_at(_error(path, catalog), path, "SPEC_UNKNOWN_CODE", 21, 19)


def test_duplicate_case_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID_CASE)
    (tmp_path / "b.yaml").write_text(VALID_CASE)
    problems = lint_paths([tmp_path])
    assert [p.code for p in problems] == ["SPEC_DUPLICATE_ID"]
    assert format_problem(problems[0]).startswith(f"{tmp_path / 'b.yaml'}:2:5: SPEC_DUPLICATE_ID:")


def test_missing_file_is_spec_io(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(SpecError) as caught:
        load_case(tmp_path / "absent.yaml", catalog)
    assert caught.value.code == "SPEC_IO"
    assert caught.value.location.file is not None


def test_non_utf8_file_is_spec_io_at_its_line(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"format: 1\ntitle: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        load_case(path, catalog)
    assert caught.value.code == "SPEC_IO"
    assert caught.value.location.line == 2


def _copy_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    shutil.copytree(bundled_corpus(), root)
    return root


def test_catalog_erratum_naming_an_unknown_cpu(tmp_path: Path) -> None:
    root = _copy_corpus(tmp_path)
    errata = root / "catalog" / "errata.yaml"
    text = errata.read_text().replace("{cpu: cortex-a57, from: r0p0, to: r1p2}",
                                      "{cpu: cortex-a75x, from: r0p0, to: r1p2}", 1)
    errata.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "cortex-a75x" in row)
    with pytest.raises(SpecError) as caught:
        load_catalog(root)
    error = caught.value
    assert error.code == "SPEC_UNKNOWN_CPU"
    assert (error.location.line, error.location.column) == (line, 15)
    assert error.hint == "did you mean 'cortex-a75'?"


def test_catalog_empty_range_is_bad_range(tmp_path: Path) -> None:
    root = _copy_corpus(tmp_path)
    errata = root / "catalog" / "errata.yaml"
    errata.write_text(errata.read_text().replace("from: r0p0, to: r1p2", "from: r1p3, to: r1p2",
                                                 1))
    with pytest.raises(SpecError) as caught:
        load_catalog(root)
    assert caught.value.code == "SPEC_BAD_RANGE"
    assert caught.value.location.file is not None and caught.value.location.line


def test_newer_corpus_major_is_refused_unless_accepted(tmp_path: Path) -> None:
    root = _copy_corpus(tmp_path)
    (root / "VERSION").write_text("3.0.0\n")
    with pytest.raises(SpecError) as caught:
        load_corpus(root)
    assert caught.value.code == "SPEC_VERSION"
    assert caught.value.location.line == 1
    assert load_corpus(root, accept_major=3).version == "3.0.0"


def test_lint_keeps_going_after_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("format: [\n")
    (tmp_path / "b.yaml").write_text(_edit("2x cortex-a57/r1p3", "2x cortex-a75x/r1p3"))
    (tmp_path / "c.yaml").write_text(_edit("id: test/minimal", "id: test/other"))
    codes = [p.code for p in lint_paths([tmp_path])]
    assert codes == ["SPEC_SYNTAX", "SPEC_UNKNOWN_CPU"]
