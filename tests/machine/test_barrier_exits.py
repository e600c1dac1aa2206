"""Barriers observed by unicorn exits (ucount.py) give the very runs barrier hooks give.

An engine with no stale-line or trap hook stops at an exit before each DSB/ISB word
and the scheduler takes it; these tests run guest programs full of barriers both ways
(exits, and hooks by removing the instruction counter) under every schedule kind and
compare the whole trace, every CPU's result and instruction count; they also pin the
counter's readings and when an engine changes between the two.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM
from unicorn import arm64_const as arm64

from pytest_altpatch.machine import Machine, ucount
from pytest_altpatch.machine import core as machine_core
from pytest_altpatch.machine.cpu import Uc
from pytest_altpatch.machine.hooks import EXIT
from pytest_altpatch.machine.ucount import instruction_counter

from .a64words import DSB_ISH, ISB, Program, add_imm, b_ne, bl, movz, subs_imm
from .rig import (
    A53,
    A72,
    FN_VA,
    TEXT_VA,
    done,
    load,
    machine,
    patcher,
    stack,
    waiter,
)

SCHEDULES = ("rr:1", "rr:3", "rr:100", "random:5", "adversarial", "pct:0", "pct:3")
NOP = 0xD503201F


def barrier_loop(base: int, rounds: int) -> Program:
    """Call fn, DSB, count, ISB, DSB ISB back to back, loop; stop with the count."""
    program = Program(base)
    program.emit(movz(7, rounds), movz(20, 0))
    loop = program.label("loop")
    def back(pc: int) -> int:
        return b_ne(pc, loop)

    program.emit(lambda pc: bl(pc, FN_VA), DSB_ISH, add_imm(20, 20, 1), ISB, DSB_ISH, ISB,
                 subs_imm(7, 7, 1), back, 0xAA1403E0, done())  # mov x0, x20
    return program


def run(schedule: str, *, exits: bool, monkeypatch: pytest.MonkeyPatch,
        patching: bool) -> tuple[bytes, list[tuple[str, object, int]], list[bool]]:
    """The trace, the CPUs' outcomes and which engines ended in exit mode."""
    with monkeypatch.context() as patch:
        if not exits:
            patch.setattr(machine_core, "instruction_counter", lambda uc: None)
        built = machine([A72, A72, A53], schedule=schedule, seed=7)
        alias = built.vmap(FN_VA - TEXT_VA, 4)
        entries = [load(built, barrier_loop(TEXT_VA + 0x1000, 40)),
                   load(built, barrier_loop(TEXT_VA + 0x1400, 25))]
        if patching:
            entries.append(load(built, patcher(TEXT_VA + 0x2000, ("dc", "dsb", "ic", "dsb",
                                                                 "isb"), alias=alias)))
            entries[1] = load(built, waiter(TEXT_VA + 0x2800))
        for index, entry in enumerate(entries):
            built.start_cpu(index, entry, sp=stack(index))
        result = built.run()
        outcomes = [(str(c.state), c.result, c.instructions) for c in result.cpus]
        modes = [cpu.barrier_exits for cpu in built._cpus[:len(entries)]]
        return built.trace.to_bytes(), outcomes, modes


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("patching", [False, True], ids=["barrier-loops", "patch-and-wait"])
def test_exits_and_hooks_give_the_same_run(schedule: str, patching: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    by_exits = run(schedule, exits=True, monkeypatch=monkeypatch, patching=patching)
    by_hooks = run(schedule, exits=False, monkeypatch=monkeypatch, patching=patching)
    assert by_exits[:2] == by_hooks[:2]
    trace = by_exits[0].decode()
    assert trace.count(" isb ") >= 40 and trace.count(" dsb ") >= 40
    assert not any(by_hooks[2])  # no counter: hooks throughout
    if not patching:
        assert all(by_exits[2])  # nothing else ever hooked code: exits throughout
    started = 3 if patching else 2
    assert [state for state, _, _ in by_exits[1]] == ["done"] * started + ["idle"] * (3 - started)


def test_a_stale_line_turns_barriers_into_hooks_until_it_is_gone() -> None:
    built = machine([A72, A72])
    loop = load(built, barrier_loop(TEXT_VA + 0x1000, 3))
    built.start_cpu(0, loop, sp=stack(0))
    built.start_cpu(1, loop, sp=stack(1))
    cpus: Any = built._cpus
    built.run()
    assert all(cpu.barrier_exits for cpu in cpus)
    assert all(set(cpu.barrier_hooks.values()) == {EXIT} for cpu in cpus)
    alias = built.vmap(FN_VA - TEXT_VA, 4)
    built.start_cpu(0, load(built, patcher(TEXT_VA + 0x2000, ("dc", "dsb", "ic", "dsb"),
                                           alias=alias)), sp=stack(0))
    built.run()  # no ISB on either CPU: the new word stays stale for both
    for cpu in cpus:
        built._hooks.ready(cpu)
        assert not cpu.barrier_exits and cpu.stale_hooks
        assert all(handle >= 0 for handle in cpu.barrier_hooks.values())



def test_back_to_exits_every_translation_made_under_other_hooks_goes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Unicorn calls its count hook inline only from translations made while it is the
    engine's one code hook: once a stale line's hook is gone, the whole cache is
    dropped, not just the barrier words (translations elsewhere were made slower)."""
    built = machine([A72, A72])
    cpus: Any = built._cpus
    alias = built.vmap(FN_VA - TEXT_VA, 4)
    built.start_cpu(0, load(built, patcher(TEXT_VA + 0x2000, ("dc", "dsb", "ic", "dsb", "isb"),
                                           alias=alias)), sp=stack(0))
    built.start_cpu(1, load(built, waiter(TEXT_VA + 0x2800)), sp=stack(1))
    built.run()
    for cpu in cpus:
        built._hooks.ready(cpu)
    assert all(not cpu.barrier_exits and cpu.stale_hooks for cpu in cpus)  # idle, kept
    flushes = [0, 0]
    for cpu in cpus:
        monkeypatch.setattr(cpu.uc, "ctl_flush_tb",
                            lambda index=cpu.index: flushes.__setitem__(index, flushes[index] + 1))
    loop = load(built, barrier_loop(TEXT_VA + 0x1000, 300))  # fn 300 times: idle hooks go
    built.start_cpu(0, loop, sp=stack(0))
    built.start_cpu(1, loop, sp=stack(1))
    result = built.run()
    assert result.reason == "stopped" and [c.result for c in result.cpus] == [300, 300]
    for cpu in cpus:
        built._hooks.ready(cpu)
    assert all(cpu.barrier_exits and not cpu.stale_hooks for cpu in cpus)
    assert all(set(cpu.barrier_hooks.values()) == {EXIT} for cpu in cpus)
    assert flushes == [1, 1]


def test_the_counter_reads_what_ran() -> None:
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    executed = instruction_counter(uc)
    if executed is None:  # pragma: no cover - an unknown unicorn: hooks, also exact
        pytest.skip("this unicorn's instruction counter cannot be read")
    uc.mem_map(0x10000, 0x1000)
    uc.mem_write(0x10000, NOP.to_bytes(4, "little") * 1024)
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([0x10000 + 4 * 300])
    uc.emu_start(0x10000, 0, 0, 1000)
    assert uc.reg_read(arm64.UC_ARM64_REG_PC) == 0x10000 + 4 * 300 and executed() == 300
    uc.emu_start(0x10000 + 4 * 301, 0, 0, 64)  # the count runs out first
    assert uc.reg_read(arm64.UC_ARM64_REG_PC) == 0x10000 + 4 * 365 and executed() == 65


def test_a_machine_without_the_counter_hooks_barriers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_core, "instruction_counter", lambda uc: None)
    built = Machine([A72], memory_size=0x100000)
    assert not any(cpu.barrier_exits for cpu in built._cpus)
    monkeypatch.undo()
    assert all(cpu.barrier_exits for cpu in Machine([A72], memory_size=0x100000)._cpus)


def rerun_after_code_change(exits: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, Any]:
    """Run the barrier loop, take its page's execute right away, load other code at the
    same place (no barrier where the DSBs were), give it back and run that."""
    with monkeypatch.context() as patch:
        if not exits:
            patch.setattr(machine_core, "instruction_counter", lambda uc: None)
        built = machine([A72])
        base = TEXT_VA + 0x1000
        built.start_cpu(0, load(built, barrier_loop(base, 3)), sp=stack(0))
        built.run()
        built.protect(base, 0x1000, "rw-")
        program = Program(base)
        program.emit(movz(20, 0), *[add_imm(20, 20, 1)] * 12, 0xAA1403E0, done())
        load(built, program)
        built.protect(base, 0x1000, "r-x")
        built.start_cpu(0, base, sp=stack(0))
        result = built.run()
        return built.trace.to_bytes(), (result.reason, result.cpus[0].state,
                                        result.cpus[0].result)


def test_a_page_that_stops_being_code_takes_its_exits_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    by_exits = rerun_after_code_change(True, monkeypatch)
    assert by_exits == rerun_after_code_change(False, monkeypatch)
    assert by_exits[1] == ("stopped", "done", 12)


@pytest.fixture
def fresh_counter(cache: object) -> Iterator[None]:
    """The counter not found yet in this process, with an empty user cache."""
    ucount._offset.cache_clear()
    yield
    ucount._offset.cache_clear()


def test_where_the_counter_is_is_kept_for_the_next_process(
        fresh_counter: None, monkeypatch: pytest.MonkeyPatch) -> None:
    looked: list[int | None] = []
    calibrate = ucount._calibrate
    monkeypatch.setattr(ucount, "_calibrate", lambda: looked.append(calibrate()) or looked[-1])
    found = ucount._offset()
    if found is None:  # pragma: no cover - an unknown unicorn: hooks, also exact
        pytest.skip("this unicorn's instruction counter cannot be read")
    ucount._offset.cache_clear()  # as in the next process
    assert ucount._offset() == found and looked == [found]  # read back, not looked for
    ucount._offset.cache_clear()
    monkeypatch.setattr(ucount, "installed_stamps", lambda package: b"another unicorn\n")
    assert ucount._offset() == found and looked == [found, found]  # another key: looked


def test_a_kept_place_outside_the_engine_is_not_taken(
        fresh_counter: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ucount._KEPT.keep(ucount._kept_key(), (1 << 20,))
    monkeypatch.setattr(ucount, "_calibrate", lambda: 1368)
    assert ucount._offset() == 1368
    ucount._offset.cache_clear()
    ucount._KEPT.keep(ucount._kept_key(), ("1368",))
    monkeypatch.setattr(ucount, "_calibrate", lambda: None)
    assert ucount._offset() is None
