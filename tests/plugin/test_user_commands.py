"""``altpatch run``/``build``/``lint``/``show``/``schema`` as a new user meets them (#15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, write_corpus

from pytest_altpatch.cli import main

CASE_TWO_DIALECTS = CASE_APPLIED.replace("demo/applied", "demo/two-dialects").replace(
    "requires: [branch-reloc]", "requires: [branch-reloc]\ndialects: [xen-4.17, linux-4.9]")


@pytest.fixture
def cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    root = write_corpus(tmp_path / "corpus", {"two.yaml": CASE_TWO_DIALECTS})
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
