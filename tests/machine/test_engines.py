"""Spare unicorn engines: initialised ahead, handed out once, equal to fresh ones."""

from __future__ import annotations

from pytest_altpatch.machine import engines
from pytest_altpatch.machine.config import MIN_CODE_BUFFER

from . import rig
from .a64words import DSB_ISH, ISB, Program, dc_cvau, ic_ivau, mov64, movz, str_w

SIZE = MIN_CODE_BUFFER * 2  # a size nothing else in the suite prepares


def _trace_of_a_patch(cpus: int = 2) -> bytes:
    built = rig.machine([rig.cpu(index=i) for i in range(cpus)], code_buffer=SIZE)
    alias = built.vmap(rig.FN_PA, 4)
    program = Program(rig.TEXT_VA + 0x1000)
    program.emit(mov64(1, alias), mov64(2, movz(0, 2)), str_w(2, 1), mov64(3, rig.FN_VA),
                 dc_cvau(3), DSB_ISH, ic_ivau(3), DSB_ISH, ISB, rig.done())
    rig.load(built, program)
    built.start_cpu(0, program.base, sp=rig.stack(0))
    result = built.run()
    assert result.reason == "stopped" and not result.findings, result
    return built.trace.to_bytes()


def test_spares_are_handed_out_once_then_fresh_engines_are_made() -> None:
    engines.prepare_engines(3, SIZE)
    assert engines.spare_engines(SIZE) == 3
    taken = [engines.new_engine(SIZE) for _ in range(4)]
    assert engines.spare_engines(SIZE) == 0
    assert len({id(uc) for uc in taken}) == 4
    engines.prepare_engines(2, SIZE)
    engines.prepare_engines(2, SIZE)  # already ready: nothing more is made
    assert engines.spare_engines(SIZE) == 2


def test_a_machine_on_spare_engines_runs_exactly_as_on_fresh_ones() -> None:
    while engines.spare_engines(SIZE):
        engines.new_engine(SIZE)
    fresh = _trace_of_a_patch()
    engines.prepare_engines(2, SIZE)
    spared = _trace_of_a_patch()
    assert engines.spare_engines(SIZE) == 0  # the machine took both
    assert spared == fresh
    assert b" write " in fresh and b" isb " in fresh
