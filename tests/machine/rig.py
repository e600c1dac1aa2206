"""A small test rig: one machine layout and guest programs for the machine tests.

Layout: text VA 0x400000 = PA 0 (64 KiB, r-x); data VA 0x600000 = PA 0x10000
(64 KiB, rw-); per-CPU stacks at the top of PA 0x20000.. (rw-).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_altpatch.machine import CpuConfig, HostService, Machine

from .a64words import (
    DSB_ISH,
    IC_IALLUIS,
    ISB,
    RET,
    Program,
    add_imm,
    b,
    b_ne,
    bl,
    cbnz_x,
    cbz_w,
    dc_civac,
    dc_cvau,
    ic_ivau,
    ldr_w,
    mov64,
    movz,
    str_w,
    subs_imm,
    svc,
)

#: Encoders re-exported for the tests that build programs through the rig.
REEXPORTED = (Program, add_imm, b, b_ne, cbnz_x, dc_cvau, subs_imm)

TEXT_VA = 0x400000
TEXT_PA = 0x0
DATA_VA = 0x600000
DATA_PA = 0x10000
STACK_VA = 0x800000
STACK_PA = 0x20000
STACK_SIZE = 0x4000
MEMORY = 0x100000

#: Where the test function lives, and its two versions.
FN_OFFSET = 0x800
FN_VA = TEXT_VA + FN_OFFSET
FN_PA = TEXT_PA + FN_OFFSET
OLD_WORD = movz(0, 1)  # mov x0, #1
NEW_WORD = movz(0, 2)  # mov x0, #2
FLAG_VA = DATA_VA + 0x100

#: CTR_EL0 values: IminLine/DminLine fields (log2 words), IDC bit 28, DIC bit 29.
CTR_64 = 0x8444C004  # 64-byte I and D lines (A72-like), IDC=0 DIC=0
CTR_32 = 0x8443C003  # 32-byte I and D lines, IDC=0 DIC=0
CTR_IDC = CTR_64 | 1 << 28
CTR_DIC = CTR_64 | 1 << 29

A72 = CpuConfig(midr=0x410FD083, revidr=0, mpidr=0x80000000, ctr=CTR_64)
A53 = CpuConfig(midr=0x410FD034, revidr=0x5, mpidr=0x80000100, ctr=0x84448004)


def cpu(ctr: int = CTR_64, *, index: int = 0, midr: int = 0x410FD083) -> CpuConfig:
    """A CPU with the given CTR_EL0."""
    return CpuConfig(midr=midr, revidr=0, mpidr=0x80000000 | index, ctr=ctr)


def machine(cpus: Sequence[CpuConfig], **options: object) -> Machine:
    """A machine with the rig's layout and the function ``fn`` (mov x0,#1; ret)."""
    built = Machine(cpus, memory_size=MEMORY, **options)  # type: ignore[arg-type]
    built.map(TEXT_VA, TEXT_PA, 0x10000, "r-x")
    built.map(DATA_VA, DATA_PA, 0x10000, "rw-")
    built.map(STACK_VA, STACK_PA, STACK_SIZE * len(cpus), "rw-")
    fn = Program(FN_VA)
    fn.emit(OLD_WORD, RET)
    built.load_phys(FN_PA, fn.blob())
    return built


def stack(index: int) -> int:
    """Top of CPU ``index``'s stack."""
    return STACK_VA + STACK_SIZE * (index + 1)


def load(built: Machine, program: Program) -> int:
    """Load ``program`` (in the text window) and return its entry."""
    built.load_phys(program.base - TEXT_VA + TEXT_PA, program.blob())
    return program.base


def done() -> int:
    """``svc #DONE``."""
    return svc(HostService.DONE)


def patcher(base: int, steps: Iterable[str], *, alias: int, new: int = NEW_WORD,
            clean: str = "cvau", targets: Sequence[int] = (FN_VA,)) -> Program:
    """Guest patcher: store ``new`` at ``alias``, then the named maintenance steps
    (``dc``, ``dsb``, ``ic``, ``ialluis``, ``isb``) over ``targets``, then set the flag
    and stop."""
    program = Program(base)
    program.emit(mov64(1, alias), mov64(2, new), str_w(2, 1))
    clean_word = {"cvau": dc_cvau, "civac": dc_civac}[clean]
    for step in steps:
        for target in targets if step in ("dc", "ic") else (0,):
            program.emit(mov64(3, target))
            program.emit({"dc": clean_word(3), "ic": ic_ivau(3)}[step] if step in ("dc", "ic")
                         else {"dsb": DSB_ISH, "isb": ISB, "ialluis": IC_IALLUIS}[step])
    program.emit(mov64(4, FLAG_VA), movz(5, 1, wide=False), str_w(5, 4), done())
    return program


def waiter(base: int, *, isb: bool = True, call: int = FN_VA) -> Program:
    """Guest waiter: spin until the flag is set, [ISB], call ``call``, stop with x0."""
    program = Program(base)
    program.emit(mov64(4, FLAG_VA))
    loop = program.label("loop")
    program.emit(ldr_w(6, 4), lambda pc: cbz_w(pc, 6, loop))
    if isb:
        program.emit(ISB)
    program.emit(lambda pc: bl(pc, call), done())
    return program
