"""Code traps: harness behaviour at chosen guest addresses, between slices.

A code trap stops a guest CPU *before* it executes the word at a trap address; the
machine then calls the trap's handler with a :class:`TrapCall` while no CPU emulates,
so the handler may read and write that CPU's registers, move its PC, map memory,
start other CPUs or end the CPU.  This is how a shipped kernel image runs without the
parts of the kernel the harness stands in for (service stubs by symbol: ``printk``,
``__vmap``, ``stop_machine_run``) and without EL2 (``mrs Xt, tpidr_el2`` and ``at
s1e2r`` are emulated at their addresses, because unicorn has no EL2).

A handler that leaves the PC where it is makes the CPU wait: it re-enters the trap on
its next slice.  :meth:`TrapCall.execute` lets the word at the trap run as it is
(used when an observed function is only being watched, or when a trapped word was
patched into something else).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from pytest_altpatch.machine.cpu import MASK64, x_register
from pytest_altpatch.machine.port import MachinePort

#: x30 is the link register.
LR: Final = 30


class TrapCall:
    """One CPU stopped at a trap address (valid only during the handler call)."""

    def __init__(self, port: MachinePort, cpu: int, address: int) -> None:
        self._port = port
        self._target = port.cpus[cpu]
        self.cpu = cpu
        self.address = address
        self.progressed = True

    # --- registers --------------------------------------------------------------------
    def x(self, index: int) -> int:
        """General register ``x<index>`` (0-30) of the stopped CPU."""
        return int(self._target.uc.reg_read(x_register(index)))

    def set_x(self, index: int, value: int) -> None:
        """Set ``x<index>`` of the stopped CPU."""
        self._target.uc.reg_write(x_register(index), value & MASK64)

    def set_sysreg(self, register: int, value: int) -> None:
        """Set a unicorn system register (``unicorn.arm64_const.UC_ARM64_REG_*``)."""
        self._target.uc.reg_write(register, value & MASK64)

    def jump(self, pc: int) -> None:
        """Resume the CPU at ``pc``."""
        self._target.pc = pc

    def skip(self) -> None:
        """Resume after the trapped word (it was emulated by the handler)."""
        self._target.pc = self.address + 4

    def ret(self, value: int | None = None) -> None:
        """Return from a stubbed function: x0 = ``value`` (if given), PC = LR."""
        if value is not None:
            self.set_x(0, value)
        self._target.pc = self.x(LR)

    def execute(self) -> None:
        """Let the word at the trap address run once as it is."""
        self._target.trap_skip = self.address

    def wait(self) -> None:
        """Leave the CPU at the trap; it re-enters it on its next slice (no progress)."""
        self.progressed = False

    def finish(self, result: int) -> None:
        """End the CPU as the ``done`` host service would, with ``result``."""
        self._target.state = "done"
        self._target.result = result
        self._port.event(self.cpu, "done", self.address, f"x0={result:#x}")

    @property
    def settled(self) -> bool:
        """Whether the handler decided what the CPU does next (moved it, made it wait,
        let the word run or ended it)."""
        target = self._target
        return (target.pc != self.address or not self.progressed
                or target.trap_skip == self.address or target.state != "running")

    # --- memory and trace ---------------------------------------------------------------
    def read(self, va: int, size: int) -> bytes | None:
        """``size`` bytes at ``va`` through the mapping table, or None if unmapped."""
        return self._port.read_virtual(va, size)

    def event(self, kind: str, detail: str = "") -> int:
        """Record a trace event at the trap address; returns its step."""
        return self._port.event(self.cpu, kind, self.address, detail)


TrapHandler = Callable[[TrapCall], None]

__all__ = ["LR", "TrapCall", "TrapHandler"]
