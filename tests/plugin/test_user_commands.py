"""``altpatch run``/``build``/``lint``/``show``/``schema`` as a new user meets them (#15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, write_corpus

from pytest_altpatch.cli import main
from pytest_altpatch.resources import bundled_corpus

CASE_TWO_DIALECTS = CASE_APPLIED.replace("demo/applied", "demo/two-dialects").replace(
    "requires: [branch-reloc]", "requires: [branch-reloc]\ndialects: [xen-4.17, linux-4.9]")


@pytest.fixture
def cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    root = write_corpus(tmp_path / "corpus", {"two.yaml": CASE_TWO_DIALECTS,
                                              "applied.yaml": CASE_APPLIED})
    return root / "cases"


def test_run_runs_the_dialects_the_case_lists(cases: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Before: one line, "reference:linux-6.1", N/A for a case not written for linux-6.1.
    assert main(["run", str(cases / "two.yaml")]) == 0
    assert capsys.readouterr().out == (
        "PASS  demo/two-dialects boot pct:0 seed 0 reference:linux-4.9 (linux-4.9)\n"
        "PASS  demo/two-dialects boot pct:0 seed 0 reference:xen-4.17 (xen-4.17)\n")


def test_run_takes_a_dialect_list_and_names_a_wrong_one(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(cases / "two.yaml"), "--dialect", "linux-4.9"]) == 0
    assert capsys.readouterr().out.count("PASS") == 1
    assert main(["run", str(cases / "two.yaml"), "--dialect", "xen-4.71"]) == 2
    assert "PATCHER_DIALECT: unknown dialect 'xen-4.71' (did you mean 'xen-4.17'?)" in \
        capsys.readouterr().err


def test_build_defaults_to_the_dialect_run_starts_with(
        cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(cases / "two.yaml"), "-o", str(tmp_path / "image.elf")]) == 0
    # Run's first (and show's) dialect: linux-6.1 if listed, else the case's first.
    assert capsys.readouterr().out.startswith("demo/two-dialects: linux-4.9,")


CASE_TYPO = CASE_APPLIED.replace("demo/applied", "demo/typo").replace(
    '"mov x0, #2", ALT_TEST_ON', '"movv x0, #2", ALT_TEST_ON')


def test_lint_builds_the_case_and_run_refuses_it_as_unreadable(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: lint exit 0 ("clean"), then run exit 1, a patcher failure "at 1:1".
    (cases / "typo.yaml").write_text(CASE_TYPO)
    assert main(["lint", str(cases / "typo.yaml")]) == 1
    line = "corpus/cases/typo.yaml:12:38: ASM_UNSUPPORTED: unsupported instruction 'movv'"
    assert capsys.readouterr().out.splitlines()[0].endswith(line)
    assert main(["lint", "--no-build", str(cases / "typo.yaml")]) == 0
    capsys.readouterr()
    assert main(["run", "corpus/cases/typo.yaml"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"altpatch: {line}" in captured.err
    assert '> 12 |     site: ALTERNATIVE("mov x0, #1", "movv x0, #2", ALT_TEST_ON)' in captured.err


# --------------------------------------------------------------------------- reports

WAITERS_SKIP_ISB = "conformance.mutants:waiters_skip_isb"


def test_a_finding_is_reported_at_its_site_line_with_the_missing_step(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: placed at the "text:" line of expect.boot, "pc site is case line 12: mov x0,
    # #1" (the old word, as if it ran), raw "pa: 0x0" / "writer: 0" lines, timeline cells
    # cut at 30 characters, and a summary "1 expectation failed: unexpected-finding".
    assert main(["run", "corpus/cases/applied.yaml", "--patcher", WAITERS_SKIP_ISB]) == 1
    out = capsys.readouterr().out
    assert "1 expectation failed: unexpected-finding stale-fetch at site on cpu1" in out
    assert "[1] unexpected-finding (boot) at corpus/cases/applied.yaml:12\n" in out
    assert '> 12 |     site: ALTERNATIVE("mov x0, #1", "mov x0, #2", ALT_TEST_ON)' in out
    assert "cpu0 wrote at step " in out and ": mov x0, #1 -> mov x0, #2" in out
    assert "the missing step is ISB on cpu1" in out
    for raw in ("  pa: ", "  writer: ", "  write_step: ", "is case line"):
        assert raw not in out
    timeline = out[out.index("timeline around step"):]
    missing = [line for line in timeline.splitlines() if line.lstrip().startswith("+")]
    assert len(missing) == 1 and missing[0].rstrip().endswith("ISB  <- missing")
    assert "missing\n" in timeline and "context-synchronization" in timeline  # not cut


def test_show_with_the_reproduce_command_agrees_with_the_verdict(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: show printed "findings (none)" while its own verdict listed the stale-fetch.
    assert main(["run", "corpus/cases/applied.yaml", "--patcher", WAITERS_SKIP_ISB]) == 1
    command = capsys.readouterr().out.split("reproduce: altpatch ")[1].split()
    assert main(command) == 1
    out = capsys.readouterr().out
    findings = out[out.index("\nfindings\n"):out.index("\ntimeline")]
    assert "(none)" not in findings
    assert "stale-fetch: [cpu1 " in findings
    verdict = out[out.index("\nverdict\n"):]
    assert "FAIL: 1 expectation(s) failed" in verdict and "stale-fetch: [cpu1 " in verdict


def test_show_lists_the_payload_sites_of_a_late_case(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    case = bundled_corpus() / "cases" / "payload" / "late-alternatives-apply-revert.yaml"
    assert main(["show", str(case), "--mode", "late", "--dialect", "xen-4.17"]) == 0
    out = capsys.readouterr().out
    listing = out[out.index("\npayload alternatives\n"):out.index("\nafter boot\n")]
    # The payload's own ALTERNATIVE: mov x0, #1 at its site, mov x0, #2 as replacement.
    assert "site #0 at new_site" in listing
    assert "mov x0, #1" in listing and "mov x0, #2" in listing


# --------------------------------------------------------------------------- schema


def test_schema_command_prints_the_path_and_writes_a_copy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: no such command; the schema had to be dug out of site-packages.
    bundled = bundled_corpus() / "schema" / "case.schema.json"
    assert main(["schema"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{bundled.resolve()}\n"
    assert f"# yaml-language-server: $schema={bundled.resolve()}" in captured.err
    assert main(["schema", "catalog", "--write", str(tmp_path / "editor")]) == 0
    copy = tmp_path / "editor" / "catalog.schema.json"
    assert capsys.readouterr().out == f"{copy.resolve()}\n"
    assert copy.read_bytes() == (bundled_corpus() / "schema" / "catalog.schema.json").read_bytes()


def test_schema_ids_are_not_a_placeholder_host() -> None:
    import json  # noqa: PLC0415

    for name in ("case", "catalog"):
        schema = json.loads((bundled_corpus() / "schema" / f"{name}.schema.json").read_text())
        assert schema["$id"] == f"urn:pytest-altpatch:corpus-schema:{name}"
