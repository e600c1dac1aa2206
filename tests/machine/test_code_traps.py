"""Code traps: harness behaviour at guest addresses, between slices."""

from __future__ import annotations

from pytest_altpatch.machine import TrapCall

from . import rig
from .a64words import Program, bl, movz


def test_stubbed_function_returns_the_handlers_value_to_its_caller() -> None:
    machine = rig.machine([rig.A72])
    calls: list[int] = []

    def stub(call: TrapCall) -> None:
        calls.append(call.x(0))
        call.ret(call.x(0) + 40)  # x0 = 2 + 40

    machine.add_code_trap(rig.FN_VA, stub)  # the function body (mov x0, #1) never runs
    program = Program(rig.TEXT_VA)
    program.emit(movz(0, 2), lambda pc: bl(pc, rig.FN_VA), rig.done())
    machine.start_cpu(0, rig.load(machine, program), sp=rig.stack(0))
    result = machine.run()
    assert calls == [2]
    assert result.reason == "stopped" and result.cpus[0].result == 42


def test_execute_lets_the_trapped_word_run_once_as_it_is() -> None:
    machine = rig.machine([rig.A72])
    seen: list[int] = []

    def watch(call: TrapCall) -> None:
        seen.append(call.cpu)
        call.execute()

    machine.add_code_trap(rig.FN_VA, watch)
    program = Program(rig.TEXT_VA)
    program.emit(lambda pc: bl(pc, rig.FN_VA), lambda pc: bl(pc, rig.FN_VA), rig.done())
    machine.start_cpu(0, rig.load(machine, program), sp=rig.stack(0))
    result = machine.run()
    assert seen == [0, 0]  # once per call, and the real body ran: mov x0, #1
    assert result.cpus[0].result == 1


def test_a_waiting_cpu_reenters_its_trap_until_released() -> None:
    machine = rig.machine([rig.A72, rig.cpu(index=1)])
    polls: list[int] = []

    def gate(call: TrapCall) -> None:
        polls.append(call.cpu)
        if machine.cpu_state(1) == "running":
            call.wait()
        else:
            call.finish(7)

    waiter = Program(rig.TEXT_VA)
    waiter.emit(movz(0, 0))
    gate_va = waiter.pc
    waiter.emit(movz(0, 0))
    other = Program(rig.TEXT_VA + 0x100)
    other.emit(*[movz(1, 1)] * 300, rig.done())
    machine.add_code_trap(gate_va, gate)
    machine.start_cpu(0, rig.load(machine, waiter), sp=rig.stack(0))
    machine.start_cpu(1, rig.load(machine, other), sp=rig.stack(1))
    result = machine.run()
    assert result.reason == "stopped"
    assert result.cpus[0].state == "done" and result.cpus[0].result == 7
    assert len(polls) > 1  # it waited at least once while cpu1 ran
