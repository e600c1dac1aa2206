"""Benchmark of the emulated machine (a plain script, not collected by pytest).

Run: .venv/bin/python tests/benchmarks/bench_machine.py

Prints: time to build a 4-CPU machine; aggregate guest speed with every check on,
for a 4-CPU spin-and-patch program, next to bare unicorn running the same code with
the same round-robin slices; and the cost of one Python context operation.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_PROT_ALL, Uc, UcError
from unicorn import arm64_const as arm64

from pytest_altpatch.machine import CpuConfig, CpuContext, Machine
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

CTR = 0x8444C004
CPU = CpuConfig(midr=0x410FD083, revidr=0, mpidr=0x80000000, ctr=CTR)
TEXT, DATA, STACK, ALIAS = 0x400000, 0x600000, 0x800000, 0xA00000
FN = TEXT + 0x800
FLAG = DATA + 0x100
CALLS = 400_000
ADD_X20_X0 = 0x8B000294  # ADD (shifted register): 1 0 0 01011 00 0 Rm=0 0 Rn=20 Rd=20
MOV_X0_X20 = 0xAA1403E0  # ORR x0, xzr, x20
QUANTUM = 1000


def best(label: str, action: object, repeat: int = 5) -> float:
    """Best wall time of ``action()`` over ``repeat`` runs, printed in ms."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    print(f"{label}: {min(times) * 1e3:.2f} ms (best of {repeat})")
    return min(times)


def programs(alias: int) -> tuple[Program, Program]:
    """CPU0 delays, patches fn with the full sequence, sets the flag, then calls fn in a
    loop; the others spin on the flag, ISB, and call fn in a loop."""
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
        program.emit(mov64(7, CALLS), movz(20, 0))
        loop = program.label("loop")
        # bl fn; add x20, x20, x0; subs x7, x7, #1; b.ne loop; mov x0, x20; svc #DONE
        program.emit(lambda pc: bl(pc, FN), ADD_X20_X0, subs_imm(7, 7, 1),
                     lambda pc, target=loop: b_ne(pc, target), MOV_X0_X20, svc(1))
    return patcher, worker


def build_machine() -> Machine:
    machine = Machine([CPU] * 4, memory_size=0x100000, schedule=f"rr:{QUANTUM}")
    machine.map(TEXT, 0, 0x10000, "r-x")
    machine.map(DATA, 0x10000, 0x10000, "rw-")
    machine.map(STACK, 0x20000, 0x10000, "rw-")
    return machine


def guest_with_checks() -> tuple[float, int]:
    machine = build_machine()
    alias = machine.vmap(FN - TEXT, 4)
    fn = Program(FN)
    fn.emit(movz(0, 1), RET)
    machine.load_phys(FN - TEXT, fn.blob())
    patcher, worker = programs(alias)
    machine.load_phys(patcher.base - TEXT, patcher.blob())
    machine.load_phys(worker.base - TEXT, worker.blob())
    for cpu in range(4):
        machine.start_cpu(cpu, patcher.base if cpu == 0 else worker.base,
                          sp=STACK + 0x4000 * (cpu + 1))
    start = time.perf_counter()
    result = machine.run()
    elapsed = time.perf_counter() - start
    assert result.reason == "stopped" and not result.findings, result
    assert all(c.result == 2 * CALLS for c in result.cpus), result.cpus
    return elapsed, result.instructions


def bare_unicorn(instructions_per_cpu: list[int]) -> float:
    """The same code on 4 bare unicorn instances (no hooks), same round-robin slices;
    the patch is applied by the host before the run."""
    size = 0x100000
    buffer = mmap.mmap(-1, size)
    view = (ctypes.c_char * size).from_buffer(buffer)
    base = ctypes.addressof(view)
    fn = Program(FN)
    fn.emit(movz(0, 2), RET)
    buffer[FN - TEXT:FN - TEXT + 8] = fn.blob()
    _, worker = programs(ALIAS)
    buffer[worker.base - TEXT:worker.base - TEXT + len(worker.blob())] = worker.blob()
    buffer[0x10100:0x10104] = (1).to_bytes(4, "little")
    cpus = []
    for index in range(4):
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM, arm64.UC_CPU_ARM64_MAX)
        uc.ctl_set_tcg_buffer_size(4 << 20)
        uc.mem_map_ptr(TEXT, 0x10000, UC_PROT_ALL, base)
        uc.mem_map_ptr(DATA, 0x10000, UC_PROT_ALL, base + 0x10000)
        uc.mem_map_ptr(STACK, 0x10000, UC_PROT_ALL, base + 0x20000)
        uc.reg_write(arm64.UC_ARM64_REG_SP, STACK + 0x4000 * (index + 1))
        cpus.append([uc, worker.base, 0])
    start = time.perf_counter()
    running = True
    while running:
        running = False
        for index, entry in enumerate(cpus):
            uc, pc, spent = entry
            if spent >= instructions_per_cpu[index]:
                continue
            running = True
            try:
                uc.emu_start(pc, 1 << 48, 0, QUANTUM)
            except UcError:  # the final svc: this CPU is done
                entry[2] = instructions_per_cpu[index]
                continue
            entry[1] = uc.reg_read(arm64.UC_ARM64_REG_PC)
            entry[2] = spent + QUANTUM
    elapsed = time.perf_counter() - start
    del cpus
    return elapsed


def context_operation_cost() -> None:
    machine = build_machine()
    operations = 20_000

    def relaxing(ctx: CpuContext) -> None:
        for _ in range(operations):
            ctx.relax()

    def writing(ctx: CpuContext) -> None:
        for value in range(operations):
            ctx.write32(FLAG, value)

    for name, fn in (("relax", relaxing), ("write32 (data)", writing)):
        machine.start_python(0, fn)
        start = time.perf_counter()
        machine.run()
        elapsed = time.perf_counter() - start
        print(f"context op {name}: {elapsed / operations * 1e6:.2f} us/op "
              f"(rr:{QUANTUM}, one Python CPU)")
    machine = Machine([CPU] * 4, memory_size=0x100000, schedule="adversarial")
    machine.map(DATA, 0x10000, 0x10000, "rw-")
    machine.start_python(0, writing)
    start = time.perf_counter()
    machine.run()
    elapsed = time.perf_counter() - start
    print(f"context op write32 under adversarial (1 op per slice): "
          f"{elapsed / operations * 1e6:.2f} us/op")


def main() -> None:
    Machine([CPU], memory_size=0x10000)  # one-time library initialisation
    best("build Machine(4 CPUs)", lambda: Machine([CPU] * 4, memory_size=0x100000))
    best("build Machine(4 CPUs) + 3 mappings", build_machine)
    best("build Machine(256 CPUs)", lambda: Machine([CPU] * 256, memory_size=0x100000),
         repeat=1)
    elapsed, instructions = guest_with_checks()
    rate = instructions / elapsed / 1e6
    print(f"4-CPU spin-and-patch, all checks, rr:{QUANTUM}: {instructions} instructions "
          f"in {elapsed * 1e3:.1f} ms = {rate:.1f} M instructions/s")
    per_cpu = [instructions // 4] * 4
    bare = bare_unicorn(per_cpu)
    bare_rate = sum(per_cpu) / bare / 1e6
    print(f"bare unicorn, same code and slices: {bare_rate:.1f} M instructions/s; "
          f"ratio {rate / bare_rate:.2f}")
    context_operation_cost()


if __name__ == "__main__":
    main()
