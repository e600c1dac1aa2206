"""Instructions the assembler encodes itself, never trusting keystone with them.

Two groups: every PC-relative form (keystone wraps out-of-range targets silently,
mis-encodes ADRP with labels and can abort on TBZ), and the instructions keystone 0.9.2
does not know (LSE atomics, BTI, PAC hints, ESB, CSDB, SB, SSBB, PSSBB, DGH, UDF).
Encodings follow the Arm ARM (DDI 0487) field layouts given next to each table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pytest_altpatch.a64.pcrel import BY_NAME, retarget
from pytest_altpatch.a64.syntax import Operand
from pytest_altpatch.errors import AsmError, EncodingError, Location

ADDRESS_MASK: Final = (1 << 64) - 1


@dataclass(frozen=True)
class EncodeContext:
    """What an encoder may ask: the statement's address, line, mnemonic column, values."""

    address: int
    line: int
    column: int
    evaluate: Callable[[str, int], int]

    def error(self, code: str, message: str, column: int | None = None) -> AsmError:
        """An AsmError at ``column`` of this statement's line (default: the mnemonic)."""
        where = column if column is not None else self.column
        return AsmError(code, message, location=Location(line=self.line, column=where))

    def immediate(self, operand: Operand) -> int:
        """Value of ``#expr`` or ``expr``."""
        text, column = operand.text, operand.column
        if text.startswith("#"):
            text, column = text[1:], column + 1
        return self.evaluate(text, column)


@dataclass(frozen=True)
class Register:
    """A general-purpose register: width ``x`` or ``w``, number 0..31, and whether SP."""

    width: str
    number: int
    is_sp: bool


_GPR: Final = re.compile(r"^(?:([xw])([0-9]|[12][0-9]|30)|(xzr|wzr|sp|wsp))$")
_FP_LITERAL_REG: Final = re.compile(r"^([sdq])([0-9]|[12][0-9]|3[01])$")


def parse_gpr(operand: Operand, ctx: EncodeContext, *, sp: bool = False,
              zr: bool = True) -> Register:
    """Parse a general register; ``sp``/``zr`` say whether SP or XZR/WZR are allowed."""
    match = _GPR.match(operand.text.lower())
    if match is None:
        raise ctx.error("ASM_SYNTAX", f"general register expected, found {operand.text!r}",
                        operand.column)
    if match.group(1):
        return Register(match.group(1), int(match.group(2)), False)
    special = match.group(3)
    is_sp = special in ("sp", "wsp")
    if (is_sp and not sp) or (not is_sp and not zr):
        raise ctx.error("ASM_SYNTAX", f"{special} is not allowed here", operand.column)
    return Register("x" if special in ("xzr", "sp") else "w", 31, is_sp)


def _count(ops: tuple[Operand, ...], wanted: int, ctx: EncodeContext, mnemonic: str) -> None:
    if len(ops) != wanted:
        column = ops[wanted].column if len(ops) > wanted else None
        raise ctx.error("ASM_SYNTAX", f"{mnemonic} takes {wanted} operand(s), got {len(ops)}",
                        column)


def _target(operand: Operand, ctx: EncodeContext) -> int:
    value = ctx.immediate(operand)
    if not -(1 << 63) <= value <= ADDRESS_MASK:
        raise ctx.error("ASM_OUT_OF_RANGE", f"target {value:#x} is not a 64-bit address",
                        operand.column)
    return value & ADDRESS_MASK


def _place(word: int, operand: Operand, ctx: EncodeContext) -> int:
    """Point the PC-relative ``word`` at the target ``operand`` names, range-checked."""
    target = _target(operand, ctx)
    try:
        return retarget(word, ctx.address, target)
    except EncodingError as error:
        raise AsmError("ASM_OUT_OF_RANGE", error.message, hint=error.code,
                       location=Location(line=ctx.line, column=operand.column)) from None


#: Condition codes (Arm ARM C1.2.4), including the HS/LO synonyms.
CONDITIONS: Final[dict[str, int]] = {
    "eq": 0, "ne": 1, "cs": 2, "hs": 2, "cc": 3, "lo": 3, "mi": 4, "pl": 5, "vs": 6,
    "vc": 7, "hi": 8, "ls": 9, "ge": 10, "lt": 11, "gt": 12, "le": 13, "al": 14, "nv": 15,
}

#: PRFM operation names: type (pld 0, pli 1, pst 2) << 3 | level (l1..l3) << 1 | strm.
PREFETCH_OPS: Final[dict[str, int]] = {
    f"{kind}l{level}{policy}": k << 3 | (level - 1) << 1 | p
    for k, kind in enumerate(("pld", "pli", "pst"))
    for level in (1, 2, 3)
    for p, policy in enumerate(("keep", "strm"))
}


def _encode_branch(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    _count(ops, 1, ctx, mnemonic)
    return _place(BY_NAME[mnemonic].value, ops[0], ctx)


def _encode_conditional(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    prefix, _, cond = mnemonic.partition(".")
    _count(ops, 1, ctx, mnemonic)
    return _place(BY_NAME[f"{prefix}.cond"].value | CONDITIONS[cond], ops[0], ctx)


def _encode_compare_branch(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    _count(ops, 2, ctx, mnemonic)
    reg = parse_gpr(ops[0], ctx)
    word = BY_NAME[mnemonic].value | (reg.width == "x") << 31 | reg.number
    return _place(word, ops[1], ctx)


def _encode_test_branch(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    _count(ops, 3, ctx, mnemonic)
    reg = parse_gpr(ops[0], ctx)
    bit = ctx.immediate(ops[1])
    limit = 64 if reg.width == "x" else 32
    if not 0 <= bit < limit:
        raise ctx.error("ASM_OUT_OF_RANGE", f"bit number {bit} is not in 0..{limit - 1}",
                        ops[1].column)
    # b5 (bit 31) and b40 (bits 23:19) hold the bit number.
    word = BY_NAME[mnemonic].value | (bit >> 5) << 31 | (bit & 31) << 19 | reg.number
    return _place(word, ops[2], ctx)


def _encode_address(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    _count(ops, 2, ctx, mnemonic)
    reg = parse_gpr(ops[0], ctx)
    if reg.width != "x":
        raise ctx.error("ASM_SYNTAX", f"{mnemonic} needs an X register", ops[0].column)
    return _place(BY_NAME[mnemonic].value | reg.number, ops[1], ctx)


def encode_literal_load(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    """LDR (W, X, S, D, Q), LDRSW or PRFM with a PC-relative literal target."""
    _count(ops, 2, ctx, mnemonic)
    first = ops[0]
    if mnemonic == "prfm":
        name = first.text.lower()
        if name in PREFETCH_OPS:
            operation = PREFETCH_OPS[name]
        else:
            operation = ctx.immediate(first)
            if not 0 <= operation <= 31:
                raise ctx.error("ASM_OUT_OF_RANGE", f"prefetch operation {operation} is not "
                                "in 0..31", first.column)
        return _place(BY_NAME["prfm"].value | operation, ops[1], ctx)
    fp = _FP_LITERAL_REG.match(first.text.lower())
    if fp is not None and mnemonic == "ldr":
        cls = BY_NAME[f"ldr.{fp.group(1)}"]
        return _place(cls.value | int(fp.group(2)), ops[1], ctx)
    reg = parse_gpr(first, ctx)
    if mnemonic == "ldrsw":
        if reg.width != "x":
            raise ctx.error("ASM_SYNTAX", "ldrsw needs an X register", first.column)
        return _place(BY_NAME["ldrsw"].value | reg.number, ops[1], ctx)
    return _place(BY_NAME[f"ldr.{reg.width}"].value | reg.number, ops[1], ctx)


# --- instructions keystone does not know -------------------------------------------

#: Hint-space instructions: HINT #imm = 0xD503201F | imm7 << 5 (CRm:op2).
HINTS: Final[dict[str, int]] = {
    "xpaclri": 0x07, "dgh": 0x06, "esb": 0x10, "csdb": 0x14,
    "paciasp": 0x19, "pacibsp": 0x1B, "autiasp": 0x1D, "autibsp": 0x1F,
}
BTI_TARGETS: Final[dict[str, int]] = {"": 0x20, "c": 0x22, "j": 0x24, "jc": 0x26}
#: Barrier-space speculation barriers: 1101010100 0 00 011 0011 CRm op2 11111.
SPECULATION_BARRIERS: Final[dict[str, int]] = {
    "sb": 0xD50330FF, "ssbb": 0xD503309F, "pssbb": 0xD503349F,
}


def _encode_fixed(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    _count(ops, 0, ctx, mnemonic)
    if mnemonic in HINTS:
        return 0xD503201F | HINTS[mnemonic] << 5
    return SPECULATION_BARRIERS[mnemonic]


def _encode_bti(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    if len(ops) > 1:
        _count(ops, 1, ctx, mnemonic)
    target = ops[0].text.lower() if ops else ""
    if target not in BTI_TARGETS or (target == "" and ops):
        raise ctx.error("ASM_SYNTAX", f"bti target must be c, j or jc, not {target!r}",
                        ops[0].column)
    return 0xD503201F | BTI_TARGETS[target] << 5


def _encode_udf(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    _count(ops, 1, ctx, mnemonic)
    value = ctx.immediate(ops[0])
    if not 0 <= value <= 0xFFFF:
        raise ctx.error("ASM_OUT_OF_RANGE", f"udf immediate {value} is not in 0..65535",
                        ops[0].column)
    return value


# LSE atomic memory operations (Arm ARM C4.1.94, "Atomic memory operations"):
#   size(31:30) 111 V=0 00 A(23) R(22) 1 Rs(20:16) o3(15) opc(14:12) 00 Rn(9:5) Rt(4:0)
ATOMIC_OPS: Final[dict[str, tuple[int, int]]] = {  # name -> (o3, opc)
    "add": (0, 0), "clr": (0, 1), "eor": (0, 2), "set": (0, 3),
    "smax": (0, 4), "smin": (0, 5), "umax": (0, 6), "umin": (0, 7), "swp": (1, 0),
}
_ORDERING: Final[dict[str, tuple[int, int]]] = {"": (0, 0), "a": (1, 0), "l": (0, 1),
                                                "al": (1, 1)}  # -> (acquire, release)
_SIZE_SUFFIX: Final[dict[str, int]] = {"b": 0, "h": 1}
LSE_PATTERN: Final = re.compile(
    r"^(?:(?P<ld>ld(?P<op>add|clr|eor|set|smax|smin|umax|umin)|swp)(?P<ord>al|a|l)?"
    r"|(?P<st>st(?P<stop>add|clr|eor|set|smax|smin|umax|umin))(?P<stord>l)?"
    r"|(?P<casp>casp)(?P<pord>al|a|l)?"
    r"|(?P<cas>cas)(?P<cord>al|a|l)?)(?P<size>[bh])?$"
)


def _base_register(operand: Operand, ctx: EncodeContext) -> int:
    """``[Xn|SP]`` or ``[Xn|SP, #0]``: the base register number."""
    text = operand.text
    if not (text.startswith("[") and text.endswith("]")):
        raise ctx.error("ASM_SYNTAX", "memory operand [Xn] expected", operand.column)
    inner, _, offset = text[1:-1].partition(",")
    if offset.strip() and ctx.immediate(Operand(offset.strip(), operand.column)) != 0:
        raise ctx.error("ASM_OUT_OF_RANGE", "atomic operations take no offset", operand.column)
    reg = parse_gpr(Operand(inner.strip(), operand.column + 1), ctx, sp=True, zr=False)
    if reg.width != "x":
        raise ctx.error("ASM_SYNTAX", "the base register must be an X register or SP",
                        operand.column)
    return reg.number


def _sized(regs: list[Register], size_suffix: str, ops: tuple[Operand, ...],
           ctx: EncodeContext) -> int:
    """The size field: 0/1 for B/H (W registers), else 2 for W and 3 for X registers."""
    widths = {reg.width for reg in regs}
    if len(widths) != 1:
        raise ctx.error("ASM_SYNTAX", "registers must all be W or all be X", ops[0].column)
    width = widths.pop()
    if size_suffix:
        if width != "w":
            raise ctx.error("ASM_SYNTAX", "byte and halfword forms take W registers",
                            ops[0].column)
        return _SIZE_SUFFIX[size_suffix]
    return 3 if width == "x" else 2


def _encode_lse(mnemonic: str, ops: tuple[Operand, ...], ctx: EncodeContext) -> int:
    match = LSE_PATTERN.match(mnemonic)
    if match is None:  # pragma: no cover - dispatch only sends matching names
        raise ctx.error("ASM_UNSUPPORTED", f"unknown atomic {mnemonic}")
    size_suffix = match.group("size") or ""
    if match.group("casp"):
        _count(ops, 5, ctx, mnemonic)
        regs = [parse_gpr(op, ctx) for op in ops[:4]]
        if size_suffix:
            raise ctx.error("ASM_UNSUPPORTED", "casp has no byte or halfword form")
        for first, second, op in ((regs[0], regs[1], ops[0]), (regs[2], regs[3], ops[2])):
            if first.number % 2 or second.number != first.number + 1:
                raise ctx.error("ASM_SYNTAX", "casp needs consecutive even/odd register pairs",
                                op.column)
        acquire, release = _ORDERING[match.group("pord") or ""]
        wide = _sized(regs, "", ops, ctx) == 3
        # 0 sz 001000 0 L(22) 1 Rs o0(15) 11111 Rn Rt
        return (0x08207C00 | wide << 30 | acquire << 22 | regs[0].number << 16
                | release << 15 | _base_register(ops[4], ctx) << 5 | regs[2].number)
    if match.group("cas"):
        _count(ops, 3, ctx, mnemonic)
        regs = [parse_gpr(op, ctx) for op in ops[:2]]
        acquire, release = _ORDERING[match.group("cord") or ""]
        size = _sized(regs, size_suffix, ops, ctx)
        # size 001000 1 L(22) 1 Rs o0(15) 11111 Rn Rt
        return (0x08A07C00 | size << 30 | acquire << 22 | regs[0].number << 16
                | release << 15 | _base_register(ops[2], ctx) << 5 | regs[1].number)
    if match.group("st"):
        # STxxx Rs, [Xn] is LDxxx Rs, XZR/WZR, [Xn] (no acquire form exists).
        _count(ops, 2, ctx, mnemonic)
        rs = parse_gpr(ops[0], ctx)
        o3, opc = ATOMIC_OPS[match.group("stop")]
        acquire, release = 0, 1 if match.group("stord") else 0
        regs, rt, base_op = [rs], 31, ops[1]
    else:
        _count(ops, 3, ctx, mnemonic)
        rs, rt_reg = parse_gpr(ops[0], ctx), parse_gpr(ops[1], ctx)
        o3, opc = ATOMIC_OPS[match.group("op") or "swp"]
        acquire, release = _ORDERING[match.group("ord") or ""]
        regs, rt, base_op = [rs, rt_reg], rt_reg.number, ops[2]
    size = _sized(regs, size_suffix, ops, ctx)
    return (0x38200000 | size << 30 | acquire << 23 | release << 22 | rs.number << 16
            | o3 << 15 | opc << 12 | _base_register(base_op, ctx) << 5 | rt)


Encoder = Callable[[str, tuple[Operand, ...], EncodeContext], int]

#: Mnemonics with one encoder each; LSE names are matched by :data:`LSE_PATTERN`.
ENCODERS: Final[dict[str, Encoder]] = {
    "b": _encode_branch,
    "bl": _encode_branch,
    **{f"b.{cond}": _encode_conditional for cond in CONDITIONS},
    **{f"bc.{cond}": _encode_conditional for cond in CONDITIONS},
    "cbz": _encode_compare_branch,
    "cbnz": _encode_compare_branch,
    "tbz": _encode_test_branch,
    "tbnz": _encode_test_branch,
    "adr": _encode_address,
    "adrp": _encode_address,
    **{name: _encode_fixed for name in (*HINTS, *SPECULATION_BARRIERS)},
    "bti": _encode_bti,
    "udf": _encode_udf,
}


#: The encoders whose word depends on the statement's address (they go through
#: ``_place``); every other encoder, and keystone's path, gives the same word anywhere.
PC_RELATIVE_ENCODERS: Final[frozenset[Encoder]] = frozenset({
    _encode_branch, _encode_conditional, _encode_compare_branch, _encode_test_branch,
    _encode_address,
})


def own_encoder(mnemonic: str) -> Encoder | None:
    """The encoder this module provides for ``mnemonic``, or None (keystone's job)."""
    encoder = ENCODERS.get(mnemonic)
    if encoder is None and LSE_PATTERN.match(mnemonic):
        return _encode_lse
    return encoder


__all__ = [
    "ATOMIC_OPS",
    "BTI_TARGETS",
    "CONDITIONS",
    "ENCODERS",
    "HINTS",
    "LSE_PATTERN",
    "PC_RELATIVE_ENCODERS",
    "PREFETCH_OPS",
    "SPECULATION_BARRIERS",
    "EncodeContext",
    "Encoder",
    "Register",
    "encode_literal_load",
    "own_encoder",
    "parse_gpr",
]
