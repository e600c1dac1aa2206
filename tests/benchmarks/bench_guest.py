"""Guest speed against unicorn itself (a plain script, not collected by pytest).

Run: ``python tests/benchmarks/bench_guest.py``.

* **Call loop**: 4 CPUs, the first patches ``fn`` (store through an alias, DC CVAU, DSB,
  IC IVAU, DSB, ISB) and releases the others; then every CPU calls ``fn`` in a loop.
  Checked: the machine with every check on at its default schedule (``rr:100``), and
  at ``pct:0`` (the default of the plugin and the command).
  Yardstick: free-running unicorn, the same loop on 4 hook-less instances, each run to
  its end in one ``emu_start``.
* **Patch-and-call loop**: one CPU stores a new ``fn`` through the alias, runs the
  maintenance sequence and ISB, calls it, and repeats.  Yardstick: bare unicorn doing
  the same job correctly with the least host help: one store hook on the alias that
  stops the CPU so the host can drop the stale translation of ``fn``, then resume.

Each figure is the median of five runs taken in turn, printed with its yardstick and the
ratio (checked / yardstick speed).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import unicorn
from unicorn import UC_ARCH_ARM64, UC_HOOK_MEM_WRITE, UC_MODE_ARM, UC_PROT_ALL, UcError
from unicorn import arm64_const as arm64

from pytest_altpatch.machine import CpuConfig, Machine
from pytest_altpatch.machine.config import QUIET_GROWTH
from tests.machine.a64words import (
    DSB_ISH,
    ISB,
    RET,
    Program,
    b_ne,
    bl,
    cbnz_x,
    cbz_w,
    dc_cvau,
    ic_ivau,
    ldr_w,
    mov64,
    movz,
    str_w,
    sub_imm,
    subs_imm,
    svc,
)

Uc: Any = unicorn.__dict__["Uc"]
CPU = CpuConfig(midr=0x410FD083, revidr=0, mpidr=0x80000000, ctr=0x8444C004)
TEXT, DATA, STACK, ALIAS = 0x400000, 0x600000, 0x800000, 0x7000_0000_0000
FN = TEXT + 0x800
FLAG = DATA + 0x100
ADD_X20_X0 = 0x8B000294  # ADD x20, x20, x0 (shifted register, Rm=0 Rn=20 Rd=20)
MOV_X0_X20 = 0xAA1403E0  # ORR x0, xzr, x20
EOR_W2_W2_W6 = 0x4A060042  # EOR w2, w2, w6 (shifted register: sf=0 01010 00 0 Rm=6 Rn=2 Rd=2)
DONE = 1  # svc #1: the harness's "done" service
#: Runs of each figure, taken in turn; the median is printed.
ROUNDS = 5


def call_loop_programs(alias: int, calls: int) -> tuple[Program, Program]:
    """CPU0 delays, patches fn, sets the flag and loops calling fn; the others wait."""
    patcher = Program(TEXT + 0x1000)
    patcher.emit(movz(9, 2000))
    delay = patcher.label("delay")
    patcher.emit(sub_imm(9, 9, 1), lambda pc: cbnz_x(pc, 9, delay))
    patcher.emit(mov64(1, alias), mov64(2, movz(0, 2)), str_w(2, 1), mov64(3, FN),
                 dc_cvau(3), DSB_ISH, ic_ivau(3), DSB_ISH, ISB)
    patcher.emit(mov64(4, FLAG), movz(5, 1, wide=False), str_w(5, 4))
    worker = Program(TEXT + 0x2000)
    worker.emit(mov64(4, FLAG))
    spin = worker.label("spin")
    worker.emit(ldr_w(6, 4), lambda pc: cbz_w(pc, 6, spin), ISB)
    for program in (patcher, worker):
        program.emit(mov64(7, calls), movz(20, 0))
        loop = program.label("loop")
        program.emit(lambda pc: bl(pc, FN), ADD_X20_X0, subs_imm(7, 7, 1),
                     lambda pc, target=loop: b_ne(pc, target), MOV_X0_X20, svc(DONE))
    return patcher, worker


def patch_call_program(alias: int, iterations: int) -> Program:
    """Store mov x0,#1 / mov x0,#2 alternately into fn, maintain, ISB, call; repeat."""
    program = Program(TEXT + 0x1000)
    one, two = movz(0, 1), movz(0, 2)
    program.emit(mov64(1, alias), mov64(3, FN), mov64(2, one), mov64(6, one ^ two),
                 mov64(7, iterations), movz(20, 0))
    loop = program.label("loop")
    program.emit(EOR_W2_W2_W6, str_w(2, 1), dc_cvau(3), DSB_ISH, ic_ivau(3), DSB_ISH, ISB,
                 lambda pc: bl(pc, FN), ADD_X20_X0, subs_imm(7, 7, 1),
                 lambda pc, target=loop: b_ne(pc, target), MOV_X0_X20, svc(DONE))
    return program


def checked_machine(cpus: int, schedule: str = "rr:100") -> Machine:
    """A machine with text, data and stack mapped, at ``schedule`` (its default)."""
    machine = Machine([CPU] * cpus, memory_size=0x100000, schedule=schedule)
    machine.map(TEXT, 0, 0x10000, "r-x")
    machine.map(DATA, 0x10000, 0x10000, "rw-")
    machine.map(STACK, 0x20000, 0x10000, "rw-")
    return machine


def checked_call_loop(calls: int, schedule: str = "rr:100") -> tuple[float, int]:
    """Seconds and instructions of the 4-CPU call loop on the machine (asserting results)."""
    machine = checked_machine(4, schedule)
    alias = machine.vmap(FN - TEXT, 4)
    fn = Program(FN)
    fn.emit(movz(0, 1), RET)
    machine.load_phys(FN - TEXT, fn.blob())
    patcher, worker = call_loop_programs(alias, calls)
    machine.load_phys(patcher.base - TEXT, patcher.blob())
    machine.load_phys(worker.base - TEXT, worker.blob())
    for cpu in range(4):
        machine.start_cpu(cpu, patcher.base if cpu == 0 else worker.base,
                          sp=STACK + 0x4000 * (cpu + 1))
    start = time.perf_counter()
    result = machine.run()
    elapsed = time.perf_counter() - start
    assert result.reason == "stopped" and not result.findings, result
    assert all(c.result == 2 * calls for c in result.cpus), result.cpus
    return elapsed, result.instructions


class _Bare:
    """Hook-less unicorn instances over one buffer (text, data, stack, alias of fn)."""

    def __init__(self, cpus: int) -> None:
        size = 0x100000
        self.buffer = mmap.mmap(-1, size)
        self.view = (ctypes.c_char * size).from_buffer(self.buffer)
        base = ctypes.addressof(self.view)
        self.ucs = []
        for index in range(cpus):
            uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM, arm64.UC_CPU_ARM64_MAX)
            uc.mem_map_ptr(TEXT, 0x10000, UC_PROT_ALL, base)
            uc.mem_map_ptr(DATA, 0x10000, UC_PROT_ALL, base + 0x10000)
            uc.mem_map_ptr(STACK, 0x10000, UC_PROT_ALL, base + 0x20000)
            uc.mem_map_ptr(ALIAS, 0x1000, UC_PROT_ALL, base)
            uc.reg_write(arm64.UC_ARM64_REG_SP, STACK + 0x4000 * (index + 1))
            self.ucs.append(uc)

    def load(self, program: Program) -> None:
        blob = program.blob()
        self.buffer[program.base - TEXT:program.base - TEXT + len(blob)] = blob


def _bare_call_loop(calls: int) -> tuple[_Bare, Program]:
    """4 hook-less instances holding the patched fn, the flag set and the worker loop."""
    bare = _Bare(4)
    fn = Program(FN)
    fn.emit(movz(0, 2), RET)
    bare.load(fn)
    _, worker = call_loop_programs(ALIAS + (FN - TEXT), calls)
    bare.load(worker)
    bare.buffer[0x10100:0x10104] = (1).to_bytes(4, "little")
    return bare, worker


def free_call_loop(calls: int) -> float:
    """Seconds of the same call loop on 4 free-running unicorn instances (patched by host)."""
    bare, worker = _bare_call_loop(calls)
    start = time.perf_counter()
    for uc in bare.ucs:
        with contextlib.suppress(UcError):  # the final svc: done
            uc.emu_start(worker.base, 1 << 48)
        assert uc.reg_read(arm64.UC_ARM64_REG_X0) == 2 * calls
    return time.perf_counter() - start


def sliced_call_loop(calls: int, quantum: int) -> float:
    """Seconds of the same call loop on 4 hook-less instances taking turns of
    ``quantum`` instructions: unicorn's own cost of interleaving deterministically
    (its instruction count instruments every instruction), the ceiling of any
    checked schedule."""
    bare, worker = _bare_call_loop(calls)
    pcs = {index: worker.base for index in range(len(bare.ucs))}
    start = time.perf_counter()
    while pcs:
        for index in list(pcs):
            uc = bare.ucs[index]
            try:
                uc.emu_start(pcs[index], 1 << 48, 0, quantum)
            except UcError:  # the final svc: done
                assert uc.reg_read(arm64.UC_ARM64_REG_X0) == 2 * calls
                del pcs[index]
                continue
            pcs[index] = uc.reg_read(arm64.UC_ARM64_REG_PC)
    return time.perf_counter() - start


def checked_patch_call(iterations: int) -> float:
    """Seconds of the patch-and-call loop on the machine (asserting no finding)."""
    machine = checked_machine(1)
    alias = machine.vmap(FN - TEXT, 4)
    fn = Program(FN)
    fn.emit(movz(0, 1), RET)
    machine.load_phys(FN - TEXT, fn.blob())
    program = patch_call_program(alias, iterations)
    machine.load_phys(program.base - TEXT, program.blob())
    machine.start_cpu(0, program.base, sp=STACK + 0x4000)
    start = time.perf_counter()
    result = machine.run()
    elapsed = time.perf_counter() - start
    assert result.reason == "stopped" and not result.findings, result
    # Stores alternate 2, 1, 2, ...: the sum is 3 per pair (+2 for an odd count).
    assert result.cpus[0].result == 3 * (iterations // 2) + 2 * (iterations % 2), result.cpus
    return elapsed


def bare_patch_call(iterations: int) -> float:
    """Seconds of the patch-and-call loop on bare unicorn with one alias store hook."""
    bare = _Bare(1)
    uc = bare.ucs[0]
    fn = Program(FN)
    fn.emit(movz(0, 1), RET)
    bare.load(fn)
    program = patch_call_program(ALIAS + (FN - TEXT), iterations)
    bare.load(program)
    stored = [False]

    def on_store(engine: Any, _access: int, _address: int, _size: int, _value: int,
                 _data: object) -> None:
        stored[0] = True
        engine.emu_stop()

    uc.hook_add(UC_HOOK_MEM_WRITE, on_store, None, ALIAS, ALIAS + 0xFFF)
    pc = program.base
    start = time.perf_counter()
    while True:
        stored[0] = False
        try:
            uc.emu_start(pc, 1 << 48)
        except UcError:  # the final svc: done
            break
        pc = uc.reg_read(arm64.UC_ARM64_REG_PC)
        if stored[0]:
            # Unicorn stopped before the store: do it, drop fn's translation, step past.
            value = uc.reg_read(arm64.UC_ARM64_REG_X2) & 0xFFFF_FFFF
            bare.buffer[FN - TEXT:FN - TEXT + 4] = value.to_bytes(4, "little")
            uc.ctl_remove_cache(FN, FN + 4)
            pc += 4
    elapsed = time.perf_counter() - start
    assert uc.reg_read(arm64.UC_ARM64_REG_X0) == 3 * (iterations // 2) + 2 * (iterations % 2)
    return elapsed


def main() -> None:
    """Print each figure with its yardstick and the ratio."""
    calls = 400_000
    Machine([CPU], memory_size=0x10000)  # one-time library initialisation
    longest = 100 * QUIET_GROWTH
    # Each figure is the median of ROUNDS runs taken in turn (one run of the free loop
    # is about 20 ms, so a single pause of the shared machine would move it by 10%).
    runs: dict[str, list[float]] = {"checked": [], "pct": [], "free": [], "sliced": []}
    instructions = 0
    for _ in range(ROUNDS):  # (the yardsticks in the same rounds: the machine's speed moves)
        seconds, instructions = checked_call_loop(calls)
        runs["checked"].append(seconds)
        runs["free"].append(free_call_loop(calls))
        # pct:0, the default of the plugin and the command, against the same yardstick.
        runs["pct"].append(checked_call_loop(calls, "pct:0")[0])
        runs["sliced"].append(sliced_call_loop(calls, longest))
    checked, pct, free, sliced = (statistics.median(runs[k])
                                  for k in ("checked", "pct", "free", "sliced"))
    work = 6 * calls * 4  # bl, mov, ret, add, subs, b.ne per call (granted slices overcount)
    rate, free_rate, sliced_rate = work / checked / 1e6, work / free / 1e6, work / sliced / 1e6
    print(f"call loop, 4 CPUs, checked at rr:100: {rate:7.1f} M instructions/s; "
          f"free-running unicorn {free_rate:7.1f} M/s; ratio {rate / free_rate:.3f}x "
          "(goal >= 0.3x)")
    print(f"  (unicorn itself taking turns of {longest} instructions, no hooks: "
          f"{sliced_rate:7.1f} M/s, {sliced_rate / free_rate:.3f}x free-running; "
          f"checked is {rate / sliced_rate:.3f}x of that; {instructions} instructions granted)")
    pct_rate = work / pct / 1e6
    print(f"call loop, 4 CPUs, checked at pct:0: {pct_rate:7.1f} M instructions/s; "
          f"ratio {pct_rate / free_rate:.3f}x free-running (goal >= 0.3x)")
    iterations = 2000
    pairs = [(checked_patch_call(iterations), bare_patch_call(iterations))
             for _ in range(ROUNDS)]
    checked = statistics.median(pair[0] for pair in pairs)
    bare = statistics.median(pair[1] for pair in pairs)
    print(f"patch-and-call loop: checked {checked / iterations * 1e6:8.1f} us/iteration; "
          f"bare unicorn {bare / iterations * 1e6:8.1f} us/iteration; "
          f"ratio {checked / bare:.1f}x (goal <= 5x)")


if __name__ == "__main__":
    main()
