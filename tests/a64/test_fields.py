"""Plain immediate fields (the :lo12: and MOVW relocation targets)."""

from __future__ import annotations

import pytest

from pytest_altpatch.a64.fields import (
    ldst_access_size,
    set_add_imm12,
    set_ldst_imm12,
    set_movw_imm16,
)
from pytest_altpatch.errors import EncodingError

from .capstone_view import CapstoneView

# Load/store unsigned immediate: size(31:30) 111 V(26) 01 opc(23:22) imm12 Rn Rt.
# Words below have Rn = x1 (1 << 5), Rt = 0, imm12 = 0; size/V/opc give the access size.
LDST_FORMS = [
    ("strb w0, [x1]", 0x39000020, 1, "strb"),
    ("ldrh w0, [x1]", 0x79400020, 2, "ldrh"),
    ("ldr w0, [x1]", 0xB9400020, 4, "ldr"),
    ("ldrsw x0, [x1]", 0xB9800020, 4, "ldrsw"),
    ("str x0, [x1]", 0xF9000020, 8, "str"),
    ("prfm pldl1keep, [x1]", 0xF9800020, 8, "prfm"),
    ("ldr b0, [x1]", 0x3D400020, 1, "ldr"),
    ("ldr h0, [x1]", 0x7D400020, 2, "ldr"),
    ("ldr s0, [x1]", 0xBD400020, 4, "ldr"),
    ("ldr d0, [x1]", 0xFD400020, 8, "ldr"),
    ("ldr q0, [x1]", 0x3DC00020, 16, "ldr"),
    ("str q0, [x1]", 0x3D800020, 16, "str"),
]


@pytest.mark.parametrize(("text", "word", "size", "mnemonic"), LDST_FORMS,
                         ids=[f[0] for f in LDST_FORMS])
def test_ldst_access_size_and_largest_offset_agree_with_capstone(
    text: str, word: int, size: int, mnemonic: str, cs: CapstoneView
) -> None:
    assert ldst_access_size(word) == size
    top = set_ldst_imm12(word, 0xFFF * size)
    assert top == word | 0xFFF << 10
    got_mnemonic, op_str, _ = cs.decode(top, 0)
    assert got_mnemonic == mnemonic
    assert op_str.endswith(f"#{0xFFF * size:#x}]")


@pytest.mark.parametrize(("text", "word", "size", "mnemonic"), LDST_FORMS,
                         ids=[f[0] for f in LDST_FORMS])
def test_ldst_offset_past_end_or_misaligned_raises(
    text: str, word: int, size: int, mnemonic: str
) -> None:
    with pytest.raises(EncodingError) as caught:
        set_ldst_imm12(word, 0x1000 * size)
    assert caught.value.code == "ASM_OUT_OF_RANGE"
    with pytest.raises(EncodingError) as caught:
        set_ldst_imm12(word, -size)
    assert caught.value.code == "ASM_OUT_OF_RANGE"
    if size > 1:
        with pytest.raises(EncodingError) as caught:
            set_ldst_imm12(word, size + 1)
        assert caught.value.code == "MISALIGNED_TARGET"


def test_add_imm12_sets_only_the_field(cs: CapstoneView) -> None:
    # add x0, x1, #0 = sf=1 op=0 S=0 100010 sh=0: 0x91000000 | Rn=1 << 5
    word = set_add_imm12(0x91000020, 0xFFF)
    assert word == 0x91000020 | 0xFFF << 10
    assert cs.decode(word, 0)[:2] == ("add", "x0, x1, #0xfff")
    with pytest.raises(EncodingError) as caught:
        set_add_imm12(0x91000020, 0x1000)
    assert caught.value.code == "ASM_OUT_OF_RANGE"


def test_movw_imm16_sets_movz_movk_movn(cs: CapstoneView) -> None:
    # movz x0, #0, lsl #16: sf=1 opc=10 100101 hw=01 -> 0xD2A00000
    assert cs.decode(set_movw_imm16(0xD2A00000, 0xBEEF), 0)[:2] == ("mov", "x0, #0xbeef0000")
    # movk w3, #0: sf=0 opc=11 -> 0x72800003
    assert set_movw_imm16(0x72800003, 0xFFFF) == 0x72800003 | 0xFFFF << 5
    with pytest.raises(EncodingError) as caught:
        set_movw_imm16(0xD2A00000, 0x10000)
    assert caught.value.code == "ASM_OUT_OF_RANGE"


@pytest.mark.parametrize(("setter", "word"), [
    (set_add_imm12, 0xD503201F),      # nop
    (set_ldst_imm12, 0x58000000),     # ldr literal: no imm12 field
    (set_movw_imm16, 0x91000000),     # add immediate
    (set_movw_imm16, 0x32800000),     # move wide opc=01 is unallocated
    (set_ldst_imm12, 0x7DC00020),     # SIMD opc<1> with size 01: unallocated
])
def test_wrong_instruction_form_raises_not_immediate_form(setter: object, word: int) -> None:
    with pytest.raises(EncodingError) as caught:
        setter(word, 0)  # type: ignore[operator]
    assert caught.value.code == "NOT_IMMEDIATE_FORM"
