"""``altpatch build`` and ``altpatch inspect`` on corpus cases and on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cli import main
from pytest_altpatch.image.elf_reader import read_image
from pytest_altpatch.resources import bundled_corpus

CORPUS = bundled_corpus()
CASES = sorted((CORPUS / "cases").rglob("*.yaml"))
#: Macro openings as written in case text, counted independently of the expander.
_MACRO = re.compile(r"\bALTERNATIVE(?:_CB)?\s*\(|^\s*alternative_(?:if|if_not|cb)\b", re.M)


def _buildable(path: Path) -> bool:
    case = load_case(path, load_catalog())
    return case.expect.error is None or case.expect.error.phase != "build"


@pytest.mark.parametrize("case_path", [c for c in CASES if _buildable(c)],
                         ids=lambda p: str(p.relative_to(CORPUS / "cases")))
def test_inspect_lists_exactly_the_cases_alternatives(
    case_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = load_case(case_path, load_catalog())
    output = tmp_path / "image.elf"
    assert main(["build", str(case_path), "-o", str(output)]) == 0
    capsys.readouterr()
    status = main(["inspect", str(output), "--json"])
    report = json.loads(capsys.readouterr().out)
    raw = case.image.alt_table or ()
    macros = len(_MACRO.findall(case.image.text.text))
    assert len(report["entries"]) == macros + len(raw)
    sites = {int(e["site"], 16) for e in report["entries"]}
    symbols = read_image(output.read_bytes()).symbols
    for label in re.findall(r"^(\w+):\s*ALTERNATIVE", case.image.text.text, re.M):
        assert symbols[label] in sites
    # A clean case lints clean; hand-written (malformed) tables are what the lint is for.
    assert status == (1 if report["findings"] else 0)
    # Cases whose point is a replacement the table lint warns about (a literal a
    # dialect refuses or copies, or an ADRP a dialect copies to the wrong page).
    deliberate = "refused" in case.id or "copied" in case.id
    if not raw and not deliberate:
        assert report["findings"] == []
    for payload in case.payloads:
        obj = tmp_path / f"image-{payload.name}.o"
        assert obj.exists()
        assert main(["inspect", str(obj), "--base-image", str(output), "--json"]) in (0, 1)
        payload_report = json.loads(capsys.readouterr().out)
        # Hand-written payload entries (negative late cases) come after the macro ones.
        assert len(payload_report["entries"]) == (len(_MACRO.findall(payload.text.text))
                                                  + len(payload.alt_table or ()))


def test_build_error_is_reported_at_the_case_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    case = CORPUS / "cases" / "table" / "macro-length-mismatch.yaml"
    if not case.exists():
        pytest.skip("corpus case table/macro-length-mismatch.yaml not present")
    assert main(["build", str(case), "-o", str(tmp_path / "x.elf")]) == 1
    error = capsys.readouterr().err
    line = next(number for number, text in enumerate(case.read_text().splitlines(), start=1)
                if "ALTERNATIVE(" in text)
    assert f"macro-length-mismatch.yaml:{line}:" in error
    assert "BUILD_LENGTH_MISMATCH" in error


def test_inspect_of_garbage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"\x7fELF" + bytes(10))
    assert main(["inspect", str(bad)]) == 2
    assert "ELF_MALFORMED" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.elf")]) == 2


def test_inspect_flags_cap_beyond_ncaps_and_text_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CORPUS / "cases" / "table" / "cap-beyond-ncaps.yaml"
    if not case.exists():
        pytest.skip("corpus case table/cap-beyond-ncaps.yaml not present")
    output = tmp_path / "image.elf"
    assert main(["build", str(case), "-o", str(output)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(output)]) == 1
    text = capsys.readouterr().out
    assert "cap-out-of-range" in text and "site:" in text
