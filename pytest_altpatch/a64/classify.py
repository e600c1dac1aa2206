"""Questions a patcher and the machine ask about one instruction word.

Is it an immediate branch (relocated when copied)?  Does it use a PC-relative literal?
May it be modified while another CPU executes it (the Arm ARM's CMODX list)?  Is it a
barrier, a cache maintenance operation, an exception-generating call?  Each answer is
a table lookup over mask/value rows; encodings are from the Arm ARM (DDI 0487)
"Branches, exception generating and system instructions".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pytest_altpatch.a64.pcrel import BY_NAME, pc_relative_class

_BRANCH_CLASSES: Final = frozenset({"b", "bl", "b.cond", "bc.cond", "cbz", "cbnz", "tbz", "tbnz"})
#: The SIMD&FP literal loads (V, bit 26, set): ``ldr s0/d0/q0, label``.
_SIMD_FP_LITERAL_CLASSES: Final = frozenset({"ldr.s", "ldr.d", "ldr.q"})
_LITERAL_CLASSES: Final = frozenset(
    {"adr", "adrp", "ldr.w", "ldr.x", "ldrsw", "prfm"} | _SIMD_FP_LITERAL_CLASSES
)
# Keep this module's sets in step with the pcrel table they name.
if not BY_NAME.keys() >= (_BRANCH_CLASSES | _LITERAL_CLASSES):  # pragma: no cover
    raise ImportError("classify names a PC-relative class pcrel does not define")


def is_branch_imm(word: int) -> bool:
    """B, BL, B.cond, BC.cond, CBZ, CBNZ, TBZ or TBNZ (a branch with an immediate offset)."""
    cls = pc_relative_class(word)
    return cls is not None and cls.name in _BRANCH_CLASSES


def uses_literal(word: int) -> bool:
    """ADR, ADRP, LDR/LDRSW/PRFM (literal): an instruction computing a PC-relative address."""
    cls = pc_relative_class(word)
    return cls is not None and cls.name in _LITERAL_CLASSES


def is_simd_fp_literal(word: int) -> bool:
    """LDR (literal, SIMD&FP): a literal load with V = 1, which Linux's
    ``aarch64_insn_uses_literal`` does not count (its LDR mask 0xBF000000 needs V = 0)."""
    cls = pc_relative_class(word)
    return cls is not None and cls.name in _SIMD_FP_LITERAL_CLASSES


# Exception-generating instructions: 11010100 opc(23:21) imm16(20:5) op2(4:2) LL(1:0).
_EXCEPTION_MASK: Final = 0xFFE0001F
_EXCEPTION_CALLS: Final[Mapping[int, str]] = {
    0xD4000001: "svc",
    0xD4000002: "hvc",
    0xD4000003: "smc",
    0xD4200000: "brk",
}

# Barriers: 1101010100 0 00 011 0011 CRm(11:8) op2(7:5) 11111.
_BARRIER_MASK: Final = 0xFFFFF0FF
_BARRIER_KINDS: Final[Mapping[int, Literal["dsb", "dmb", "isb"]]] = {
    0xD503309F: "dsb",
    0xD50330BF: "dmb",
    0xD50330DF: "isb",
}
_BARRIER_OPTIONS: Final[Mapping[int, str]] = {
    15: "sy", 14: "st", 13: "ld",
    11: "ish", 10: "ishst", 9: "ishld",
    7: "nsh", 6: "nshst", 5: "nshld",
    3: "osh", 2: "oshst", 1: "oshld",
}
# DSB with these CRm values is a different instruction (SSBB, PSSBB, reserved DFB).
_NOT_DSB_CRM: Final = frozenset({0, 4, 12})

#: The instructions the Arm ARM allows to be concurrently modified and executed
#: (B, BL, BRK, HVC, ISB, NOP, SMC, SVC), as (mask, value) rows.
CMODX_SAFE: Final[tuple[tuple[str, int, int], ...]] = (
    ("b", 0xFC000000, 0x14000000),
    ("bl", 0xFC000000, 0x94000000),
    ("brk", _EXCEPTION_MASK, 0xD4200000),
    ("hvc", _EXCEPTION_MASK, 0xD4000002),
    ("isb", _BARRIER_MASK, 0xD50330DF),
    ("nop", 0xFFFFFFFF, 0xD503201F),
    ("smc", _EXCEPTION_MASK, 0xD4000003),
    ("svc", _EXCEPTION_MASK, 0xD4000001),
)


def is_cmodx_safe(word: int) -> bool:
    """Whether ``word`` is one of B, BL, BRK, HVC, ISB, NOP, SMC, SVC."""
    return any((word & mask) == value for _, mask, value in CMODX_SAFE)


@dataclass(frozen=True)
class Barrier:
    """A DSB, DMB or ISB with its option (``sy``, ``ish``, ... or ``#N`` if unnamed)."""

    kind: Literal["dsb", "dmb", "isb"]
    option: str


@functools.lru_cache(maxsize=4096)  # the machine asks at every DSB and ISB it runs
def barrier(word: int) -> Barrier | None:
    """The barrier ``word`` encodes, or None."""
    kind = _BARRIER_KINDS.get(word & _BARRIER_MASK)
    if kind is None:
        return None
    crm = (word >> 8) & 0xF
    if kind == "dsb" and crm in _NOT_DSB_CRM:
        return None
    if kind == "isb":
        # ISB only names SY; other options are reserved but still an ISB.
        return Barrier(kind, "sy" if crm == 15 else f"#{crm}")
    return Barrier(kind, _BARRIER_OPTIONS.get(crm, f"#{crm}"))


@dataclass(frozen=True)
class CacheOp:
    """A cache maintenance operation (``"dc cvau"``, ``"ic iallu"``, ...) and its Xt."""

    name: str
    rt: int


# SYS: 1101010100 0 01 op1(18:16) CRn(15:12) CRm(11:8) op2(7:5) Rt(4:0).
_SYS_MASK: Final = 0xFFF80000
_SYS_VALUE: Final = 0xD5080000
#: (op1, CRn, CRm, op2) of each DC/IC operation the machine models.
CACHE_OPS: Final[Mapping[tuple[int, int, int, int], str]] = {
    (0, 7, 1, 0): "ic ialluis",
    (0, 7, 5, 0): "ic iallu",
    (3, 7, 5, 1): "ic ivau",
    (0, 7, 6, 1): "dc ivac",
    (0, 7, 6, 2): "dc isw",
    (0, 7, 10, 2): "dc csw",
    (0, 7, 14, 2): "dc cisw",
    (3, 7, 4, 1): "dc zva",
    (3, 7, 10, 1): "dc cvac",
    (3, 7, 11, 1): "dc cvau",
    (3, 7, 12, 1): "dc cvap",
    (3, 7, 13, 1): "dc cvadp",
    (3, 7, 14, 1): "dc civac",
}


def cache_op(word: int) -> CacheOp | None:
    """The DC/IC operation ``word`` encodes (decoded from its SYS fields), or None."""
    if (word & _SYS_MASK) != _SYS_VALUE:
        return None
    key = ((word >> 16) & 7, (word >> 12) & 0xF, (word >> 8) & 0xF, (word >> 5) & 7)
    name = CACHE_OPS.get(key)
    return None if name is None else CacheOp(name, word & 0x1F)


def exception_call(word: int) -> tuple[str, int] | None:
    """``("svc"|"hvc"|"smc"|"brk", imm16)`` for an exception-generating call, else None."""
    name = _EXCEPTION_CALLS.get(word & _EXCEPTION_MASK)
    if name is None:
        return None
    return name, (word >> 5) & 0xFFFF


__all__ = [
    "CACHE_OPS",
    "CMODX_SAFE",
    "Barrier",
    "CacheOp",
    "barrier",
    "cache_op",
    "exception_call",
    "is_branch_imm",
    "is_cmodx_safe",
    "is_simd_fp_literal",
    "uses_literal",
]
