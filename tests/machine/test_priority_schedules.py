"""``pct:SEED`` priority schedules: who runs ahead, determinism, spins and hangs."""

from __future__ import annotations

import pytest

from pytest_altpatch.machine import Budget, CpuContext, MachineError, Schedule
from pytest_altpatch.pipeline import parse_schedules
from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES

from . import rig


def release_then_maintain(ctx: CpuContext) -> None:
    """CPU0 writes fn, releases the flag, then does the maintenance (the bug); the
    others wait for the flag and ISB."""
    if ctx.cpu == 0:
        alias = ctx.vmap(rig.FN_PA, 4)
        ctx.write32(alias, rig.NEW_WORD)
        ctx.store_release32(rig.FLAG_VA, 1)
        ctx.dc("cvau", rig.FN_VA)
        ctx.dsb("ish")
        ctx.ic("ivau", rig.FN_VA)
        ctx.dsb("ish")
        ctx.isb()
        ctx.vunmap(alias)
        return
    while ctx.load_acquire32(rig.FLAG_VA) == 0:
        ctx.relax()
    ctx.isb()


def run_rendezvous(schedule: str, cpus: int = 2) -> tuple[list[tuple[int, str]], bool]:
    """The (cpu, kind) of every ISB/IC/DSB event, and whether a waiter's probe of the
    patched function finds stale text."""
    built = rig.machine([rig.cpu(index=i) for i in range(cpus)], schedule=schedule)
    for index in range(cpus):
        built.start_python(index, release_then_maintain)
    assert built.run().reason == "stopped"
    order = [(e.cpu, e.kind) for e in built.trace if e.kind in ("isb", "ic", "dsb")]
    stale = any(f.code == "stale-fetch" for i in range(1, cpus)
                for f in built.probe(i, rig.FN_VA).findings)
    return order, stale


def test_pct0_runs_the_waiter_as_soon_as_the_flag_is_released() -> None:
    order, stale = run_rendezvous("pct:0")
    # The waiter's ISB comes right after the release, before CPU0's IC: stale text.
    assert order[0] == (1, "isb")
    assert stale


def test_round_robin_with_big_slices_lets_cpu0_finish_first_and_misses_the_bug() -> None:
    order, stale = run_rendezvous("rr:100")
    assert order[-1] == (1, "isb")
    assert not stale


def test_pct1_runs_the_patching_cpu_first() -> None:
    order, stale = run_rendezvous("pct:1")
    assert order[-1] == (1, "isb")
    assert not stale


def test_pct0_catches_the_bug_with_every_waiter_of_four_cpus() -> None:
    order, stale = run_rendezvous("pct:0", cpus=4)
    assert {cpu for cpu, kind in order[:3]} == {1, 2, 3}
    assert stale


@pytest.mark.parametrize("schedule", ["pct:0", "pct:1", "pct:7"])
def test_priority_schedules_are_deterministic(schedule: str) -> None:
    def trace() -> bytes:
        built = rig.machine([rig.cpu(index=i) for i in range(3)], schedule=schedule, seed=3)
        for index in range(3):
            built.start_python(index, release_then_maintain)
        built.run()
        return built.trace.to_bytes()

    assert trace() == trace()


def test_every_cpu_spinning_under_pct_is_a_hang() -> None:
    built = rig.machine([rig.cpu(index=i) for i in range(2)], schedule="pct:0",
                        budget=Budget(hang_checks=3, hang_check_rounds=1))

    def spinning(ctx: CpuContext) -> None:
        while ctx.load_acquire32(rig.FLAG_VA) == 0:
            ctx.relax()

    built.start_python(0, spinning)
    built.start_python(1, spinning)
    assert built.run().reason == "hang"


@pytest.mark.parametrize("cpus", [1, 4])
@pytest.mark.parametrize("schedule", ["pct:0", "pct:1", "rr:100"])
def test_guest_cpus_spinning_are_a_hang_well_within_the_budget(cpus: int, schedule: str) -> None:
    """Guest waiters on a flag nobody sets: their steps grow (nothing can interact), yet
    the hang checks come often enough that the run ends as a hang, long before the
    default budget of 50,000,000 instructions."""
    built = rig.machine([rig.cpu(index=i) for i in range(cpus)], schedule=schedule)
    waiter = rig.load(built, rig.waiter(rig.TEXT_VA + 0x2800))
    for index in range(cpus):
        built.start_cpu(index, waiter, sp=rig.stack(index))
    result = built.run()
    assert result.reason == "hang"
    assert result.instructions < 2_000_000 * cpus


def test_pct_schedules_parse_and_print() -> None:
    schedule = Schedule.parse("pct:5")
    assert (schedule.kind, schedule.seed, str(schedule)) == ("pct", 5, "pct:5")
    assert schedule.stops_at_events
    with pytest.raises(MachineError):
        Schedule.parse("pct:x")


def test_pct_seed_ranges_expand_to_one_item_each() -> None:
    assert [c.label for c in parse_schedules("pct:0-2,rr:100")] == [
        "pct:0", "pct:1", "pct:2", "rr:100"]
    assert [c.seed for c in parse_schedules("pct:3-4")] == [3, 4]


def test_default_schedule_is_pct0() -> None:
    assert DEFAULT_SCHEDULES == "pct:0"
