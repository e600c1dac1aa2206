"""PC-relative A64 instruction classes: decode a target, re-encode for a new place.

Every class is one row of :data:`TABLE` (mask/value identify it, ``fields`` say where
the immediate lives, ``scale`` how it is shifted into a byte offset).  Field layouts
follow the Arm ARM (DDI 0487) "Branches, exception generating and system
instructions" and "Loads and stores" encoding tables.  Re-encoding always checks
range and alignment and raises a coded :class:`EncodingError`; nothing is masked
silently, unlike the kernel's ``aarch64_set_branch_offset``.

Addresses are 64-bit: a target is ``(pc + offset) mod 2**64`` and the distance from
``pc`` to ``target`` is taken as a signed 64-bit difference, as the hardware does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pytest_altpatch.a64.granule import PAGE_SIZE, page_base
from pytest_altpatch.errors import EncodingError

ADDRESS_MASK: Final = (1 << 64) - 1
WORD_MASK: Final = (1 << 32) - 1


@dataclass(frozen=True)
class ImmField:
    """One contiguous bit field of an immediate: ``width`` bits starting at ``lsb``."""

    lsb: int
    width: int

    @property
    def mask(self) -> int:
        """The field's bits in place within the instruction word."""
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class PcRelClass:
    """One PC-relative instruction class and its immediate layout.

    ``fields`` are listed most significant first; their concatenation is the signed
    ``bits``-wide immediate, and ``imm << scale`` is the byte offset from the
    instruction (for ADRP: from the instruction's 4 KiB page to the target page).
    ``alignment`` is what the byte offset must be a multiple of; ``error`` is the code
    raised when a target is out of range.
    """

    name: str
    mask: int
    value: int
    fields: tuple[ImmField, ...]
    scale: int
    bits: int
    alignment: int
    error: str

    @property
    def is_page(self) -> bool:
        """True for ADRP, whose offset is between 4 KiB pages, not bytes."""
        return self.scale == 12

    @property
    def offset_range(self) -> tuple[int, int]:
        """Smallest and largest byte offset the field can hold (inclusive)."""
        low = -(1 << (self.bits - 1))
        high = (1 << (self.bits - 1)) - 1
        return low << self.scale, high << self.scale

    def matches(self, word: int) -> bool:
        """Whether ``word`` belongs to this class."""
        return (word & self.mask) == self.value

    def _immediate_mask(self) -> int:
        total = 0
        for field in self.fields:
            total |= field.mask
        return total

    def decode_offset(self, word: int) -> int:
        """The signed byte offset held in ``word`` (page distance for ADRP)."""
        if not self.matches(word):
            raise EncodingError(
                "NOT_PC_RELATIVE", f"{word:#010x} is not a {self.name} instruction"
            )
        imm = 0
        for field in self.fields:
            imm = (imm << field.width) | ((word >> field.lsb) & ((1 << field.width) - 1))
        if imm & (1 << (self.bits - 1)):
            imm -= 1 << self.bits
        return imm << self.scale

    def encode_offset(self, word: int, offset: int) -> int:
        """``word`` with its immediate replaced by ``offset`` bytes, range-checked."""
        if not self.matches(word):
            raise EncodingError(
                "NOT_PC_RELATIVE", f"{word:#010x} is not a {self.name} instruction"
            )
        if offset % self.alignment:
            raise EncodingError(
                "MISALIGNED_TARGET",
                f"{self.name} offset {offset:#x} is not a multiple of {self.alignment}",
            )
        low, high = self.offset_range
        if not low <= offset <= high:
            raise EncodingError(
                self.error,
                f"{self.name} offset {_signed_hex(offset)} is outside "
                f"[{_signed_hex(low)}, {_signed_hex(high)}]",
            )
        imm = (offset >> self.scale) & ((1 << self.bits) - 1)
        encoded = word & ~self._immediate_mask() & WORD_MASK
        # Fields are most significant first, so peel them off from the low end.
        for field in reversed(self.fields):
            encoded |= (imm & ((1 << field.width) - 1)) << field.lsb
            imm >>= field.width
        return encoded


def _signed_hex(value: int) -> str:
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


_IMM26: Final = (ImmField(0, 26),)
_IMM19: Final = (ImmField(5, 19),)
_IMM14: Final = (ImmField(5, 14),)
# ADR/ADRP: immhi (bits 23:5) is the high part, immlo (bits 30:29) the low two bits.
_IMMHI_IMMLO: Final = (ImmField(5, 19), ImmField(29, 2))


def _branch(
    name: str, mask: int, value: int, fields: tuple[ImmField, ...], bits: int
) -> PcRelClass:
    return PcRelClass(name, mask, value, fields, 2, bits, 4, "BRANCH_OUT_OF_RANGE")


def _literal(name: str, value: int) -> PcRelClass:
    # Load literal: opc(31:30) 011 V(26) 00 imm19 Rt; opc and V pick the class.
    return PcRelClass(name, 0xFF000000, value, _IMM19, 2, 19, 4, "LITERAL_OUT_OF_RANGE")


#: Every PC-relative class, in the order :func:`pc_relative_class` tries them.
TABLE: Final[tuple[PcRelClass, ...]] = (
    _branch("b", 0xFC000000, 0x14000000, _IMM26, 26),
    _branch("bl", 0xFC000000, 0x94000000, _IMM26, 26),
    _branch("b.cond", 0xFF000010, 0x54000000, _IMM19, 19),
    _branch("bc.cond", 0xFF000010, 0x54000010, _IMM19, 19),
    _branch("cbz", 0x7F000000, 0x34000000, _IMM19, 19),
    _branch("cbnz", 0x7F000000, 0x35000000, _IMM19, 19),
    _branch("tbz", 0x7F000000, 0x36000000, _IMM14, 14),
    _branch("tbnz", 0x7F000000, 0x37000000, _IMM14, 14),
    PcRelClass("adr", 0x9F000000, 0x10000000, _IMMHI_IMMLO, 0, 21, 1, "ADR_OUT_OF_RANGE"),
    PcRelClass(
        "adrp", 0x9F000000, 0x90000000, _IMMHI_IMMLO, 12, 21, PAGE_SIZE, "ADRP_OUT_OF_RANGE"
    ),
    _literal("ldr.w", 0x18000000),
    _literal("ldr.x", 0x58000000),
    _literal("ldrsw", 0x98000000),
    _literal("prfm", 0xD8000000),
    _literal("ldr.s", 0x1C000000),
    _literal("ldr.d", 0x5C000000),
    _literal("ldr.q", 0x9C000000),
)

BY_NAME: Final[dict[str, PcRelClass]] = {cls.name: cls for cls in TABLE}


def pc_relative_class(word: int) -> PcRelClass | None:
    """The PC-relative class of ``word``, or None if it is not PC-relative."""
    if not 0 <= word <= WORD_MASK:
        return None
    for cls in TABLE:
        if cls.matches(word):
            return cls
    return None


def _require_class(word: int) -> PcRelClass:
    cls = pc_relative_class(word)
    if cls is None:
        what = f"{word:#010x}" if 0 <= word <= WORD_MASK else repr(word)
        raise EncodingError("NOT_PC_RELATIVE", f"{what} is not a PC-relative instruction")
    return cls


def _check_pc(pc: int) -> None:
    if not 0 <= pc <= ADDRESS_MASK or pc % 4:
        raise EncodingError(
            "MISALIGNED_TARGET",
            f"instruction address {pc:#x} is not a 4-byte aligned 64-bit address",
        )


def _distance(pc: int, target: int) -> int:
    """Signed 64-bit distance from ``pc`` to ``target`` (addresses wrap mod 2**64)."""
    delta = (target - pc) & ADDRESS_MASK
    return delta - (1 << 64) if delta >> 63 else delta


def decode_target(word: int, pc: int) -> int:
    """Absolute target of the PC-relative ``word`` placed at ``pc``.

    For ADRP this is the target page base, ``(pc & ~0xfff) + offset``.
    """
    cls = _require_class(word)
    _check_pc(pc)
    origin = page_base(pc) if cls.is_page else pc
    return (origin + cls.decode_offset(word)) & ADDRESS_MASK


def retarget(word: int, pc: int, target: int) -> int:
    """``word`` re-encoded to sit at ``pc`` and reach ``target``.

    Registers, condition and bit number are kept.  For ADRP, ``target`` may be any
    address in the wanted page.  Raises :class:`EncodingError` when the target is
    out of range or misaligned.
    """
    cls = _require_class(word)
    _check_pc(pc)
    if not 0 <= target <= ADDRESS_MASK:
        raise EncodingError(cls.error, f"target {target!r} is not a 64-bit address")
    origin, destination = (page_base(pc), page_base(target)) if cls.is_page else (pc, target)
    offset = _distance(origin, destination)
    try:
        return cls.encode_offset(word, offset)
    except EncodingError as error:
        raise EncodingError(
            error.code,
            f"{error.message} (at {pc:#x}, target {target:#x})",
        ) from None


__all__ = [
    "BY_NAME",
    "TABLE",
    "ImmField",
    "PcRelClass",
    "decode_target",
    "pc_relative_class",
    "retarget",
]
