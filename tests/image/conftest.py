"""Helpers for image-layer tests: cases and numberings built directly (no YAML)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from pytest_altpatch.cases.model import (
    CapNumbering,
    Case,
    Dialect,
    Expectations,
    ExtraCap,
    ImageSpec,
    RawAltEntry,
    SourceBlock,
)
from pytest_altpatch.errors import Location

CASE_FILE = "cases/test/example.yaml"
#: The file line the test case's text block starts on.
TEXT_LINE = 20

#: A small numbering shared by every dialect in these tests (the real ones live in
#: the corpus catalog): three capabilities, NCAPS = 3.
CAPS = {"CAP_A": 0, "CAP_B": 1, "CAP_C": 2}


def numbering_for(dialect: Dialect, ncaps: int = 3) -> CapNumbering:
    """A test numbering for ``dialect``."""
    return CapNumbering(dialect, ncaps, MappingProxyType(dict(CAPS)))


def make_case(
    text: str,
    *,
    data: str | None = None,
    rodata: str | None = None,
    caps: tuple[str, ...] = (),
    alt_table: tuple[RawAltEntry, ...] | None = None,
    cpus: int = 2,
) -> Case:
    """A case whose text block starts at file line TEXT_LINE of CASE_FILE."""
    def block(source: str | None, line: int) -> SourceBlock | None:
        if source is None:
            return None
        return SourceBlock(source, Location(file=CASE_FILE, line=line))

    text_block = block(text, TEXT_LINE)
    assert text_block is not None
    return Case(
        path=CASE_FILE,
        id="test-case",
        title="test",
        refs=(),
        requires=(),
        dialects=("linux-4.9",),
        platform=tuple(None for _ in range(cpus)),  # type: ignore[misc]
        image=ImageSpec(text_block, block(data, 200), block(rodata, 300), alt_table),
        expect=Expectations(),
        caps=tuple(ExtraCap(name) for name in caps),
    )


@pytest.fixture
def case_factory():  # type: ignore[no-untyped-def]
    """The make_case helper as a fixture."""
    return make_case
