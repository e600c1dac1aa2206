"""Non-PC-relative immediate fields: the ``:lo12:`` and MOVW relocation targets.

The assembler uses these for ``add x0, x0, :lo12:sym`` and ``ldr x1, [x0, :lo12:sym]``,
and the ELF loader for ADD_ABS_LO12_NC, LDST*_ABS_LO12_NC and MOVW_UABS_G*.  Each
setter checks that the word really has the field and that the value fits; it never
masks a value down to size.

Layouts (Arm ARM DDI 0487, "Data processing -- immediate" and "Loads and stores"):

* ADD/SUB (immediate): ``sf op S 100010 sh imm12(21:10) Rn Rd``
* load/store (unsigned immediate): ``size(31:30) 111 V(26) 01 opc(23:22) imm12(21:10) Rn Rt``;
  the byte offset is ``imm12 << scale`` where scale is ``size`` for general registers
  and ``opc<1>:size`` for SIMD/FP registers (Q registers: scale 4).
* move wide: ``sf opc(30:29) 100101 hw(22:21) imm16(20:5) Rd`` with opc 00 MOVN,
  10 MOVZ, 11 MOVK (01 is unallocated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pytest_altpatch.errors import EncodingError

_WORD_MASK: Final = (1 << 32) - 1


@dataclass(frozen=True)
class ImmediateForm:
    """An instruction form with a plain unsigned immediate field."""

    name: str
    mask: int
    value: int
    lsb: int
    width: int

    def matches(self, word: int) -> bool:
        """Whether ``word`` is an instance of this form."""
        return 0 <= word <= _WORD_MASK and (word & self.mask) == self.value

    def insert(self, word: int, field_value: int) -> int:
        """``word`` with the field replaced by ``field_value`` (already range-checked)."""
        field_mask = ((1 << self.width) - 1) << self.lsb
        return (word & ~field_mask & _WORD_MASK) | (field_value << self.lsb)


ADD_SUB_IMM: Final = ImmediateForm("add/sub (immediate)", 0x1F800000, 0x11000000, 10, 12)
LDST_UNSIGNED_IMM: Final = ImmediateForm(
    "load/store (unsigned immediate)", 0x3B000000, 0x39000000, 10, 12
)
MOVE_WIDE: Final = ImmediateForm("move wide (immediate)", 0x1F800000, 0x12800000, 5, 16)


def _require(form: ImmediateForm, word: int) -> None:
    if not form.matches(word):
        shown = f"{word:#010x}" if 0 <= word <= _WORD_MASK else repr(word)
        raise EncodingError("NOT_IMMEDIATE_FORM", f"{shown} is not a {form.name} instruction")


def set_add_imm12(word: int, value: int) -> int:
    """ADD/SUB (immediate) ``word`` with imm12 set to ``value`` (0..4095)."""
    _require(ADD_SUB_IMM, word)
    if not 0 <= value <= 0xFFF:
        raise EncodingError("ASM_OUT_OF_RANGE", f"add/sub immediate {value:#x} is not in 0..0xfff")
    return ADD_SUB_IMM.insert(word, value)


def ldst_access_size(word: int) -> int:
    """Bytes accessed by a load/store (unsigned immediate) ``word``: 1, 2, 4, 8 or 16.

    PRFM counts as 8 (its offset is scaled like a 64-bit load).
    """
    _require(LDST_UNSIGNED_IMM, word)
    size = word >> 30
    simd = (word >> 26) & 1
    opc = (word >> 22) & 3
    if simd:
        # opc<1> set selects the 128-bit Q form, which only exists with size 00.
        if opc & 2:
            if size != 0:
                raise EncodingError(
                    "NOT_IMMEDIATE_FORM", f"{word:#010x} is an unallocated SIMD load/store"
                )
            return 16
        return 1 << size
    # General registers: size 10/opc 11 and size 11/opc 11 are unallocated.
    if opc == 3 and size >= 2:
        raise EncodingError("NOT_IMMEDIATE_FORM", f"{word:#010x} is an unallocated load/store")
    return 1 << size


def set_ldst_imm12(word: int, value: int) -> int:
    """Load/store (unsigned immediate) ``word`` with byte offset ``value``.

    ``value`` must be a multiple of the access size and at most ``4095 * size``.
    """
    size = ldst_access_size(word)
    if value % size:
        raise EncodingError(
            "MISALIGNED_TARGET", f"offset {value:#x} is not a multiple of the access size {size}"
        )
    if not 0 <= value // size <= 0xFFF:
        raise EncodingError(
            "ASM_OUT_OF_RANGE",
            f"offset {value:#x} is not in 0..{0xFFF * size:#x} for a {size}-byte access",
        )
    return LDST_UNSIGNED_IMM.insert(word, value // size)


def set_movw_imm16(word: int, value: int) -> int:
    """MOVZ/MOVN/MOVK ``word`` with imm16 set to ``value`` (0..0xffff)."""
    _require(MOVE_WIDE, word)
    if (word >> 29) & 3 == 1:
        raise EncodingError("NOT_IMMEDIATE_FORM", f"{word:#010x} is an unallocated move wide")
    if not 0 <= value <= 0xFFFF:
        raise EncodingError(
            "ASM_OUT_OF_RANGE", f"move wide immediate {value:#x} is not in 0..0xffff"
        )
    return MOVE_WIDE.insert(word, value)


__all__ = [
    "ADD_SUB_IMM",
    "LDST_UNSIGNED_IMM",
    "MOVE_WIDE",
    "ImmediateForm",
    "ldst_access_size",
    "set_add_imm12",
    "set_ldst_imm12",
    "set_movw_imm16",
]
