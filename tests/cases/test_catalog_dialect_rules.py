"""A catalog numbering restates its dialect's callback rules; the table decides."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_altpatch.cases.catalog import load_catalog
from pytest_altpatch.dialects import DIALECTS, traits
from pytest_altpatch.errors import SpecError
from pytest_altpatch.resources import bundled_corpus


def _catalog_copy(tmp_path: Path) -> Path:
    target = tmp_path / "catalog"
    shutil.copytree(bundled_corpus() / "catalog", target)
    return target


def test_the_bundled_numberings_agree_with_the_dialect_table() -> None:
    catalog = load_catalog()
    for dialect in DIALECTS:
        numbering = catalog.numberings[dialect]
        assert numbering.callback_marking == traits(dialect).callbacks
        assert numbering.callbacks_conditional == traits(dialect).conditional_callbacks


@pytest.mark.parametrize(("old", "new", "key"), [
    ("callback_marking: bit15", "callback_marking: ncaps", "callback_marking"),
    ("callbacks_conditional: true", "callbacks_conditional: false", "callbacks_conditional"),
])
def test_a_numbering_contradicting_its_dialect_is_a_located_error(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    catalog_dir = _catalog_copy(tmp_path)
    numberings = catalog_dir / "numberings.yaml"
    text = numberings.read_text(encoding="utf-8")
    # linux-6.1 is the first numbering to use bit-15 conditional callbacks.
    start = text.index("  linux-6.1:")
    at = text.index(old, start)
    numberings.write_text(text[:at] + new + text[at + len(old):], encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_catalog(catalog_dir)
    error = caught.value
    assert error.code == "SPEC_DIALECT_MISMATCH"
    assert key in error.message and "linux-6.1" in error.message
    assert error.location.line == text[:at].count("\n") + 1
