"""PC-relative classes: range ends, hand-derived encodings, capstone agreement, laws."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_altpatch.a64.pcrel import BY_NAME, TABLE, decode_target, pc_relative_class, retarget
from pytest_altpatch.errors import EncodingError

from .capstone_view import CapstoneView


def _imm(offset: int, scale: int, bits: int) -> int:
    """Two's complement ``offset >> scale`` in ``bits`` bits (the Arm ARM's imm field)."""
    return (offset >> scale) & ((1 << bits) - 1)


@dataclass(frozen=True)
class HandCase:
    """One class with an example word and a by-hand encoder from the Arm ARM layout."""

    name: str
    word: int  # the class's fixed bits plus registers/condition, immediate zero
    mnemonic: str  # what capstone calls it
    low: int  # most negative byte offset
    high: int  # most positive byte offset
    encode: Callable[[int], int]  # offset -> full word, derived from the field table
    error: str


# Derivations (Arm ARM DDI 0487, C4.1 encoding index):
#  B      0 00101 imm26            -> 0x14000000 | imm26,  offset = imm26 * 4, +-128 MiB
#  BL     1 00101 imm26            -> 0x94000000 | imm26
#  B.cond 0101010 0 imm19 0 cond   -> 0x54000000 | imm19 << 5 | cond (NE = 0b0001)
#  BC.cond 0101010 0 imm19 1 cond  -> 0x54000010 | imm19 << 5 | cond (GE = 0b1010)
#  CBZ    sf 011010 0 imm19 Rt     -> sf=1, Rt=x3: 0xB4000003 | imm19 << 5, +-1 MiB
#  CBNZ   sf 011010 1 imm19 Rt     -> sf=0, Rt=w7: 0x35000007 | imm19 << 5
#  TBZ    b5 011011 0 b40 imm14 Rt -> bit 33 of x2: b5=1,b40=00001: 0xB6080002 | imm14 << 5
#  TBNZ   b5 011011 1 b40 imm14 Rt -> bit 5 of w9: 0x37280009 | imm14 << 5, +-32 KiB
#  ADR    0 immlo 10000 immhi Rd   -> x4: 0x10000004 | (imm & 3) << 29 | (imm >> 2) << 5
#  ADRP   1 immlo 10000 immhi Rd   -> x5: 0x90000005 | same split of (page offset >> 12)
#  LDR lit opc 011 V 00 imm19 Rt   -> W (00,0) 0x18, X (01,0) 0x58, LDRSW (10,0) 0x98,
#                                     PRFM (11,0) 0xD8, S (00,1) 0x1C, D (01,1) 0x5C,
#                                     Q (10,1) 0x9C in the top byte; Rt = 1
def _split21(imm: int) -> int:
    return (imm & 3) << 29 | (imm >> 2) << 5


MIB = 1 << 20
HAND: tuple[HandCase, ...] = (
    HandCase("b", 0x14000000, "b", -128 * MIB, 128 * MIB - 4,
             lambda o: 0x14000000 | _imm(o, 2, 26), "BRANCH_OUT_OF_RANGE"),
    HandCase("bl", 0x94000000, "bl", -128 * MIB, 128 * MIB - 4,
             lambda o: 0x94000000 | _imm(o, 2, 26), "BRANCH_OUT_OF_RANGE"),
    HandCase("b.cond", 0x54000001, "b.ne", -MIB, MIB - 4,
             lambda o: 0x54000001 | _imm(o, 2, 19) << 5, "BRANCH_OUT_OF_RANGE"),
    HandCase("bc.cond", 0x5400001A, "bc.ge", -MIB, MIB - 4,
             lambda o: 0x5400001A | _imm(o, 2, 19) << 5, "BRANCH_OUT_OF_RANGE"),
    HandCase("cbz", 0xB4000003, "cbz", -MIB, MIB - 4,
             lambda o: 0xB4000003 | _imm(o, 2, 19) << 5, "BRANCH_OUT_OF_RANGE"),
    HandCase("cbnz", 0x35000007, "cbnz", -MIB, MIB - 4,
             lambda o: 0x35000007 | _imm(o, 2, 19) << 5, "BRANCH_OUT_OF_RANGE"),
    HandCase("tbz", 0xB6080002, "tbz", -32 * 1024, 32 * 1024 - 4,
             lambda o: 0xB6080002 | _imm(o, 2, 14) << 5, "BRANCH_OUT_OF_RANGE"),
    HandCase("tbnz", 0x37280009, "tbnz", -32 * 1024, 32 * 1024 - 4,
             lambda o: 0x37280009 | _imm(o, 2, 14) << 5, "BRANCH_OUT_OF_RANGE"),
    HandCase("adr", 0x10000004, "adr", -MIB, MIB - 1,
             lambda o: 0x10000004 | _split21(_imm(o, 0, 21)), "ADR_OUT_OF_RANGE"),
    HandCase("adrp", 0x90000005, "adrp", -4096 * MIB, 4096 * MIB - 4096,
             lambda o: 0x90000005 | _split21(_imm(o, 12, 21)), "ADRP_OUT_OF_RANGE"),
    HandCase("ldr.w", 0x18000001, "ldr", -MIB, MIB - 4,
             lambda o: 0x18000001 | _imm(o, 2, 19) << 5, "LITERAL_OUT_OF_RANGE"),
    HandCase("ldr.x", 0x58000001, "ldr", -MIB, MIB - 4,
             lambda o: 0x58000001 | _imm(o, 2, 19) << 5, "LITERAL_OUT_OF_RANGE"),
    HandCase("ldrsw", 0x98000001, "ldrsw", -MIB, MIB - 4,
             lambda o: 0x98000001 | _imm(o, 2, 19) << 5, "LITERAL_OUT_OF_RANGE"),
    HandCase("prfm", 0xD8000001, "prfm", -MIB, MIB - 4,
             lambda o: 0xD8000001 | _imm(o, 2, 19) << 5, "LITERAL_OUT_OF_RANGE"),
    HandCase("ldr.s", 0x1C000001, "ldr", -MIB, MIB - 4,
             lambda o: 0x1C000001 | _imm(o, 2, 19) << 5, "LITERAL_OUT_OF_RANGE"),
    HandCase("ldr.d", 0x5C000001, "ldr", -MIB, MIB - 4,
             lambda o: 0x5C000001 | _imm(o, 2, 19) << 5, "LITERAL_OUT_OF_RANGE"),
    HandCase("ldr.q", 0x9C000001, "ldr", -MIB, MIB - 4,
             lambda o: 0x9C000001 | _imm(o, 2, 19) << 5, "LITERAL_OUT_OF_RANGE"),
)
IDS = [case.name for case in HAND]
# Far from zero and from 2**64 so both range ends are reachable without wrapping.
PC = 0x0000_4000_0000_0000 + 0x7FC


def test_hand_table_covers_every_class() -> None:
    assert sorted(case.name for case in HAND) == sorted(cls.name for cls in TABLE)


@pytest.mark.parametrize("case", HAND, ids=IDS)
def test_offset_range_matches_arm_arm(case: HandCase) -> None:
    assert BY_NAME[case.name].offset_range == (case.low, case.high)


@pytest.mark.parametrize("case", HAND, ids=IDS)
@pytest.mark.parametrize("end", ["low", "high", "zero", "one_step"])
def test_retarget_at_range_ends_matches_hand_encoding_and_capstone(
    case: HandCase, end: str, cs: CapstoneView
) -> None:
    step = BY_NAME[case.name].alignment
    offset = {"low": case.low, "high": case.high, "zero": 0, "one_step": step}[end]
    origin = PC & ~0xFFF if case.name == "adrp" else PC
    target = origin + offset
    word = retarget(case.word, PC, target)
    assert word == case.encode(offset)
    assert pc_relative_class(word) is BY_NAME[case.name]
    assert decode_target(word, PC) == target
    mnemonic, _, imm = cs.decode(word, PC)
    assert mnemonic == case.mnemonic
    assert imm == target


@pytest.mark.parametrize("case", HAND, ids=IDS)
def test_one_past_each_end_raises_the_class_error(case: HandCase) -> None:
    step = BY_NAME[case.name].alignment
    origin = PC & ~0xFFF if case.name == "adrp" else PC
    for offset in (case.low - step, case.high + step):
        with pytest.raises(EncodingError) as caught:
            retarget(case.word, PC, origin + offset)
        assert caught.value.code == case.error


def test_known_arm_arm_encodings() -> None:
    # b .+0x7fffffc: imm26 = 0x1ffffff -> 0x14000000 | 0x1ffffff
    assert retarget(0x14000000, 0x1000, 0x1000 + 0x7FFFFFC) == 0x15FFFFFF
    # bl .-0x8000000: imm26 = 0x2000000 (sign bit only)
    assert retarget(0x94000000, 0x8000000, 0) == 0x96000000
    # b.eq .+8: imm19 = 2 -> 2 << 5 = 0x40
    assert retarget(0x54000000, 0x100, 0x108) == 0x54000040
    # tbnz w0, #31, .-4: b40=11111 (bits 23:19 = 0xf8 << 16), imm14 = 0x3fff -> 0x7ffe0
    assert retarget(0x37F80000, 0x100, 0xFC) == 0x37FFFFE0
    # adr x0, .+1: immlo = 1 -> bit 29
    assert retarget(0x10000000, 0x100, 0x101) == 0x30000000
    # adrp x0, page+1: immlo = 1 -> bit 29 set, bit 31 set
    assert retarget(0x90000000, 0xFFC, 0x1000) == 0xB0000000
    # ldr x0, .-4: imm19 = 0x7ffff -> 0xffffe0
    assert retarget(0x58000000, 0x100, 0xFC) == 0x58FFFFE0


@pytest.mark.parametrize("case", [c for c in HAND if c.name not in {"adr", "adrp"}],
                         ids=lambda c: c.name)
def test_misaligned_target_raises(case: HandCase) -> None:
    with pytest.raises(EncodingError) as caught:
        retarget(case.word, PC, PC + 2)
    assert caught.value.code == "MISALIGNED_TARGET"


def test_adrp_accepts_any_address_in_the_target_page() -> None:
    pc = 0x40000FFC  # last word of its page
    for target in (0x40001000, 0x40001ABC, 0x40001FFF):
        assert decode_target(retarget(0x90000000, pc, target), pc) == 0x40001000
    for target in (0x3FFFF000, 0x3FFFF7FF, 0x3FFFFFFF):
        assert decode_target(retarget(0x90000000, pc, target), pc) == 0x3FFFF000


def test_adr_at_last_word_of_page_reaches_neighbour_pages() -> None:
    pc = 0x40000FFC
    assert decode_target(retarget(0x10000000, pc, 0x40001000), pc) == 0x40001000
    assert decode_target(retarget(0x10000000, pc, 0x3FFFFFFF), pc) == 0x3FFFFFFF


def test_retarget_keeps_registers_condition_and_bit_number() -> None:
    word = 0xB6080002 | (5 << 5)  # tbz x2, #33, .+20
    moved = retarget(word, 0x1000, 0x1000 - 0x40)
    keep = ~(0x3FFF << 5) & 0xFFFFFFFF
    assert moved & keep == word & keep


def test_addresses_wrap_modulo_2_to_the_64() -> None:
    top = (1 << 64) - 4
    word = retarget(0x14000000, top, 0x8)  # from the last word to the first page
    assert word == 0x14000003
    assert decode_target(word, top) == 0x8


@pytest.mark.parametrize("word", [0xD503201F, 0xD65F03C0, 0x8B000000, -1, 1 << 32])
def test_non_pc_relative_words_raise_not_pc_relative(word: int) -> None:
    assert pc_relative_class(word) is None
    with pytest.raises(EncodingError) as caught:
        decode_target(word, 0)
    assert caught.value.code == "NOT_PC_RELATIVE"
    with pytest.raises(EncodingError):
        retarget(word, 0, 0)


def test_encode_offset_rejects_a_word_of_another_class() -> None:
    with pytest.raises(EncodingError) as caught:
        BY_NAME["b"].encode_offset(0x94000000, 0)
    assert caught.value.code == "NOT_PC_RELATIVE"


def test_unaligned_instruction_address_is_rejected() -> None:
    with pytest.raises(EncodingError) as caught:
        retarget(0x14000000, 0x1002, 0x2000)
    assert caught.value.code == "MISALIGNED_TARGET"


@st.composite
def class_and_offset(draw: st.DrawFn) -> tuple[str, int, int]:
    case = draw(st.sampled_from(HAND))
    cls = BY_NAME[case.name]
    low, high = cls.offset_range
    step = cls.alignment
    offset = draw(st.integers(low // step, high // step)) * step
    return case.name, case.word, offset


@settings(max_examples=400, deadline=None)
@given(class_and_offset())
def test_decode_of_encode_is_identity_over_full_range(sample: tuple[str, int, int]) -> None:
    name, word, offset = sample
    cls = BY_NAME[name]
    encoded = cls.encode_offset(word, offset)
    assert cls.decode_offset(encoded) == offset
    assert next(case for case in HAND if case.name == name).encode(offset) == encoded


@settings(max_examples=200, deadline=None)
@given(class_and_offset(), st.integers(0, (1 << 62) // 4).map(lambda n: n * 4 + (1 << 62)))
def test_retarget_then_decode_target_round_trips(
    sample: tuple[str, int, int], pc: int
) -> None:
    name, word, offset = sample
    origin = pc & ~0xFFF if name == "adrp" else pc
    assert decode_target(retarget(word, pc, origin + offset), pc) == origin + offset
