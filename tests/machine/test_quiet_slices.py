"""rr slices and pct guest steps grow while CPUs cannot interact and are back at the
quantum when they can."""

from __future__ import annotations

import pytest

from pytest_altpatch.a64.granule import PAGE_SIZE
from pytest_altpatch.machine.config import PCT_QUIET_STEP, PCT_STEP_QUANTUM, QUIET_GROWTH
from pytest_altpatch.machine.results import RunResult
from pytest_altpatch.machine.scheduler import Scheduler

from . import rig
from .a64words import Program, b_ne, mov64, subs_imm

CODE = rig.TEXT_VA + PAGE_SIZE


@pytest.fixture
def slices(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every guest slice as (trace step when it started, quantum), in order."""
    seen: list[tuple[int, int]] = []
    original = Scheduler._slice

    def recording(self: Scheduler, target: object, quantum: int, *args: int) -> int:
        seen.append((self._log.step, quantum))
        return original(self, target, quantum, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Scheduler, "_slice", recording)
    return seen


def _counting(base: int, count: int) -> Program:
    program = Program(base)
    program.emit(mov64(7, count))
    loop = program.label("loop")
    program.emit(subs_imm(7, 7, 1), lambda pc: b_ne(pc, loop), rig.done())
    return program


def _count_apart(schedule: str) -> RunResult:
    """Two CPUs each counting 200,000 times on their own, to the end."""
    built = rig.machine([rig.cpu(), rig.cpu(index=1)], schedule=schedule)
    first, second = _counting(CODE, 200_000), _counting(CODE + 0x100, 200_000)
    rig.load(built, first)
    rig.load(built, second)
    built.start_cpu(0, first.base, sp=rig.stack(0))
    built.start_cpu(1, second.base, sp=rig.stack(1))
    result = built.run()
    return result


def test_two_cpus_counting_apart_get_long_slices(slices: list[tuple[int, int]]) -> None:
    result = _count_apart("rr:100")
    assert result.reason == "stopped" and not result.findings
    quanta = [quantum for _, quantum in slices]
    assert quanta[:2] == [100, 100]  # the first round: nothing is known yet
    assert quanta[2:4] == [200, 200] and quanta[4:6] == [400, 400]  # doubling per round
    assert max(quanta) == 100 * QUIET_GROWTH
    assert len(slices) < 2 * 400_000 // 100 // 10  # far fewer slices than rr:100 alone


@pytest.mark.parametrize("schedule, quantum", [("rr:100", 100), ("pct:0", PCT_STEP_QUANTUM)])
def test_a_store_to_code_brings_every_cpu_back_to_the_quantum(
        slices: list[tuple[int, int]], schedule: str, quantum: int) -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)], schedule=schedule)
    alias = built.vmap(rig.FN_PA, 4)
    # CPU0 counts for a while (quiet), then patches fn; CPU1 waits for the flag.
    patcher = rig.patcher(CODE + 0x200, ["dc", "dsb", "ic", "dsb", "isb"], alias=alias)
    delay = Program(CODE)
    delay.emit(mov64(7, 50_000))
    loop = delay.label("loop")
    delay.emit(subs_imm(7, 7, 1), lambda pc: b_ne(pc, loop),
               lambda pc: 0x14000000 | ((patcher.base - pc) // 4))  # b patcher
    waiter = rig.waiter(CODE + 0x400)
    for program in (delay, patcher, waiter):
        rig.load(built, program)
    built.start_cpu(0, delay.base, sp=rig.stack(0))
    built.start_cpu(1, waiter.base, sp=rig.stack(1))
    result = built.run()
    assert result.reason == "stopped" and not result.findings, result.findings
    assert result.cpus[1].result == 2  # the waiter ran the new fn
    events = built.trace.events
    write = next(e.step for e in events if e.kind == "write")
    synced = max(e.step for e in events if e.kind == "isb")  # the waiter's ISB: all fresh
    assert max(granted for step, granted in slices if step <= write) > quantum  # counting
    during = [granted for step, granted in slices if write < step <= synced]
    assert during and set(during) == {quantum}


@pytest.mark.parametrize("schedule", ["pct:0", "pct:1", "pct:7"])
def test_pct_steps_grow_per_quiet_cycle_up_to_the_longest_rr_slice(
        slices: list[tuple[int, int]], schedule: str) -> None:
    """Under a priority schedule, CPUs that only count spin step after step: each time
    all have spun (a cycle with no event), their next guest steps double."""
    result = _count_apart(schedule)
    assert result.reason == "stopped" and not result.findings
    assert all(c.result == 0 for c in result.cpus)  # (x0 of each done CPU)
    quanta = [quantum for _, quantum in slices]
    assert quanta[:2] == [PCT_STEP_QUANTUM] * 2  # the first cycle: nothing is known yet
    assert quanta[2:4] == [2 * PCT_STEP_QUANTUM] * 2  # doubled once both had spun
    assert max(quanta) == PCT_QUIET_STEP == 100 * QUIET_GROWTH
    # 400,000 instructions each: about 2 x (9 doublings + 62 steps of 6,400), not 50,000
    assert len(slices) < 200

