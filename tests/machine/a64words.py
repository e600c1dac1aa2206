"""Hand-derived A64 encodings for the machine's tiny test programs.

Each encoder is written from the Arm ARM encoding tables (field layout in the
comment); ``test_a64words.py`` cross-checks every one against capstone, so the test
programs never depend on the project's own assembler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

NOP = 0xD503201F  # HINT #0: 1101 0101 0000 0011 0010 0000 0001 1111
ISB = 0xD5033FDF  # 1101010100 0 00 011 0011 CRm=1111 op2=110 11111
DSB_ISH = 0xD5033B9F  # ... CRm=1011 (ISH) op2=100
DMB_ISH = 0xD5033BBF  # ... CRm=1011 (ISH) op2=101
RET = 0xD65F03C0  # RET X30: 1101011 0 0 10 11111 0000 0 0 Rn=11110 00000


def _check(value: int, bits: int, what: str) -> int:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value:#x} does not fit {bits} bits")
    return value


def movz(rd: int, imm16: int, hw: int = 0, *, wide: bool = True) -> int:
    """MOVZ: sf 10 100101 hw(2) imm16 Rd."""
    return (0xD2800000 if wide else 0x52800000) | hw << 21 | _check(imm16, 16, "imm16") << 5 | rd


def movk(rd: int, imm16: int, hw: int) -> int:
    """MOVK (64-bit): 1 11 100101 hw imm16 Rd."""
    return 0xF2800000 | hw << 21 | _check(imm16, 16, "imm16") << 5 | rd


def mov64(rd: int, value: int) -> list[int]:
    """MOVZ + MOVKs building the 64-bit ``value``."""
    words = [movz(rd, value & 0xFFFF)]
    for hw in range(1, 4):
        part = (value >> (16 * hw)) & 0xFFFF
        if part:
            words.append(movk(rd, part, hw))
    return words


def add_imm(rd: int, rn: int, imm12: int) -> int:
    """ADD (immediate, 64-bit): 1 0 0 100010 sh=0 imm12 Rn Rd."""
    return 0x91000000 | _check(imm12, 12, "imm12") << 10 | rn << 5 | rd


def sub_imm(rd: int, rn: int, imm12: int) -> int:
    """SUB (immediate, 64-bit): 1 1 0 100010 sh=0 imm12 Rn Rd."""
    return 0xD1000000 | _check(imm12, 12, "imm12") << 10 | rn << 5 | rd


def subs_imm(rd: int, rn: int, imm12: int) -> int:
    """SUBS (immediate, 64-bit): 1 1 1 100010 sh=0 imm12 Rn Rd (CMP when Rd=31)."""
    return 0xF1000000 | _check(imm12, 12, "imm12") << 10 | rn << 5 | rd


def ldr_w(rt: int, rn: int, offset: int = 0) -> int:
    """LDR (immediate, unsigned offset, 32-bit): 10 111 0 01 01 imm12 Rn Rt."""
    return 0xB9400000 | _check(offset // 4, 12, "offset") << 10 | rn << 5 | rt


def str_w(rt: int, rn: int, offset: int = 0) -> int:
    """STR (immediate, unsigned offset, 32-bit): 10 111 0 01 00 imm12 Rn Rt."""
    return 0xB9000000 | _check(offset // 4, 12, "offset") << 10 | rn << 5 | rt


def str_w_post(rt: int, rn: int, imm9: int) -> int:
    """STR (immediate, post-index, 32-bit): 10 111 0 00 00 0 imm9 01 Rn Rt."""
    return 0xB8000400 | (imm9 & 0x1FF) << 12 | rn << 5 | rt


def ldar_w(rt: int, rn: int) -> int:
    """LDAR (32-bit): 10 001000 1 1 0 11111 1 11111 Rn Rt."""
    return 0x88DFFC00 | rn << 5 | rt


def stlr_w(rt: int, rn: int) -> int:
    """STLR (32-bit): 10 001000 1 0 0 11111 1 11111 Rn Rt."""
    return 0x889FFC00 | rn << 5 | rt


def _offset(pc: int, target: int, bits: int) -> int:
    delta = (target - pc) >> 2
    if not -(1 << (bits - 1)) <= delta < 1 << (bits - 1):
        raise ValueError("branch out of range")
    return delta & ((1 << bits) - 1)


def b(pc: int, target: int) -> int:
    """B: 0 00101 imm26."""
    return 0x14000000 | _offset(pc, target, 26)


def bl(pc: int, target: int) -> int:
    """BL: 1 00101 imm26."""
    return 0x94000000 | _offset(pc, target, 26)


def cbz_w(pc: int, rt: int, target: int) -> int:
    """CBZ (32-bit): 0 011010 0 imm19 Rt."""
    return 0x34000000 | _offset(pc, target, 19) << 5 | rt


def cbnz_w(pc: int, rt: int, target: int) -> int:
    """CBNZ (32-bit): 0 011010 1 imm19 Rt."""
    return 0x35000000 | _offset(pc, target, 19) << 5 | rt


def cbnz_x(pc: int, rt: int, target: int) -> int:
    """CBNZ (64-bit): 1 011010 1 imm19 Rt."""
    return 0xB5000000 | _offset(pc, target, 19) << 5 | rt


def b_ne(pc: int, target: int) -> int:
    """B.NE: 0101010 0 imm19 0 cond=0001."""
    return 0x54000001 | _offset(pc, target, 19) << 5


def sys_op(op1: int, crn: int, crm: int, op2: int, rt: int) -> int:
    """SYS: 1101010100 0 01 op1 CRn CRm op2 Rt."""
    return 0xD5080000 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | rt


def dc_cvau(rt: int) -> int:
    """DC CVAU = SYS #3, C7, C11, #1."""
    return sys_op(3, 7, 11, 1, rt)


def dc_cvac(rt: int) -> int:
    """DC CVAC = SYS #3, C7, C10, #1."""
    return sys_op(3, 7, 10, 1, rt)


def dc_civac(rt: int) -> int:
    """DC CIVAC = SYS #3, C7, C14, #1."""
    return sys_op(3, 7, 14, 1, rt)


def ic_ivau(rt: int) -> int:
    """IC IVAU = SYS #3, C7, C5, #1."""
    return sys_op(3, 7, 5, 1, rt)


IC_IALLU = sys_op(0, 7, 5, 0, 31)
IC_IALLUIS = sys_op(0, 7, 1, 0, 31)


def svc(imm16: int) -> int:
    """SVC: 11010100 000 imm16 000 01."""
    return 0xD4000001 | _check(imm16, 16, "imm16") << 5


def hvc(imm16: int) -> int:
    """HVC: 11010100 000 imm16 000 10."""
    return 0xD4000002 | _check(imm16, 16, "imm16") << 5


def smc(imm16: int) -> int:
    """SMC: 11010100 000 imm16 000 11."""
    return 0xD4000003 | _check(imm16, 16, "imm16") << 5


def brk(imm16: int) -> int:
    """BRK: 11010100 001 imm16 000 00."""
    return 0xD4200000 | _check(imm16, 16, "imm16") << 5


def udf(imm16: int) -> int:
    """UDF: 0000000000000000 imm16."""
    return _check(imm16, 16, "imm16")


def mrs(rt: int, op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
    """MRS: 1101010100 1 1 o0 op1 CRn CRm op2 Rt (o0 = op0 - 2)."""
    return 0xD5300000 | (op0 - 2) << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | rt


class Program:
    """A tiny program builder: words at consecutive addresses from ``base``."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.words: list[int] = []
        self.labels: dict[str, int] = {}

    @property
    def pc(self) -> int:
        """Address of the next word."""
        return self.base + 4 * len(self.words)

    def label(self, name: str) -> int:
        """Name the next word's address."""
        self.labels[name] = self.pc
        return self.pc

    def emit(self, *words: int | Sequence[int] | Callable[[int], int]) -> None:
        """Append words; a callable gets the current PC (for branches)."""
        for word in words:
            if callable(word):
                self.words.append(word(self.pc))
            elif isinstance(word, int):
                self.words.append(word)
            else:
                self.words.extend(word)

    def blob(self) -> bytes:
        """The program's bytes."""
        return b"".join(word.to_bytes(4, "little") for word in self.words)
