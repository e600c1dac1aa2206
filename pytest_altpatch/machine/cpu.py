"""One emulated CPU: its unicorn instance, fast register access and runtime state.

The machine keeps one :class:`CpuRuntime` per CPU; every part of the machine (the
scheduler, the hooks, the services) reads and changes the same objects.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, Final

import greenlet
import unicorn as _unicorn
from unicorn import arm64_const as arm64
from unicorn.unicorn_py3.unicorn import uclib

from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.config import CpuConfig, MachineError
from pytest_altpatch.machine.results import CpuState, PythonException
from pytest_altpatch.machine.sysregs import ID_REGISTERS, IDENTITY_REGISTERS, SysregKey
from pytest_altpatch.machine.uchooks import CodeHooks

# unicorn's binding is only partly typed: its engine class is used as Any.
Uc: Any = _unicorn.__dict__["Uc"]
UcError: Any = _unicorn.__dict__["UcError"]

X_REGS: Final = tuple(getattr(arm64, f"UC_ARM64_REG_X{i}") for i in range(31))
STATE_REGS: Final = (*X_REGS, arm64.UC_ARM64_REG_SP, arm64.UC_ARM64_REG_PC,
                     arm64.UC_ARM64_REG_NZCV)
PC: Final = arm64.UC_ARM64_REG_PC
SP_SLOT: Final = STATE_REGS.index(arm64.UC_ARM64_REG_SP)
MASK64: Final = 2**64 - 1


def x_register(index: int) -> int:
    """Unicorn's register id of ``x<index>`` (0-30)."""
    if not 0 <= index <= 30:
        raise MachineError("MACHINE_CONFIG", f"x{index} is not a general register")
    return int(X_REGS[index])


class RegisterFile:
    """Fast batch access to one instance's x0-x30, SP, PC, NZCV through ctypes."""

    def __init__(self, uc: Any) -> None:
        count = len(STATE_REGS)
        self._uch = uc._uch
        self._count = count
        self._ids = (ctypes.c_int * count)(*STATE_REGS)
        self.values = (ctypes.c_uint64 * count)()
        base = ctypes.addressof(self.values)
        self._ptrs = (ctypes.c_void_p * count)(*(base + 8 * i for i in range(count)))
        self._pc_value = ctypes.c_uint64()
        self._pc_ptr = ctypes.byref(self._pc_value)

    def snapshot(self) -> bytes:
        """All registers as bytes (for hang detection and probes)."""
        uclib.uc_reg_read_batch(self._uch, self._ids, self._ptrs, self._count)
        return bytes(self.values)

    def restore(self, state: bytes) -> None:
        """Write back a snapshot taken by :meth:`snapshot`."""
        ctypes.memmove(self.values, state, len(state))
        uclib.uc_reg_write_batch(self._uch, self._ids, self._ptrs, self._count)

    def pc(self) -> int:
        """The program counter (one engine call, without the binding's dispatch)."""
        uclib.uc_reg_read(self._uch, PC, self._pc_ptr)
        return self._pc_value.value


class CpuRuntime:
    """Mutable runtime state of one CPU (shared by the parts of one machine)."""

    def __init__(self, index: int, config: CpuConfig, uc: Any) -> None:
        self.index = index
        self.config = config
        self.uc: Any = uc
        self.regs = RegisterFile(uc)
        self.state: CpuState = "idle"
        self.kind = "guest"
        self.pc = 0
        self.result: object = None
        self.exception: PythonException | None = None
        self.instructions = 0
        self.greenlet: greenlet.greenlet | None = None
        self.quantum_left = 0
        #: Set by a spin hint (Python ``relax()``, the relax service) in the current step.
        self.relaxed = False
        self.fault: Finding | None = None
        self.progress = 0
        self.stale_hooks: dict[int, int] = {}
        self.stale_hook_ranges: CodeHooks | None = None
        self.barrier_hook_ranges: CodeHooks | None = None
        #: Hooked lines no longer stale for this CPU -> harmless fires since (see hooks.py).
        self.idle_lines: dict[int, int] = {}
        #: Barrier word VA -> its code hook, PENDING (asked for), or EXIT (an exit).
        self.barrier_hooks: dict[int, int] = {}
        #: Reads how many instructions the last emu_start ran (ucount.py), or None.
        self.executed: Callable[[], int] | None = None
        #: Whether this engine observes barriers by exits (no other code hook on it).
        self.barrier_exits = False
        #: The engine's exit list must be set anew before its next slice.
        self.exits_changed = False
        #: Set by every hook that stops emulation (an exit stop leaves it clear).
        self.stop_asked = False
        self.write_hooks: list[int] = []
        self.resume_skip: int | None = None
        self.trap_hooks: dict[int, int] = {}
        #: Changes to this CPU's engine (hooks added or deleted) waiting for its next
        #: slice, in order, and the translations to drop then (see hooks.py).
        self.engine_work: list[Callable[[], object]] = []
        self.engine_drops: list[tuple[int, int]] = []
        self.trap_hit: int | None = None
        self.trap_skip: int | None = None
        self.probe_returned = False
        #: A Python CPU running guest code (call_guest) until it returns or faults.
        self.guest_call = False
        self.sysregs: dict[SysregKey, int] = {}
        for field_name, key in IDENTITY_REGISTERS.values():
            self.sysregs[key] = getattr(config, field_name)
        for name, value in config.id_regs.items():
            self.sysregs[ID_REGISTERS[name]] = value


def stop(uc: Any, target: CpuRuntime) -> None:
    """Stop ``target``'s emulation from inside a hook, saying so (see ``stop_asked``)."""
    target.stop_asked = True
    uc.emu_stop()


__all__ = ["MASK64", "PC", "SP_SLOT", "STATE_REGS", "X_REGS", "CpuRuntime", "RegisterFile",
           "Uc", "UcError", "stop", "x_register"]
