"""`altpatch run` and `show` go through the supervised worker too."""

from __future__ import annotations

from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, write_corpus
from hostile_patchers import HOSTILE_PATCHERS

from pytest_altpatch.cli import main


@pytest.fixture
def case_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One passing case in a corpus, and the hostile patchers importable."""
    (tmp_path / "hostile.py").write_text(HOSTILE_PATCHERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    root = write_corpus(tmp_path / "corpus", {"demo/applied.yaml": CASE_APPLIED})
    return root / "cases" / "demo" / "applied.yaml"


@pytest.mark.parametrize(("attack", "code"), [("SysExit", "PATCHER_EXITED"),
                                              ("OsExit", "PATCHER_EXITED"),
                                              ("Loop", "PATCHER_TIMEOUT")])
def test_run_reports_a_hostile_patcher_as_a_failure_not_a_pass(
        case_file: Path, capsys: pytest.CaptureFixture[str], attack: str, code: str) -> None:
    status = main(["run", str(case_file), "--patcher", f"hostile:{attack}", "--timeout", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert out.startswith("FAIL") and code in out


def test_run_passes_with_the_reference_patcher(case_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(case_file)]) == 0
    assert capsys.readouterr().out.startswith("PASS")


def test_show_escapes_control_characters_from_case_text(
        case_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # U+202E (right-to-left override) is a valid YAML character but must not reach a
    # terminal raw: it would reorder what the reader sees.
    case_file.write_text(case_file.read_text().replace("demo: the", "demo:\u202e the"))
    main(["show", str(case_file)])
    out = capsys.readouterr().out
    assert "\u202e" not in out and "\\u202e" in out
