"""Exceptions a guest CPU takes: SVC host services (a table from immediate to
handler, see :mod:`.services`), the harness's return traps, services added by users,
and the findings for every other exception and for memory faults."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from unicorn import (
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
)

from pytest_altpatch.a64.classify import exception_call
from pytest_altpatch.machine.config import MachineError, Schedule
from pytest_altpatch.machine.cpu import PC, X_REGS, CpuRuntime, stop
from pytest_altpatch.machine.events import EventLog
from pytest_altpatch.machine.guest_services import ServiceCall, ServiceHandler
from pytest_altpatch.machine.memory import MemoryMap
from pytest_altpatch.machine.port import FaultFn, MachinePort
from pytest_altpatch.machine.scheduler import Scheduler
from pytest_altpatch.machine.services import GUEST_RETURN, PROBE_RETURN, HostService

_FAULT_CODES: Final = {
    UC_MEM_WRITE_PROT: ("ro-write", "store to a mapping without write permission"),
    UC_MEM_READ_UNMAPPED: ("unmapped-access", "load from an unmapped address"),
    UC_MEM_WRITE_UNMAPPED: ("unmapped-access", "store to an unmapped address"),
    UC_MEM_FETCH_UNMAPPED: ("unmapped-access", "instruction fetch from an unmapped address"),
    UC_MEM_FETCH_PROT: ("fetch-fault", "instruction fetch from a non-executable mapping"),
}
# UNDEF (1), SVC (2), BRK (7), SMC (13): unicorn's AArch64 exception numbers.
_EXC_UNDEF: Final = 1
_EXC_SVC: Final = 2
_EXC_BRK: Final = 7



@dataclass(frozen=True)
class _Builtin:
    """One row of the built-in service table."""

    #: Serves the call: (calling CPU, its engine, x0, PC of the SVC).
    serve: Callable[[CpuRuntime, Any, int, int], None]
    #: Whether the call is progress for the hang detector.
    progress: bool = True
    #: Whether the call ends the slice under every schedule (else only under those
    #: that stop at events): done/park/bug must stop, relax yields the slice, vmap
    #: must let the deferred mapping happen before the CPU uses the alias.
    ends_slice: bool = True


def service_name(imm: int) -> str:
    """The trace name of SVC immediate ``imm``."""
    if imm == PROBE_RETURN:
        return "probe-return"
    if imm == GUEST_RETURN:
        return "guest-return"
    try:
        return HostService(imm).name.lower()
    except ValueError:
        return f"#{imm:#x}"


class HostServices:
    """Serves SVC and turns every other exception of a guest CPU into a finding."""

    def __init__(self, cpus: Sequence[CpuRuntime], memory: MemoryMap, log: EventLog,
                 scheduler: Scheduler, context_sync: Callable[[int, int], None],
                 schedule: Schedule, fault: FaultFn) -> None:
        self._cpus = cpus
        self._memory = memory
        self._log = log
        self._scheduler = scheduler
        self._context_sync = context_sync
        self._stops_at_events = schedule.stops_at_events
        self._fault = fault
        self.user: dict[int, ServiceHandler] = {}
        #: The port handed to user services (set when the machine is wired).
        self.port: MachinePort
        self._builtin: Mapping[int, _Builtin] = {
            HostService.DONE: _Builtin(self._done),
            HostService.PARK: _Builtin(self._park),
            HostService.RELAX: _Builtin(self._relax, progress=False),
            HostService.LOG: _Builtin(self._log_registers, progress=False, ends_slice=False),
            HostService.BUG: _Builtin(self._bug),
            HostService.VMAP: _Builtin(self._vmap),
            HostService.VUNMAP: _Builtin(self._vunmap),
        }

    def add(self, imm: int, handler: ServiceHandler) -> None:
        """Serve ``svc #imm`` with ``handler`` (not a built-in or harness immediate)."""
        if imm in (PROBE_RETURN, GUEST_RETURN) or imm in HostService.__members__.values() \
                or not 0 <= imm <= 0xFFFF:
            raise MachineError("MACHINE_CONFIG", f"svc #{imm:#x} cannot be a new service")
        self.user[imm] = handler

    # --- unicorn callbacks --------------------------------------------------------------
    def on_exception(self, uc: Any, intno: int, cpu: int) -> None:
        """UC_HOOK_INTR: an SVC is served; anything else stops the CPU with a finding."""
        target = self._cpus[cpu]
        pc = uc.reg_read(PC)
        word_at = self._memory.word_at
        if intno == _EXC_SVC:
            word = word_at(pc - 4)
            call = exception_call(word) if word is not None else None
            if call is not None and call[0] == "svc":
                self._service(target, uc, call[1], pc - 4)
                return
        # BRK and UNDEF leave PC at the instruction; SMC and SVC after it.
        at = pc if intno in (_EXC_UNDEF, _EXC_BRK) else pc - 4
        word = word_at(at)
        call = exception_call(word) if word is not None else None
        if call is not None:
            self._fault(target, "guest-exception",
                        f"{call[0]} #{call[1]:#x} (the harness does not execute it)", pc=at,
                        detail={"instruction": call[0], "imm": call[1]})
        elif intno == _EXC_UNDEF:
            self._fault(target, "undefined-instruction",
                        f"undefined instruction {word if word is not None else 0:#010x}", pc=at,
                        detail={"word": word})
        else:
            self._fault(target, "guest-exception", f"exception {intno} taken", pc=at,
                        detail={"exception": intno})
        stop(uc, target)

    def on_memory_fault(self, uc: Any, access: int, address: int, size: int, value: int,
                        cpu: int) -> bool:
        """UC_HOOK_MEM_INVALID: a finding, and the CPU stops."""
        code, text = _FAULT_CODES.get(access, ("unmapped-access", f"memory access {access}"))
        pc = address if access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT) \
            else uc.reg_read(PC)
        self._fault(self._cpus[cpu], code, f"{text} at {address:#x}", pc=pc, address=address,
                    detail={"size": size})
        return False

    def take_svc_at(self, target: CpuRuntime, uc: Any, address: int) -> None:
        """The CPU stopped *before* the SVC at ``address`` (a slice exit baked into a
        translation of that word): take the SVC exactly as unicorn would have."""
        uc.reg_write(PC, address + 4)
        self.on_exception(uc, _EXC_SVC, target.index)

    def probe_returned(self, target: CpuRuntime, address: int) -> None:
        """The probing CPU reached the probe's return trap at ``address`` and stopped
        before its SVC: what serving that SVC does (an event, a context sync)."""
        step = self._log.event(target.index, "service", address, service_name(PROBE_RETURN))
        self._context_sync(target.index, step)
        target.probe_returned = True

    # --- dispatch -----------------------------------------------------------------------
    def _service(self, target: CpuRuntime, uc: Any, imm: int, pc: int) -> None:
        cpu = target.index
        log = self._log
        step = log.event(cpu, "service", pc, service_name(imm))
        # Taking the SVC and returning from it is context synchronising; the guest-call
        # return trap is harness plumbing (the code "returns" without an exception).
        if not (imm == GUEST_RETURN and target.guest_call):
            self._context_sync(cpu, step)
        x0 = uc.reg_read(X_REGS[0])
        if imm == PROBE_RETURN and self._scheduler.probing == cpu:
            target.probe_returned = True
            stop(uc, target)
            return
        if imm == GUEST_RETURN and target.guest_call:
            target.guest_call = False
            target.result = x0
            log.event(cpu, "return", pc, f"x0={x0:#x}")
            stop(uc, target)
            return
        handler = self.user.get(imm)
        if handler is not None:
            call = ServiceCall(self.port, target.index, uc, pc)
            handler(call)
            if call.progress:
                log.progress()
            stop(uc, target)
            return
        row = self._builtin.get(imm)
        if row is None:
            self._fault(target, "unknown-service", f"svc #{imm:#x} is not a host service",
                        pc=pc, detail={"imm": imm})
            log.progress()
            stop(uc, target)
            return
        row.serve(target, uc, x0, pc)
        if row.progress:
            log.progress()
        if row.ends_slice or self._stops_at_events:
            stop(uc, target)

    # --- the built-in services (services.py has the table) ------------------------------
    def _done(self, target: CpuRuntime, uc: Any, x0: int, pc: int) -> None:
        target.state = "done"
        target.result = x0
        self._log.event(target.index, "done", pc, f"x0={x0:#x}")

    def _park(self, target: CpuRuntime, uc: Any, x0: int, pc: int) -> None:
        target.state = "parked"
        self._log.event(target.index, "park", pc)

    def _relax(self, target: CpuRuntime, uc: Any, x0: int, pc: int) -> None:
        target.relaxed = True  # a spin: the priority schedule and the slice's end see it

    def _log_registers(self, target: CpuRuntime, uc: Any, x0: int, pc: int) -> None:
        values = " ".join(f"{uc.reg_read(X_REGS[i]):#x}" for i in range(4))
        self._log.event(target.index, "log", pc, values)

    def _bug(self, target: CpuRuntime, uc: Any, x0: int, pc: int) -> None:
        self._fault(target, "bug", f"guest bug() with code {x0:#x}", pc=pc, detail={"code": x0})

    def _vmap(self, target: CpuRuntime, uc: Any, x0: int, pc: int) -> None:
        size = uc.reg_read(X_REGS[1])
        try:
            va = self._memory.vmap(x0, size)
        except MachineError as error:
            self._log.event(target.index, "service", pc, f"vmap refused: {error.message}")
            va = 0
        uc.reg_write(X_REGS[0], va)

    def _vunmap(self, target: CpuRuntime, uc: Any, x0: int, pc: int) -> None:
        try:
            self._memory.vunmap(x0)
            ok = 1
        except MachineError:
            ok = 0
        uc.reg_write(X_REGS[0], ok)


__all__ = ["HostServices", "service_name"]
