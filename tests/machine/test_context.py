"""Python patchers acting through CpuContext, interleaved with guest CPUs."""

from __future__ import annotations

import gc

from pytest_altpatch.machine import Budget, CpuContext, GuestFault, Machine

from . import rig

WAITER = rig.TEXT_VA + 0x2000


def stop_machine_patcher(*, isb_on_waiters: bool) -> object:
    """A stop_machine-style patcher: CPU0 patches fn through a vmap alias with the full
    maintenance sequence and releases the others, which wait and then (maybe) ISB."""

    def patch(ctx: CpuContext) -> object:
        if ctx.cpu == 0:
            alias = ctx.vmap(rig.FN_PA, 4)
            ctx.write32(alias, rig.NEW_WORD)
            ctx.dc("cvau", rig.FN_VA)
            ctx.dsb("ish")
            ctx.ic("ivau", rig.FN_VA)
            ctx.dsb("ish")
            ctx.isb()
            ctx.vunmap(alias)
            ctx.store_release32(rig.FLAG_VA, 1)
        else:
            while ctx.load_acquire32(rig.FLAG_VA) == 0:
                ctx.relax()
            if isb_on_waiters:
                ctx.isb()
        return ctx.sysreg("midr_el1")

    return patch


def patched(isb_on_waiters: bool) -> Machine:
    built = rig.machine([rig.cpu(index=i) for i in range(3)], schedule="rr:3")
    fn = stop_machine_patcher(isb_on_waiters=isb_on_waiters)
    for index in range(3):
        built.start_python(index, fn)  # type: ignore[arg-type]
    result = built.run()
    assert result.reason == "stopped"
    assert [c.state for c in result.cpus] == ["done"] * 3
    assert [c.result for c in result.cpus] == [0x410FD083] * 3
    return built


def test_python_patcher_with_isb_everywhere_passes_probes_on_every_cpu() -> None:
    built = patched(isb_on_waiters=True)
    for index in range(3):
        probe = built.probe(index, rig.FN_VA)
        assert probe.completed
        assert probe.x[0] == 2
        assert probe.findings == ()


def test_python_patcher_forgetting_isb_on_waiting_cpus_is_caught() -> None:
    built = patched(isb_on_waiters=False)
    assert built.probe(0, rig.FN_VA).findings == ()
    for index in (1, 2):
        (finding,) = built.probe(index, rig.FN_VA).findings
        assert finding.code == "stale-fetch"
        assert finding.detail["missing"] == "context-synchronization"
        assert finding.cpu == index


def test_python_patcher_forgetting_isb_is_caught_when_a_guest_cpu_waits() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)], schedule="rr:5")

    def patch(ctx: CpuContext) -> None:
        alias = ctx.vmap(rig.FN_PA, 4)
        ctx.write32(alias, rig.NEW_WORD)
        for step in ("dc", "dsb", "ic", "dsb"):
            if step == "dc":
                ctx.dc("cvau", alias)
            elif step == "ic":
                ctx.ic("ivau", rig.FN_VA)
            else:
                ctx.dsb()
        ctx.write32(rig.FLAG_VA, 1)

    rig.load(built, rig.waiter(WAITER, isb=False))
    built.start_python(0, patch)
    built.start_cpu(1, WAITER, sp=rig.stack(1))
    result = built.run()
    assert [f.code for f in result.findings] == ["stale-fetch"]
    assert result.findings[0].detail["missing"] == "context-synchronization"


def test_python_write_through_the_text_va_is_ro_write_and_raises_guest_fault() -> None:
    built = rig.machine([rig.cpu()])
    caught: list[str] = []

    def patch(ctx: CpuContext) -> None:
        try:
            ctx.write32(rig.FN_VA, rig.NEW_WORD)
        except GuestFault as fault:
            caught.append(fault.finding.code)
            raise

    built.start_python(0, patch)
    result = built.run()
    assert caught == ["ro-write"]
    assert [f.code for f in result.findings] == ["ro-write"]
    assert result.findings[0].address == rig.FN_VA
    outcome = result.cpus[0]
    assert outcome.state == "faulted"
    assert outcome.exception is not None and outcome.exception.type == "GuestFault"
    assert built.read_phys(rig.FN_PA, 4) == rig.OLD_WORD.to_bytes(4, "little")


def test_python_exception_is_recorded_not_raised() -> None:
    built = rig.machine([rig.cpu()])

    def patch(ctx: CpuContext) -> None:
        ctx.relax()
        raise KeyError("no such site")

    built.start_python(0, patch)
    result = built.run()
    exception = result.cpus[0].exception
    assert exception is not None
    assert (exception.type, exception.message) == ("KeyError", "'no such site'")
    assert "raise KeyError" in exception.traceback


def test_python_cpu_looping_forever_is_ended_by_the_budget_or_as_a_hang() -> None:
    busy = rig.machine([rig.cpu()], budget=Budget(instructions=2000))

    def counting(ctx: CpuContext) -> None:
        value = 0
        while True:
            value += 1
            ctx.write32(rig.FLAG_VA, value)

    busy.start_python(0, counting)
    assert busy.run().reason == "budget"

    idle = rig.machine([rig.cpu()], budget=Budget(hang_checks=3, hang_check_rounds=1))

    def spinning(ctx: CpuContext) -> None:
        while ctx.load_acquire32(rig.FLAG_VA) == 0:
            ctx.relax()

    idle.start_python(0, spinning)
    assert idle.run().reason == "hang"


def test_context_operations_interleave_with_guest_cpus_under_adversarial() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)], schedule="adversarial")

    def patch(ctx: CpuContext) -> None:
        for value in range(1, 4):
            ctx.write32(rig.FLAG_VA + 4, value)

    counter = rig.Program(WAITER)
    counter.emit(rig.mov64(4, rig.FLAG_VA + 4), rig.movz(7, 30))
    loop = counter.label("loop")
    counter.emit(rig.ldr_w(0, 4), rig.svc(4), rig.subs_imm(7, 7, 1),
                 lambda pc: rig.b_ne(pc, loop), rig.done())
    rig.load(built, counter)
    built.start_python(0, patch)
    built.start_cpu(1, WAITER, sp=rig.stack(1))
    built.run()
    logged = [int(e.detail.split()[0], 16) for e in built.trace if e.kind == "log"]
    # The guest saw every intermediate value: one Python step per slice.
    assert {1, 2, 3} <= set(logged)


def test_an_invalidate_of_everything_runs_with_the_collector_off() -> None:
    """IC IALLUIS after many stores to code gives every word's record a set per CPU: the
    cyclic collector is off while the fetch model does that (its passes over the
    records made large patches superlinear), only then, and the result is the same."""
    seen: list[tuple[str, bool]] = []
    words = 3000
    built = rig.machine([rig.cpu(index=i) for i in range(4)])
    fetch = built._fetch
    records = fetch._invalidate

    def watched(cpu: int, pa: int | None, scope: str, *rest: object) -> None:
        seen.append((scope, gc.isenabled()))
        records(cpu, pa, scope, *rest)  # type: ignore[arg-type]

    def patch(ctx: CpuContext) -> object:
        alias = ctx.vmap(rig.FN_PA, 4 * words)
        for index in range(words):
            ctx.write32(alias + 4 * index, rig.NEW_WORD)
        for index in range(0, 4 * words, 64):
            ctx.dc("cvau", rig.FN_VA + index)
        ctx.dsb("ish")
        ctx.ic("ivau", rig.FN_VA)
        ctx.ic("ialluis")
        ctx.dsb("ish")
        ctx.isb()
        return ctx.read32(rig.FN_VA + 4 * (words - 1))

    fetch._invalidate = watched  # type: ignore[method-assign]
    built.start_python(0, patch)
    result = built.run()
    assert result.reason == "stopped" and result.cpus[0].result == rig.NEW_WORD
    assert not result.findings and seen == [("va", True), ("all", False)]
    assert gc.isenabled()
