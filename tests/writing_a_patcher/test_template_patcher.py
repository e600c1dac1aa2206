"""The "Writing a patcher" page's patcher (conformance/template_patcher.py) is the one
the page shows, and it passes every bundled case it declares the features for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.template_patcher import MinimalPatcher
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.corpus import case_files
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.pipeline import not_applicable
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.runner import run_case

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "conformance" / "writing-a-patcher.md"
TEMPLATE = ROOT / "conformance" / "template_patcher.py"
CASES = sorted(case_files(bundled_corpus()))


def test_the_page_shows_the_shipped_template_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert blocks == [TEMPLATE.read_text()]


def test_the_readme_links_the_page() -> None:
    assert "conformance/writing-a-patcher.md" in (ROOT / "README.md").read_text()


def test_the_class_resolves_as_the_readme_names_it() -> None:
    patcher = resolve_patcher("conformance.template_patcher:MinimalPatcher")
    assert isinstance(patcher, MinimalPatcher)


@pytest.mark.parametrize("path", CASES, ids=lambda p: str(p.relative_to(bundled_corpus())))
def test_the_template_passes_the_bundled_case(path: Path) -> None:
    catalog = load_catalog()
    case = load_case(path, catalog)
    patcher = MinimalPatcher()
    modes = [m for m in ("boot", "late") if not_applicable(case, patcher, m) is None]
    for mode in modes:
        verdict = judge(case, run_case(case, catalog, mode=mode, patcher=patcher))
        assert verdict.passed, [d.message for d in verdict.discrepancies]
