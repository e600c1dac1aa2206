"""The assembler keeps words that cannot depend on where or with what they are assembled.

A word is kept by mnemonic and operand texts only when its statement named no symbol
(``.``, labels, equates, external symbols) and its encoder is not PC-relative; these
tests show each excluded kind really does change, so keeping it would be wrong.
"""

from __future__ import annotations

import pytest

from pytest_altpatch.a64 import asm as asm_module
from pytest_altpatch.a64 import assemble
from pytest_altpatch.a64.encoders import ENCODERS, PC_RELATIVE_ENCODERS, own_encoder
from pytest_altpatch.errors import AsmError


@pytest.fixture(autouse=True)
def _cold_words() -> None:
    asm_module._POSITION_FREE.clear()
    asm_module._MEMO.clear()


def _word(source: str, base: int = 0x1000, symbols: dict[str, int] | None = None) -> int:
    return int.from_bytes(assemble(source, base, symbols).code[-4:], "little")


# One statement per own encoder's mnemonic family; the PC-relative ones move with it.
PC_RELATIVE = ["b 0x2000", "bl 0x2000", "b.ne 0x2000", "cbz x0, 0x2000",
               "tbnz w1, #3, 0x2000", "adr x0, 0x2000", "adrp x0, 0x200000"]
LITERALS = ["ldr x0, 0x2000", "ldrsw x1, 0x2000", "prfm pldl1keep, 0x2000", "ldr q0, 0x2000"]
POSITION_FREE = ["csdb", "sb", "bti c", "udf #7", "ldadd x0, x1, [x2]", "casal w0, w1, [x2]",
                 "mov x0, #5", "add x0, x1, #3", "ldr x0, [x1, #8]", "ret", "nop"]


@pytest.mark.parametrize("statement", PC_RELATIVE + LITERALS)
def test_pc_relative_words_differ_by_address_and_are_not_kept(statement: str) -> None:
    first, second = _word(statement, 0x1000), _word(statement, 0x5000)
    assert first != second
    assert asm_module._POSITION_FREE == {}


@pytest.mark.parametrize("statement", POSITION_FREE)
def test_position_free_words_are_kept_and_equal_anywhere(statement: str) -> None:
    first = _word(statement, 0x1000)
    assert len(asm_module._POSITION_FREE) == 1
    assert _word(statement, 0x7654_3210) == first  # (from the kept word)
    asm_module._POSITION_FREE.clear()
    asm_module._MEMO.clear()
    assert _word(statement, 0x7654_3210) == first  # encoded afresh at the other address


def test_the_excluded_encoders_are_exactly_the_ones_that_place_a_target() -> None:
    # Every encoder of a mnemonic in PC_RELATIVE above is excluded, and nothing else is.
    placing = {own_encoder(statement.split()[0]) for statement in PC_RELATIVE}
    assert placing == set(PC_RELATIVE_ENCODERS)
    assert set(PC_RELATIVE_ENCODERS) <= set(ENCODERS.values())


@pytest.mark.parametrize(("first", "second"), [
    (("mov x0, #(. & 0xff)", 0x1010, None), ("mov x0, #(. & 0xff)", 0x1020, None)),
    ((".equ V, 3\nmov x0, #V", 0x1000, None), (".equ V, 4\nmov x0, #V", 0x1000, None)),
    (("mov x0, #s", 0x1000, {"s": 1}), ("mov x0, #s", 0x1000, {"s": 2})),
    (("add x0, x0, :lo12:s", 0x1000, {"s": 0x10}), ("add x0, x0, :lo12:s", 0x1000,
                                                    {"s": 0x20})),
    (("x: mov x0, #x", 0x1000, None), ("x: mov x0, #x", 0x1004, None)),
])
def test_a_statement_naming_a_symbol_is_never_kept(
        first: tuple[str, int, dict[str, int] | None],
        second: tuple[str, int, dict[str, int] | None]) -> None:
    assert _word(*first) != _word(*second)
    assert asm_module._POSITION_FREE == {}


def test_an_error_is_not_kept_and_stays_located_at_its_own_line() -> None:
    bad = "add x0, x0, #5000"
    for source, line in ((bad, 1), (f"nop\nnop\n{bad}", 3)):
        with pytest.raises(AsmError) as raised:
            assemble(source)
        assert raised.value.location is not None
        assert raised.value.location.line == line
    assert ("add", ("x0", "x0", "#5000")) not in asm_module._POSITION_FREE
