"""Every expected instruction stream of the bundled corpus, assembled by GNU as.

The judge assembles each ``expect.<phase>.text`` stream with our assembler at its
label's address.  Here GNU as + ld (``-Ttext`` at that address, the image's symbols
given with ``--defsym``) assemble the same text independently, and the bytes must be
identical: a wrong encoding in our assembler cannot make a wrong expectation pass.
Each stream is checked once, at its label's address in the image of the first dialect
the case is written for (symbols come from a reference run, so payload labels of late
streams resolve too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from pytest_altpatch.a64 import assemble
from pytest_altpatch.cases import load_corpus
from pytest_altpatch.cases.model import Case, PhaseExpectation
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.pipeline import not_applicable
from pytest_altpatch.scenarios.runner import run_case

from .gnu_as import AVAILABLE, MISSING_REASON, gnu_assemble

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING_REASON)

_IDENTIFIER = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")
_DEFINED = re.compile(r"^\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*:", re.MULTILINE)


@dataclass(frozen=True)
class CheckedStream:
    """One expected stream, where it was assembled and both assemblers' bytes."""

    where: str
    address: int
    ours: bytes
    gnu: bytes


def _referenced(source: str, symbols: dict[str, int]) -> dict[str, int]:
    """The image symbols ``source`` names and does not define itself."""
    defined = set(_DEFINED.findall(source))
    names = set(_IDENTIFIER.findall(source)) - defined
    return {name: symbols[name] for name in names if name in symbols}


def _phases(case: Case) -> list[tuple[str, str, PhaseExpectation]]:
    """(mode, phase name, expectation) of every phase of ``case`` that expects text."""
    expect = case.expect
    found = [("boot", "boot", expect.boot), ("boot", "boot_cpu", expect.boot_cpu)]
    if expect.late is not None:
        found += [("late", name, getattr(expect.late, name)) for name in ("load", "apply",
                                                                           "revert")]
    return [(mode, name, phase) for mode, name, phase in found
            if phase is not None and phase.text]


def _checked_streams() -> tuple[list[CheckedStream], list[str]]:
    corpus = load_corpus()
    checked: list[CheckedStream] = []
    unresolved: list[str] = []
    for case in corpus.cases:
        for mode, name, expectation in _phases(case):
            dialect = next((d for d in case.dialects
                            if not not_applicable(case, ReferencePatcher(d), mode)), None)
            if dialect is None or not has_mode(case, mode):
                continue
            outcome = run_case(case, corpus.catalog, mode=mode, patcher=ReferencePatcher(dialect))
            symbols = dict(outcome.symbols)
            for stream in expectation.text:
                where = f"{case.id}::{name}:{stream.label} ({dialect})"
                address = symbols.get(stream.label)
                if address is None:
                    unresolved.append(where)
                    continue
                source = stream.asm if stream.asm.endswith("\n") else stream.asm + "\n"
                ours = assemble(source, base=address, symbols=symbols).code
                gnu = gnu_assemble(source, address, _referenced(source, symbols))
                checked.append(CheckedStream(where, address, ours, gnu))
    return checked, unresolved


def test_every_expected_stream_matches_gnu_as(capsys: pytest.CaptureFixture[str]) -> None:
    checked, unresolved = _checked_streams()
    mismatches = [f"{c.where} at {c.address:#x}: ours {c.ours.hex()} gnu {c.gnu.hex()}"
                  for c in checked if c.ours != c.gnu]
    with capsys.disabled():
        print(f"\nGNU as check: {len(checked)} expected streams, {len(mismatches)} mismatches")
    assert len(checked) >= 180
    assert mismatches == []
    assert unresolved == []
