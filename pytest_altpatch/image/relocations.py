"""AArch64 ELF relocations as a table of recipes (ELF for the Arm 64-bit Architecture).

Each :class:`Recipe` says how wide the patched field is, which value the relocation
computes (``S + A``, ``S + A - P`` or ``Page(S + A) - Page(P)``), the range the ABI
checks, and which a64 field encoder writes it.  Instruction fields are only ever
written through :mod:`pytest_altpatch.a64` (PC-relative classes and immediate
fields), so the loader and the patchers share one definition of every encoding.

:func:`relocate` raises :class:`ElfError` without a location; the loader adds the
section, offset and symbol.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pytest_altpatch.a64 import fields, pcrel
from pytest_altpatch.a64.granule import PAGE_MASK, PAGE_SHIFT, page_base
from pytest_altpatch.errors import ElfError, EncodingError

ValueKind = Literal["abs", "prel", "page"]
_U64: Final = (1 << 64) - 1

#: Field codes from the a64 layer that mean "the word is not that instruction".
_WRONG_INSTRUCTION: Final = frozenset({"NOT_PC_RELATIVE", "NOT_IMMEDIATE_FORM"})


@dataclass(frozen=True)
class Recipe:
    """How to apply one relocation type.

    ``patch(contents, x)`` returns the new field contents for the computed value
    ``x``; it raises :class:`EncodingError` (from a64) or :class:`ElfError`.
    """

    rtype: int
    name: str
    width: int
    value: ValueKind
    patch: Callable[[int, int], int]


def _out_of_range(name: str, x: int, low: int, high: int) -> ElfError:
    return ElfError(
        "RELOC_OUT_OF_RANGE",
        f"R_AARCH64_{name} value {x:#x} is outside [{low:#x}, {high:#x})",
    )


def _data(name: str, bits: int) -> Callable[[int, int], int]:
    """A data relocation: X must be in [-2**(bits-1), 2**bits), stored modulo 2**bits."""
    low, high = -(1 << (bits - 1)), 1 << bits

    def patch(_contents: int, x: int) -> int:
        if bits < 64 and not low <= x < high:
            raise _out_of_range(name, x, low, high)
        return x & ((1 << bits) - 1)

    return patch


def _pc_relative(name: str, classes: frozenset[str], *, truncate_page: bool = False
                 ) -> Callable[[int, int], int]:
    """A PC-relative instruction field, written by the a64 class encoder."""

    def patch(word: int, x: int) -> int:
        cls = pcrel.pc_relative_class(word)
        if cls is None or cls.name not in classes:
            raise ElfError(
                "ELF_MALFORMED",
                f"R_AARCH64_{name} applies to {word:#010x}, which is not "
                f"{'/'.join(sorted(classes))}",
            )
        if truncate_page:
            # _NC: keep the low 21 bits of the page delta, as the field does.
            pages = (x >> PAGE_SHIFT) & ((1 << 21) - 1)
            x = (pages - (1 << 21) if pages >> 20 else pages) << PAGE_SHIFT
        return cls.encode_offset(word, x)

    return patch


def _lo12(name: str, access: int | None) -> Callable[[int, int], int]:
    """ADD or load/store ``:lo12:``: bits [11:0] of X (scaled by the access size)."""

    def patch(word: int, x: int) -> int:
        low = x & PAGE_MASK  # the offset in the 4 KiB page
        if access is None:
            return fields.set_add_imm12(word, low)
        size = fields.ldst_access_size(word)
        if size != access:
            raise ElfError(
                "RELOC_UNSUPPORTED",
                f"R_AARCH64_{name} is for {access}-byte accesses; {word:#010x} accesses {size}",
            )
        return fields.set_ldst_imm12(word, low)

    return patch


def _movw(name: str, group: int, *, check: bool) -> Callable[[int, int], int]:
    """MOVZ/MOVK ``:abs_gN:``: bits [16N+15:16N] of X, range-checked unless _NC."""
    shift = 16 * group
    limit = 1 << (shift + 16)

    def patch(word: int, x: int) -> int:
        if check and not 0 <= x < limit and group < 3:
            raise _out_of_range(name, x, 0, limit)
        return fields.set_movw_imm16(word, ((x & _U64) >> shift) & 0xFFFF)

    return patch


_BRANCH26: Final = frozenset({"b", "bl"})
_BRANCH19: Final = frozenset({"b.cond", "bc.cond", "cbz", "cbnz"})
_BRANCH14: Final = frozenset({"tbz", "tbnz"})
_LITERAL: Final = frozenset({"ldr.w", "ldr.x", "ldrsw", "prfm", "ldr.s", "ldr.d", "ldr.q"})


def _recipe(rtype: int, name: str, width: int, value: ValueKind,
            patch: Callable[[int, int], int]) -> tuple[int, Recipe]:
    return rtype, Recipe(rtype, name, width, value, patch)


#: Every supported relocation type (R_AARCH64_NONE and R_AARCH64_NULL are no-ops).
RECIPES: Final[Mapping[int, Recipe]] = dict([
    _recipe(257, "ABS64", 8, "abs", _data("ABS64", 64)),
    _recipe(258, "ABS32", 4, "abs", _data("ABS32", 32)),
    _recipe(259, "ABS16", 2, "abs", _data("ABS16", 16)),
    _recipe(260, "PREL64", 8, "prel", _data("PREL64", 64)),
    _recipe(261, "PREL32", 4, "prel", _data("PREL32", 32)),
    _recipe(262, "PREL16", 2, "prel", _data("PREL16", 16)),
    _recipe(263, "MOVW_UABS_G0", 4, "abs", _movw("MOVW_UABS_G0", 0, check=True)),
    _recipe(264, "MOVW_UABS_G0_NC", 4, "abs", _movw("MOVW_UABS_G0_NC", 0, check=False)),
    _recipe(265, "MOVW_UABS_G1", 4, "abs", _movw("MOVW_UABS_G1", 1, check=True)),
    _recipe(266, "MOVW_UABS_G1_NC", 4, "abs", _movw("MOVW_UABS_G1_NC", 1, check=False)),
    _recipe(267, "MOVW_UABS_G2", 4, "abs", _movw("MOVW_UABS_G2", 2, check=True)),
    _recipe(268, "MOVW_UABS_G2_NC", 4, "abs", _movw("MOVW_UABS_G2_NC", 2, check=False)),
    _recipe(269, "MOVW_UABS_G3", 4, "abs", _movw("MOVW_UABS_G3", 3, check=True)),
    _recipe(273, "LD_PREL_LO19", 4, "prel", _pc_relative("LD_PREL_LO19", _LITERAL)),
    _recipe(274, "ADR_PREL_LO21", 4, "prel", _pc_relative("ADR_PREL_LO21", frozenset({"adr"}))),
    _recipe(275, "ADR_PREL_PG_HI21", 4, "page",
            _pc_relative("ADR_PREL_PG_HI21", frozenset({"adrp"}))),
    _recipe(276, "ADR_PREL_PG_HI21_NC", 4, "page",
            _pc_relative("ADR_PREL_PG_HI21_NC", frozenset({"adrp"}), truncate_page=True)),
    _recipe(277, "ADD_ABS_LO12_NC", 4, "abs", _lo12("ADD_ABS_LO12_NC", None)),
    _recipe(278, "LDST8_ABS_LO12_NC", 4, "abs", _lo12("LDST8_ABS_LO12_NC", 1)),
    _recipe(279, "TSTBR14", 4, "prel", _pc_relative("TSTBR14", _BRANCH14)),
    _recipe(280, "CONDBR19", 4, "prel", _pc_relative("CONDBR19", _BRANCH19)),
    _recipe(282, "JUMP26", 4, "prel", _pc_relative("JUMP26", _BRANCH26)),
    _recipe(283, "CALL26", 4, "prel", _pc_relative("CALL26", _BRANCH26)),
    _recipe(284, "LDST16_ABS_LO12_NC", 4, "abs", _lo12("LDST16_ABS_LO12_NC", 2)),
    _recipe(285, "LDST32_ABS_LO12_NC", 4, "abs", _lo12("LDST32_ABS_LO12_NC", 4)),
    _recipe(286, "LDST64_ABS_LO12_NC", 4, "abs", _lo12("LDST64_ABS_LO12_NC", 8)),
    _recipe(299, "LDST128_ABS_LO12_NC", 4, "abs", _lo12("LDST128_ABS_LO12_NC", 16)),
])

#: Relocation types that change nothing.
NO_OP_TYPES: Final = frozenset({0, 256})

#: Recipe by name without the ``R_AARCH64_`` prefix (``"CALL26"``).
BY_NAME: Final[Mapping[str, Recipe]] = {recipe.name: recipe for recipe in RECIPES.values()}

_FIELD_FORMATS: Final[Mapping[int, str]] = {2: "<H", 4: "<I", 8: "<Q"}


def type_name(rtype: int) -> str:
    """``R_AARCH64_<NAME>`` for a supported type, else ``R_AARCH64_<number>``."""
    recipe = RECIPES.get(rtype)
    return f"R_AARCH64_{recipe.name if recipe else rtype}"


def computed_value(recipe: Recipe, target: int, place: int) -> int:
    """X for the recipe: S+A, S+A-P, or Page(S+A)-Page(P), as a signed integer."""
    if recipe.value == "abs":
        return target
    if recipe.value == "prel":
        return target - place
    return page_base(target) - page_base(place)


def relocate(rtype: int, contents: bytes, place: int, target: int) -> bytes:
    """New bytes for the field at ``place`` so it refers to ``target`` (= S + A).

    Raises :class:`ElfError`: ``RELOC_UNSUPPORTED`` for unknown types,
    ``RELOC_OUT_OF_RANGE`` when the value does not fit or is misaligned,
    ``ELF_MALFORMED`` when the field is not the instruction the type requires.
    """
    if rtype in NO_OP_TYPES:
        return contents
    recipe = RECIPES.get(rtype)
    if recipe is None:
        raise ElfError("RELOC_UNSUPPORTED", f"relocation type {rtype} is not supported")
    if len(contents) != recipe.width:
        raise ElfError(
            "ELF_MALFORMED",
            f"R_AARCH64_{recipe.name} needs {recipe.width} bytes, the section has "
            f"{len(contents)} left",
        )
    fmt = _FIELD_FORMATS[recipe.width]
    (old,) = struct.unpack(fmt, contents)
    x = computed_value(recipe, target, place)
    try:
        new = recipe.patch(old, x)
    except EncodingError as error:
        code = "ELF_MALFORMED" if error.code in _WRONG_INSTRUCTION else "RELOC_OUT_OF_RANGE"
        raise ElfError(code, f"R_AARCH64_{recipe.name}: {error.message}") from None
    return struct.pack(fmt, new)


__all__ = [
    "BY_NAME",
    "NO_OP_TYPES",
    "RECIPES",
    "Recipe",
    "computed_value",
    "relocate",
    "type_name",
]
