"""Generated programs: agreement with GNU as, and assemble/disassemble stability."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_altpatch.a64 import assemble, disassemble

from . import gnu_as
from .programs import generate_program


@pytest.mark.skipif(not gnu_as.AVAILABLE, reason=gnu_as.MISSING_REASON)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 60))
def test_generated_programs_assemble_like_gnu_as(seed: int, length: int) -> None:
    # Labels, local labels, ADRP/ADR/literals and :lo12: at bases near page boundaries,
    # linked by ld -Ttext=BASE so GNU resolves the same PC-relative forms we encode.
    program = generate_program(random.Random(seed), length)
    ours = assemble(program.source, program.base, program.symbols).code
    theirs = gnu_as.gnu_assemble(program.source, program.base, program.symbols)
    if ours != theirs:
        listing = "\n".join(
            f"{program.base + i:#x}: ours {ours[i:i + 4][::-1].hex()} "
            f"gnu {theirs[i:i + 4][::-1].hex()}"
            for i in range(0, max(len(ours), len(theirs)), 4)
            if ours[i:i + 4] != theirs[i:i + 4])
        pytest.fail(f"differs from GNU as at base {program.base:#x}:\n{listing}\n"
                    f"{program.source}")


@pytest.mark.skipif(not gnu_as.AVAILABLE, reason=gnu_as.MISSING_REASON)
def test_last_word_of_page_adrp_and_adr_agree_with_gnu_as() -> None:
    source = "adr x0, prev\nadrp x1, prev\nadrp x2, next\nadr x3, next\n"
    for base in (0x400FF4, 0x400FFC - 12, 0x7FFFFFF0):
        symbols = {"prev": (base & ~0xFFF) - 0x10, "next": (base & ~0xFFF) + 0x1008}
        assert assemble(source, base, symbols).code == gnu_as.gnu_assemble(
            source, base, symbols)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 50))
def test_assemble_disassemble_assemble_is_stable(seed: int, length: int) -> None:
    program = generate_program(random.Random(seed), length, data=False)
    first = assemble(program.source, program.base, program.symbols)
    listing = disassemble(first.code, first.base)
    again = assemble("\n".join(line.text for line in listing), first.base)
    assert again.code == first.code
    assert disassemble(again.code, again.base) == listing
