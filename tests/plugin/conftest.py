"""Fixtures writing a small corpus per test, so plugin tests stay fast."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# pytester's in-process runs drop every module first imported during the run; loading
# the pipeline here keeps it (and its assertion rewriting) out of each run's cost.
# Hypothesis's pytest plugin imports the library lazily at the end of every run.
import pytest
from altpatch_cases import CASE_APPLIED, CASE_NEEDS_ADRP, CaseWriter, write_corpus

import pytest_altpatch.cases.case
import pytest_altpatch.cases.catalog
import pytest_altpatch.cases.corpus
import pytest_altpatch.cli.run
import pytest_altpatch.judge
import pytest_altpatch.pipeline
import pytest_altpatch.report
import pytest_altpatch.scenarios.runner
import pytest_altpatch.supervisor  # noqa: F401


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
