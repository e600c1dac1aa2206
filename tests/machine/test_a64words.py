"""The hand-derived encodings of the test programs, checked against capstone."""

from __future__ import annotations

import capstone
import pytest

from .a64words import (
    DMB_ISH,
    DSB_ISH,
    IC_IALLU,
    IC_IALLUIS,
    ISB,
    NOP,
    RET,
    add_imm,
    b,
    b_ne,
    bl,
    brk,
    cbnz_w,
    cbnz_x,
    cbz_w,
    dc_civac,
    dc_cvac,
    dc_cvau,
    hvc,
    ic_ivau,
    ldar_w,
    ldr_w,
    movk,
    movz,
    mrs,
    smc,
    stlr_w,
    str_w,
    str_w_post,
    sub_imm,
    subs_imm,
    svc,
    udf,
)

PC = 0x400000
CASES = [
    (NOP, "nop", ""),
    (ISB, "isb", ""),
    (DSB_ISH, "dsb", "ish"),
    (DMB_ISH, "dmb", "ish"),
    (RET, "ret", ""),
    (movz(3, 0x1234), "mov", "x3, #0x1234"),
    (movz(5, 1, wide=False), "mov", "w5, #1"),
    (movk(3, 0x60, 1), "movk", "x3, #0x60, lsl #16"),
    (add_imm(0, 1, 12), "add", "x0, x1, #0xc"),
    (sub_imm(9, 9, 1), "sub", "x9, x9, #1"),
    (subs_imm(7, 7, 1), "subs", "x7, x7, #1"),
    (ldr_w(6, 4, 8), "ldr", "w6, [x4, #8]"),
    (str_w(2, 1), "str", "w2, [x1]"),
    (str_w_post(2, 1, 4), "str", "w2, [x1], #4"),
    (ldar_w(9, 4), "ldar", "w9, [x4]"),
    (stlr_w(9, 4), "stlr", "w9, [x4]"),
    (b(PC, PC + 0x40), "b", "#0x400040"),
    (bl(PC, PC - 0x800), "bl", "#0x3ff800"),
    (cbz_w(PC, 6, PC - 4), "cbz", "w6, #0x3ffffc"),
    (cbnz_w(PC, 6, PC + 8), "cbnz", "w6, #0x400008"),
    (cbnz_x(PC, 9, PC - 8), "cbnz", "x9, #0x3ffff8"),
    (b_ne(PC, PC - 12), "b.ne", "#0x3ffff4"),
    (dc_cvau(3), "dc", "cvau, x3"),
    (dc_cvac(3), "dc", "cvac, x3"),
    (dc_civac(3), "dc", "civac, x3"),
    (ic_ivau(3), "ic", "ivau, x3"),
    (IC_IALLU, "ic", "iallu"),
    (IC_IALLUIS, "ic", "ialluis"),
    (svc(1), "svc", "#1"),
    (hvc(0), "hvc", "#0"),
    (smc(1), "smc", "#1"),
    (brk(0x800), "brk", "#0x800"),
    (mrs(0, 3, 0, 0, 0, 0), "mrs", "x0, midr_el1"),
    (mrs(0, 3, 3, 0, 0, 1), "mrs", "x0, ctr_el0"),
    (mrs(0, 3, 0, 0, 6, 0), "mrs", "x0, id_aa64isar0_el1"),
]


@pytest.mark.parametrize(("word", "mnemonic", "operands"), CASES,
                         ids=[f"{m} {o}" for _, m, o in CASES])
def test_hand_encoding_decodes_as_intended(word: int, mnemonic: str, operands: str) -> None:
    disassembler = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    (insn,) = disassembler.disasm(word.to_bytes(4, "little"), PC)
    assert (insn.mnemonic, insn.op_str) == (mnemonic, operands)


def test_udf_is_not_decodable_by_capstone_as_a_real_instruction() -> None:
    disassembler = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    decoded = list(disassembler.disasm(udf(0).to_bytes(4, "little"), PC))
    assert decoded == [] or decoded[0].mnemonic == "udf"
