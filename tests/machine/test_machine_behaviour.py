"""Memory rules, cmodx, scheduling, budgets, faults and ID registers of the machine."""

from __future__ import annotations

from pytest_altpatch.a64.granule import PAGE_SIZE
from pytest_altpatch.machine import PROBE_TRAP_VA, Budget, CpuConfig, HostService, Machine

from . import rig
from .a64words import (
    DSB_ISH,
    ISB,
    NOP,
    RET,
    Program,
    b,
    b_ne,
    bl,
    brk,
    cbz_w,
    dc_cvau,
    hvc,
    ic_ivau,
    ldar_w,
    ldr_w,
    mov64,
    movz,
    mrs,
    smc,
    str_w,
    sub_imm,
    subs_imm,
    svc,
    udf,
)

CODE = rig.TEXT_VA + PAGE_SIZE


def single(program: Program, *, cpus: int = 1, **options: object) -> Machine:
    built = rig.machine([rig.cpu(index=i) for i in range(cpus)], **options)
    rig.load(built, program)
    built.start_cpu(0, program.base, sp=rig.stack(0))
    return built


def test_store_to_read_only_text_is_ro_write_and_does_not_happen() -> None:
    program = Program(CODE)
    program.emit(mov64(1, rig.FN_VA), movz(2, 0x1234), str_w(2, 1), rig.done())
    built = single(program)
    result = built.run()
    assert [f.code for f in result.findings] == ["ro-write"]
    finding = result.findings[0]
    assert (finding.cpu, finding.pc, finding.address) == (0, CODE + 4 * (len(program.words) - 2),
                                                           rig.FN_VA)
    assert built.read_phys(rig.FN_PA, 4) == rig.OLD_WORD.to_bytes(4, "little")
    assert result.cpus[0].state == "faulted"


def test_alias_write_reaches_text_fetch_only_after_the_full_sequence() -> None:
    built = rig.machine([rig.cpu()])
    alias = built.vmap(rig.FN_PA, 4)
    program = Program(CODE)
    program.emit(lambda pc: bl(pc, rig.FN_VA), movz(20, 0), 0xAA0003F4)  # mov x20, x0
    program.emit(mov64(1, alias), mov64(2, rig.NEW_WORD), str_w(2, 1))
    program.emit(mov64(3, rig.FN_VA), dc_cvau(3), DSB_ISH, ic_ivau(3), DSB_ISH, ISB)
    program.emit(lambda pc: bl(pc, rig.FN_VA), rig.done())
    rig.load(built, program)
    built.start_cpu(0, CODE, sp=rig.stack(0))
    result = built.run()
    assert result.findings == ()
    assert result.cpus[0].result == 2
    assert built.read_phys(rig.FN_PA, 4) == rig.NEW_WORD.to_bytes(4, "little")
    # Executing between the write and the sequence is a stale fetch:
    early = rig.machine([rig.cpu()])
    alias = early.vmap(rig.FN_PA, 4)
    program = Program(CODE)
    program.emit(lambda pc: bl(pc, rig.FN_VA))
    program.emit(mov64(1, alias), mov64(2, rig.NEW_WORD), str_w(2, 1))
    program.emit(lambda pc: bl(pc, rig.FN_VA), rig.done())
    rig.load(early, program)
    early.start_cpu(0, CODE, sp=rig.stack(0))
    assert [f.code for f in early.run().findings] == ["stale-fetch"]


def cmodx_run(old: int, new: int) -> list[str]:
    """CPU1 executes ``site`` in a loop while CPU0 rewrites it (no maintenance)."""
    built = rig.machine([rig.cpu(), rig.cpu(index=1)], schedule="rr:7")
    site = rig.TEXT_VA + 0x3000
    site_pa = site - rig.TEXT_VA
    built.load_phys(site_pa, b"".join(w.to_bytes(4, "little") for w in (old, RET)))
    alias = built.vmap(site_pa, 4)
    writer = Program(CODE)
    writer.emit(movz(9, 40))
    spin = writer.label("spin")
    writer.emit(sub_imm(9, 9, 1), lambda pc: rig.cbnz_x(pc, 9, spin))
    writer.emit(mov64(1, alias), mov64(2, new), str_w(2, 1), rig.done())
    runner = Program(CODE + 0x400)
    runner.emit(mov64(4, rig.FLAG_VA), movz(7, 60))
    loop = runner.label("loop")
    runner.emit(lambda pc: bl(pc, site), subs_imm(7, 7, 1), lambda pc: b_ne(pc, loop),
                rig.done())
    rig.load(built, writer)
    rig.load(built, runner)
    built.start_cpu(0, writer.base, sp=rig.stack(0))
    built.start_cpu(1, runner.base, sp=rig.stack(1))
    result = built.run()
    assert [c.state for c in result.cpus] == ["done", "done"]
    return [f.code for f in result.findings]


def test_cmodx_nop_to_b_and_back_is_not_a_finding() -> None:
    branch_next = 0x14000001  # B .+4 (same effect as NOP)
    assert cmodx_run(NOP, branch_next) == []
    assert cmodx_run(branch_next, NOP) == []


def test_cmodx_ldr_to_ldar_and_back_is_a_finding() -> None:
    assert cmodx_run(ldr_w(9, 4), ldar_w(9, 4)) == ["cmodx"]
    assert cmodx_run(ldar_w(9, 4), ldr_w(9, 4)) == ["cmodx"]


def racy(schedule: str, seed: int = 0) -> Machine:
    """Two CPUs increment a shared counter non-atomically and log each step."""
    built = rig.machine([rig.cpu(), rig.cpu(index=1)], schedule=schedule, seed=seed)
    program = Program(CODE)
    program.emit(mov64(4, rig.FLAG_VA), movz(7, 100))
    loop = program.label("loop")
    program.emit(ldr_w(0, 4), rig.add_imm(0, 0, 1), str_w(0, 4), svc(HostService.LOG),
                 subs_imm(7, 7, 1), lambda pc: b_ne(pc, loop), rig.done())
    rig.load(built, program)
    built.start_cpu(0, CODE, sp=rig.stack(0))
    built.start_cpu(1, CODE, sp=rig.stack(1))
    assert built.run().reason == "stopped"
    return built


def test_same_seed_gives_identical_trace_bytes() -> None:
    assert racy("random:7").trace.to_bytes() == racy("random:7").trace.to_bytes()
    assert racy("adversarial").trace.to_bytes() == racy("adversarial").trace.to_bytes()


def test_two_seeds_interleave_a_racy_program_differently() -> None:
    def order(built: Machine) -> list[int]:
        return [e.cpu for e in built.trace if e.kind == "log"]

    assert order(racy("random:1")) != order(racy("random:2"))
    assert order(racy("random:1", seed=0)) != order(racy("random:1", seed=5))


def test_all_cpus_spinning_ends_as_hang_with_every_pc() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)],
                        budget=Budget(hang_checks=4, hang_check_rounds=2))
    program = Program(CODE)
    program.emit(mov64(4, rig.FLAG_VA))
    spin = program.label("spin")
    program.emit(ldr_w(6, 4), lambda pc: cbz_w(pc, 6, spin), rig.done())
    rig.load(built, program)
    built.start_cpu(0, CODE, sp=rig.stack(0))
    built.start_cpu(1, CODE, sp=rig.stack(1))
    result = built.run()
    assert result.reason == "hang"
    (finding,) = result.findings
    assert finding.code == "hang"
    pcs = finding.detail["pcs"]
    assert set(pcs) == {0, 1}  # type: ignore[arg-type]
    assert all(spin <= pc <= spin + 4 for pc in pcs.values())  # type: ignore[attr-defined]


def test_budget_ends_a_runaway_cpu_with_its_instruction_count() -> None:
    program = Program(CODE)
    program.emit(movz(9, 0))
    loop = program.label("loop")
    program.emit(rig.add_imm(9, 9, 1), lambda pc: b(pc, loop))
    built = single(program, budget=Budget(instructions=5000))
    result = built.run()
    assert result.reason == "budget"
    assert [f.code for f in result.findings] == ["budget"]
    assert result.instructions >= 5000
    assert result.findings[0].detail["instructions"] == result.instructions


def test_guest_faults_become_findings_and_never_raise() -> None:
    cases = {
        "unmapped-load": [mov64(1, 0x1230000), ldr_w(0, 1)],
        "hvc": [hvc(0)],
        "smc": [smc(1)],
        "brk": [brk(0x800)],
        "udf": [udf(0)],
        "unknown-svc": [svc(0x99)],
        "bug": [movz(0, 7), svc(HostService.BUG)],
        "fetch-rw": [mov64(1, rig.DATA_VA), 0xD63F0020],  # blr x1
    }
    built = rig.machine([rig.cpu(index=i) for i in range(len(cases))])
    for index, words in enumerate(cases.values()):
        program = Program(CODE + 0x100 * index)
        program.emit(*words, rig.done())
        rig.load(built, program)
        built.start_cpu(index, program.base, sp=rig.stack(0))
    result = built.run()
    assert all(c.state == "faulted" for c in result.cpus)
    by_cpu = {f.cpu: f.code for f in result.findings}
    assert by_cpu == {
        0: "unmapped-access", 1: "guest-exception", 2: "guest-exception",
        3: "guest-exception", 4: "undefined-instruction", 5: "unknown-service", 6: "bug",
        7: "fetch-fault",
    }


def test_mrs_returns_each_cpus_own_identity_on_big_little() -> None:
    little = CpuConfig(midr=0x410FD034, revidr=0x80, mpidr=0x80000000, ctr=0x84448004,
                       id_regs={"id_aa64isar0_el1": 0x11120, "id_aa64pfr0_el1": 0x1111})
    big = CpuConfig(midr=0x410FD0C0, revidr=0x3, mpidr=0x81000100, ctr=0x9444C004,
                    id_regs={"id_aa64isar0_el1": 0x1021111110212120,
                             "id_aa64mmfr1_el1": 0x10211122})
    built = rig.machine([little, big])
    registers = [(3, 0, 0, 0, 0), (3, 0, 0, 0, 6), (3, 0, 0, 0, 5), (3, 3, 0, 0, 1),
                 (3, 0, 0, 6, 0), (3, 0, 0, 4, 0), (3, 0, 0, 7, 1), (3, 0, 0, 7, 2)]
    program = Program(CODE)
    program.emit(mov64(8, rig.DATA_VA + 0x400))
    program.emit(0xD53800A5)  # mrs x5, mpidr_el1
    program.emit(0xD3483CA5)  # ubfx x5, x5, #8, #8 (Aff1: 0 little, 1 big)
    program.emit(0x8B051908)  # add x8, x8, x5, lsl #6
    for index, key in enumerate(registers):
        program.emit(mrs(0, *key), 0xF9000100 | index << 10)  # str x0, [x8, #8*index]
    program.emit(rig.done())
    rig.load(built, program)
    built.start_cpu(0, CODE, sp=rig.stack(0))
    built.start_cpu(1, CODE, sp=rig.stack(1))
    result = built.run()
    assert result.findings == ()
    for slot, config in enumerate((little, big)):
        raw = built.read_phys(rig.DATA_PA + 0x400 + 64 * slot, 8 * len(registers))
        values = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
        assert values == [
            config.midr, config.revidr, config.mpidr, config.ctr,
            config.id_regs.get("id_aa64isar0_el1", 0), config.id_regs.get("id_aa64pfr0_el1", 0),
            config.id_regs.get("id_aa64mmfr1_el1", 0), 0,
        ]


def test_probe_calls_a_function_with_arguments_and_restores_the_cpu() -> None:
    built = rig.machine([rig.cpu()])
    function = Program(CODE)
    function.emit(0x8B010000, RET)  # add x0, x0, x1 ; ret
    rig.load(built, function)
    probe = built.probe(0, CODE, {0: 40, 1: 2})
    assert probe.completed
    assert probe.x[0] == 42
    assert probe.findings == ()
    assert built.cpu_state(0) == "idle"
    spinning = Program(CODE + 0x100)
    spinning.emit(lambda pc: b(pc, pc))
    rig.load(built, spinning)
    stuck = built.probe(0, CODE + 0x100, budget=1000)
    assert not stuck.completed
    assert [f.code for f in stuck.findings] == ["budget"]


def _stray_run(*, probe_first: bool) -> tuple[list[tuple[str, str | None]], list[str]]:
    """A run (not a probe) that branches to the probe's return trap."""
    built = rig.machine([rig.cpu()])
    function = Program(CODE)
    function.emit(movz(0, 7), RET)
    rig.load(built, function)
    if probe_first:
        assert built.probe(0, CODE).completed
    stray = Program(CODE + 0x100)
    stray.emit(mov64(1, PROBE_TRAP_VA), 0xD61F0020)  # br x1
    rig.load(built, stray)
    built.start_cpu(0, stray.base, sp=rig.stack(0))
    result = built.run()
    after = built.probe(0, CODE)  # and a probe after it still returns through the trap
    return [(f.code, f.message) for f in result.findings], [result.cpus[0].state,
                                                             str(after.completed), str(after.x[0])]


def test_a_probe_return_is_taken_without_an_exception_and_stays_an_svc_elsewhere() -> None:
    built = rig.machine([rig.cpu()])
    function = Program(CODE)
    function.emit(movz(0, 7), RET)
    rig.load(built, function)
    first, second = built.probe(0, CODE), built.probe(0, CODE)
    assert first.completed and second.completed and first.x[0] == second.x[0] == 7
    services = [e for e in built.trace.events if e.kind == "service"]
    assert [(e.cpu, e.address) for e in services] == [(0, PROBE_TRAP_VA)] * 2
    # Unicorn bakes the probe's exit into its translation of the trap word: a later run
    # that reaches the word outside a probe still executes its SVC (an unknown service).
    never_probed, probed = _stray_run(probe_first=False), _stray_run(probe_first=True)
    assert never_probed == probed
    assert [code for code, _ in probed[0]] == ["unknown-service"]
    assert probed[1] == ["faulted", "True", "7"]


def test_a_run_that_stops_before_the_probe_trap_still_takes_its_svc() -> None:
    # Should unicorn stop a run on the trap word (the probe's exit baked into that
    # translation), the SVC is taken as the word says: here every slice is given the
    # trap as its exit, as a probe would have left it.
    built = rig.machine([rig.cpu()])
    stray = Program(CODE + 0x100)
    stray.emit(mov64(1, PROBE_TRAP_VA), 0xD61F0020)  # br x1
    rig.load(built, stray)
    uc = built._cpus[0].uc
    real = uc.emu_start

    def with_the_trap_as_exit(begin: int, _until: int, timeout: int = 0, count: int = 0) -> None:
        real(begin, PROBE_TRAP_VA, timeout, count)

    uc.emu_start = with_the_trap_as_exit
    built.start_cpu(0, stray.base, sp=rig.stack(0))
    result = built.run()
    assert [f.code for f in result.findings] == ["unknown-service"]
    assert result.findings[0].pc == PROBE_TRAP_VA
    assert result.cpus[0].state == "faulted"
