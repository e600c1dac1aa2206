"""Every relocation recipe at both ends of its range and one past.

Expected words are hand-derived from the Arm ARM encodings and the AArch64 ELF ABI
(X = S + A - P for PC-relative types, Page(S + A) - Page(P) for ADRP):
B/BL imm26 = X >> 2 at [25:0]; B.cond/CBZ/LDR-literal imm19 = X >> 2 at [23:5];
TBZ imm14 = X >> 2 at [18:5]; ADR/ADRP immlo at [30:29], immhi at [23:5];
ADD imm12 at [21:10]; LDR/STR (unsigned offset) imm12 = lo12 / size at [21:10];
MOVZ/MOVK imm16 at [20:5].
"""

from __future__ import annotations

import struct

import pytest

from pytest_altpatch.errors import ElfError
from pytest_altpatch.image.relocations import BY_NAME, RECIPES, relocate

P = 0x2_0000_0000  # place: 8 GiB, page-aligned, so ADRP's -4 GiB stays positive


def apply(name: str, word: int, target: int, place: int = P) -> int:
    recipe = BY_NAME[name]
    fmt = {2: "<H", 4: "<I", 8: "<Q"}[recipe.width]
    (value,) = struct.unpack(fmt, relocate(recipe.rtype, struct.pack(fmt, word), place, target))
    return int(value)


def refused(name: str, word: int, target: int, place: int = P) -> str:
    with pytest.raises(ElfError) as info:
        apply(name, word, target, place)
    return info.value.code


# (type, initial word, (target, expected) at the low end, at the high end, one past each)
RANGED = [
    ("CALL26", 0x94000000, (P - 0x8000000, 0x96000000), (P + 0x7FFFFFC, 0x95FFFFFF),
     P - 0x8000004, P + 0x8000000),
    ("JUMP26", 0x14000000, (P - 0x8000000, 0x16000000), (P + 0x7FFFFFC, 0x15FFFFFF),
     P - 0x8000004, P + 0x8000000),
    ("CONDBR19", 0x54000000, (P - 0x100000, 0x54800000), (P + 0xFFFFC, 0x547FFFE0),
     P - 0x100004, P + 0x100000),
    ("CONDBR19", 0xB4000000, (P - 0x100000, 0xB4800000), (P + 0xFFFFC, 0xB47FFFE0),
     P - 0x100004, P + 0x100000),  # cbz x0
    ("TSTBR14", 0x36000000, (P - 0x8000, 0x36040000), (P + 0x7FFC, 0x3603FFE0),
     P - 0x8004, P + 0x8000),
    ("LD_PREL_LO19", 0x58000000, (P - 0x100000, 0x58800000), (P + 0xFFFFC, 0x587FFFE0),
     P - 0x100004, P + 0x100000),
    ("ADR_PREL_LO21", 0x10000000, (P - 0x100000, 0x10800000), (P + 0xFFFFF, 0x707FFFE0),
     P - 0x100001, P + 0x100000),
    ("ADR_PREL_PG_HI21", 0x90000000, (P - 0x100000000, 0x90800000),
     (P + 0xFFFFF000 + 0xABC, 0xF07FFFE0), P - 0x100001000, P + 0x100000000),
    ("MOVW_UABS_G0", 0xD2800000, (0, 0xD2800000), (0xFFFF, 0xD29FFFE0), -1, 0x10000),
    ("MOVW_UABS_G1", 0xF2A00000, (0, 0xF2A00000), (0xFFFFFFFF, 0xF2BFFFE0), -1, 1 << 32),
    ("MOVW_UABS_G2", 0xF2C00000, (0, 0xF2C00000), ((1 << 48) - 1, 0xF2DFFFE0), -1, 1 << 48),
    ("ABS32", 0, (-(1 << 31), 0x80000000), ((1 << 32) - 1, 0xFFFFFFFF), -(1 << 31) - 1,
     1 << 32),
    ("ABS16", 0, (-(1 << 15), 0x8000), ((1 << 16) - 1, 0xFFFF), -(1 << 15) - 1, 1 << 16),
    ("PREL32", 0, (P - (1 << 31), 0x80000000), (P + (1 << 32) - 1, 0xFFFFFFFF),
     P - (1 << 31) - 1, P + (1 << 32)),
    ("PREL16", 0, (P - (1 << 15), 0x8000), (P + (1 << 16) - 1, 0xFFFF), P - (1 << 15) - 1,
     P + (1 << 16)),
]


@pytest.mark.parametrize(("name", "word", "low", "high", "below", "above"), RANGED,
                         ids=[f"{row[0]}-{row[1]:08x}" for row in RANGED])
def test_checked_relocation_reaches_both_ends_and_refuses_one_past(
    name: str, word: int, low: tuple[int, int], high: tuple[int, int], below: int, above: int,
) -> None:
    assert apply(name, word, low[0]) == low[1]
    assert apply(name, word, high[0]) == high[1]
    assert refused(name, word, below) == "RELOC_OUT_OF_RANGE"
    assert refused(name, word, above) == "RELOC_OUT_OF_RANGE"


@pytest.mark.parametrize(
    ("name", "word", "target", "expected"),
    [
        # _NC forms keep the low bits silently: one past the checked range wraps.
        ("ADR_PREL_PG_HI21_NC", 0x90000000, P + 0x100000000, 0x90800000),
        ("ADR_PREL_PG_HI21_NC", 0x90000000, P + 0xFFFFF000, 0xF07FFFE0),
        ("MOVW_UABS_G0_NC", 0xD2800000, 0x12345, 0xD28468A0),
        ("MOVW_UABS_G1_NC", 0xF2A00000, 0x1_2345_0000, 0xF2A468A0),
        ("MOVW_UABS_G2_NC", 0xF2C00000, 0x1_2345_0000_0000, 0xF2C468A0),
        ("MOVW_UABS_G3", 0xF2E00000, 0xFFFF_0000_0000_0000, 0xF2FFFFE0),
        ("MOVW_UABS_G3", 0xF2E00000, 0, 0xF2E00000),
        ("ADD_ABS_LO12_NC", 0x91000000, 0x1234_5FFF, 0x913FFC00),
        ("ADD_ABS_LO12_NC", 0x91000000, 0x1234_5000, 0x91000000),
        ("LDST8_ABS_LO12_NC", 0x39400000, 0x7FFF, 0x397FFC00),  # ldrb w0, [x0]
        ("LDST16_ABS_LO12_NC", 0x79400000, 0x7FFE, 0x795FFC00),  # ldrh w0, [x0]
        ("LDST32_ABS_LO12_NC", 0xB9400000, 0x7FFC, 0xB94FFC00),  # ldr w0, [x0]
        ("LDST64_ABS_LO12_NC", 0xF9400000, 0x7FF8, 0xF947FC00),  # ldr x0, [x0]
        ("LDST64_ABS_LO12_NC", 0xF9400000, 0x8000, 0xF9400000),
        ("LDST128_ABS_LO12_NC", 0x3DC00000, 0x7FF0, 0x3DC3FC00),  # ldr q0, [x0]
        ("ABS64", 0, (1 << 64) - 1, (1 << 64) - 1),
        ("ABS64", 0, -(1 << 63), 1 << 63),
        ("PREL64", 0, P - 8, (1 << 64) - 8),
    ],
)
def test_unchecked_relocation_writes_the_low_bits(name: str, word: int, target: int,
                                                  expected: int) -> None:
    assert apply(name, word, target) == expected


@pytest.mark.parametrize(
    ("name", "word", "target"),
    [
        ("LDST16_ABS_LO12_NC", 0x79400000, 0x7FFF),
        ("LDST32_ABS_LO12_NC", 0xB9400000, 0x7FFE),
        ("LDST64_ABS_LO12_NC", 0xF9400000, 0x7FFC),
        ("LDST128_ABS_LO12_NC", 0x3DC00000, 0x7FF8),
        ("CALL26", 0x94000000, P + 2),
    ],
)
def test_misaligned_values_are_out_of_range(name: str, word: int, target: int) -> None:
    assert refused(name, word, target) == "RELOC_OUT_OF_RANGE"


def test_relocation_on_the_wrong_instruction_is_malformed() -> None:
    assert refused("CALL26", 0xD503201F, P) == "ELF_MALFORMED"  # a NOP is not a branch
    assert refused("ADR_PREL_PG_HI21", 0x10000000, P) == "ELF_MALFORMED"  # ADR, not ADRP
    assert refused("ADD_ABS_LO12_NC", 0xF9400000, P) == "ELF_MALFORMED"


def test_ldst_type_must_match_the_access_size() -> None:
    assert refused("LDST64_ABS_LO12_NC", 0xB9400000, 0x10) == "RELOC_UNSUPPORTED"


def test_unknown_type_is_unsupported_and_none_changes_nothing() -> None:
    with pytest.raises(ElfError) as info:
        relocate(999, bytes(4), P, P)
    assert info.value.code == "RELOC_UNSUPPORTED"
    assert relocate(0, b"\x01\x02", P, 0) == b"\x01\x02"


def test_every_listed_type_has_a_recipe() -> None:
    wanted = {"ABS64", "ABS32", "PREL32", "PREL64", "CALL26", "JUMP26", "CONDBR19", "TSTBR14",
              "ADR_PREL_LO21", "ADR_PREL_PG_HI21", "ADR_PREL_PG_HI21_NC", "ADD_ABS_LO12_NC",
              "LDST8_ABS_LO12_NC", "LDST16_ABS_LO12_NC", "LDST32_ABS_LO12_NC",
              "LDST64_ABS_LO12_NC", "LDST128_ABS_LO12_NC", "MOVW_UABS_G0", "MOVW_UABS_G0_NC",
              "MOVW_UABS_G1", "MOVW_UABS_G1_NC", "MOVW_UABS_G2", "MOVW_UABS_G2_NC",
              "MOVW_UABS_G3"}
    assert wanted <= set(BY_NAME)
    assert all(RECIPES[recipe.rtype] is recipe for recipe in BY_NAME.values())
