"""Fixtures writing a small corpus per test, so plugin tests stay fast."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, CASE_NEEDS_ADRP, CaseWriter, write_corpus


@pytest.fixture
def corpus(pytester: pytest.Pytester) -> CaseWriter:
    """Write a corpus under ``<pytester>/corpus`` with the given case files."""

    def make(cases: Mapping[str, str]) -> Path:
        return write_corpus(pytester.path / "corpus", cases)

    return make


@pytest.fixture
def two_cases(corpus: CaseWriter) -> Path:
    """A corpus with one passing and one feature-demanding case."""
    return corpus({"demo/applied.yaml": CASE_APPLIED, "demo/needs-adrp.yaml": CASE_NEEDS_ADRP})
