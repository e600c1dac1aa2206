"""The scheduler: who runs next, for how long, and when a run ends.

Guest CPUs run unicorn slices of a quantum; Python CPUs run in greenlets, one context
operation per schedule step (:meth:`Scheduler.python_step` is their gate).  A priority
schedule (``pct``) runs one step of the CPU its policy picks.  The run ends when no CPU
runs, ``until()`` holds, the budget is spent, or every CPU spins (hang detection).
"""

from __future__ import annotations

import random
import struct
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import greenlet
from unicorn import arm64_const as arm64

from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.config import (
    PCT_QUIET_STEP,
    QUIET_GROWTH,
    Budget,
    MachineError,
    Schedule,
)
from pytest_altpatch.machine.context import CpuContext, GuestFault
from pytest_altpatch.machine.cpu import MASK64, PC, SP_SLOT, STATE_REGS, X_REGS, CpuRuntime, UcError
from pytest_altpatch.machine.events import EventLog
from pytest_altpatch.machine.hooks import EXIT, HookBook
from pytest_altpatch.machine.memory import GUEST_RETURN_VA, PROBE_STACK_TOP, PROBE_TRAP_VA
from pytest_altpatch.machine.port import MachinePort
from pytest_altpatch.machine.priority import PriorityPolicy
from pytest_altpatch.machine.results import (
    CpuOutcome,
    ProbeResult,
    PythonException,
    RunReason,
    RunResult,
)
from pytest_altpatch.machine.traps import TrapCall, TrapHandler

#: Exit address of every slice: never reachable (all VAs are below 2**47).
_UNTIL: Final = 1 << 48
#: Register snapshots a hang check remembers per CPU before it starts afresh.
_HANG_MEMORY: Final = 4096


def _probe_start() -> bytes:
    state = [0] * len(STATE_REGS)
    state[30] = PROBE_TRAP_VA
    state[SP_SLOT] = PROBE_STACK_TOP
    return struct.pack(f"<{len(state)}Q", *state)


#: A probe's registers before its arguments: LR at the return trap, SP at the probe
#: stack, everything else zero.
_PROBE_START: Final = _probe_start()


class _HangWatch:
    """Whether every running CPU keeps coming back to states it was in (a spin)."""

    def __init__(self, cpus: Sequence[CpuRuntime], budget: Budget) -> None:
        self._cpus = cpus
        self._checks = budget.hang_checks
        self._seen: dict[int, set[bytes]] = {}
        self._streak = 0

    def hung(self, log: EventLog) -> bool:
        """One hang check: True once ``hang_checks`` checks in a row saw only known
        states (any progress event since the last check starts over)."""
        if log.hang_seen is None:
            log.hang_seen = True
            self._seen = {}
            self._streak = 0
        repeated = True
        for target in self._cpus:
            if target.state != "running":
                continue
            snapshot = target.regs.snapshot() \
                if target.kind == "guest" or target.guest_call \
                else target.progress.to_bytes(8, "little")
            known = self._seen.setdefault(target.index, set())
            if snapshot not in known:
                repeated = False
                if len(known) > _HANG_MEMORY:
                    known.clear()
                known.add(snapshot)
        self._streak = self._streak + 1 if repeated else 0
        return self._streak >= self._checks

    @property
    def repeating(self) -> bool:
        """Whether the last check saw every running CPU in a state it had been in."""
        return self._streak > 0


class Scheduler:
    """Runs the CPUs of one machine under its schedule."""

    def __init__(self, cpus: Sequence[CpuRuntime], log: EventLog, hooks: HookBook,
                 schedule: Schedule, seed: int, budget: Budget, *, cpu_count: int) -> None:
        self._cpus = cpus
        self._log = log
        self._hooks = hooks
        self.schedule = schedule
        self.budget = budget
        self._rng = random.Random(f"{schedule.seed}:{seed}")
        self._priorities = PriorityPolicy(cpu_count, schedule.seed, seed) \
            if schedule.kind == "pct" else None
        #: The greenlet that runs the schedule (Python CPUs switch back to it).
        self._scheduler: greenlet.greenlet | None = None
        #: The CPU a probe runs on, or None.
        self.probing: int | None = None
        #: The guest slice of the current ``rr`` round (grows while CPUs cannot interact).
        self._level = schedule.quantum
        self._level_limit = schedule.quantum * QUIET_GROWTH if schedule.kind == "rr" \
            else PCT_QUIET_STEP if schedule.kind == "pct" else schedule.quantum
        #: A code trap was taken in the current round (traps are interactions too).
        self._trapped = False
        #: Whether a modification of code is in flight (set when the machine is wired).
        self.code_in_flux: Callable[[], bool] = lambda: True
        self.code_traps: dict[int, TrapHandler] = {}
        #: The port handed to contexts and traps (set when the machine is wired).
        self.port: MachinePort
        #: The host services' side of the probe's return trap (set when the machine is
        #: wired): a probe that reached it, and another run that stopped before its SVC.
        self.probe_returned: Callable[[CpuRuntime, int], None]
        self.take_svc_at: Callable[[CpuRuntime, Any, int], None]
        #: The fetch model's side of a barrier the engine stopped before (set when the
        #: machine is wired): observe it; True when the slice ends there.
        self.observe_barrier: Callable[[CpuRuntime, int], bool]

    # --- faults -------------------------------------------------------------------------
    def fault(self, cpu: CpuRuntime, code: str, message: str, *, pc: int | None,
              address: int | None = None, detail: Mapping[str, object] | None = None) -> Finding:
        """Record a fault: the CPU stops (a Python CPU gets a GuestFault instead)."""
        finding = self._log.report(code, message, cpu.index, pc=pc, address=address,
                                   detail=detail, kind="fault")
        if cpu.kind == "python" and cpu.greenlet is not None and not cpu.greenlet.dead \
                and self.probing != cpu.index:
            cpu.fault = finding
        else:
            cpu.state = "faulted"
        return finding

    # --- running ------------------------------------------------------------------------
    def run(self, until: Callable[[], bool] | None = None) -> RunResult:
        """Interleave all running CPUs under the schedule until none is running,
        ``until()`` is true, the budget is spent, or every CPU spins (hang)."""
        if self._hooks.running is not None or self.probing is not None:
            raise MachineError("MACHINE_STATE", "run() called from inside the machine")
        log = self._log
        first_finding = len(log.findings)
        watch = _HangWatch(self._cpus, self.budget)
        log.hang_seen = None
        self._level = self.schedule.quantum
        if self._priorities is not None:
            reason, spent = self._run_steps(self._priorities, until, watch)
        else:
            reason, spent = self._run_rounds(until, watch)
        if reason in ("budget", "hang"):
            self._report_end(reason, spent)
        return RunResult(reason, self._outcomes(), tuple(log.findings[first_finding:]), spent)

    def _run_rounds(self, until: Callable[[], bool] | None,
                    watch: _HangWatch) -> tuple[RunReason, int]:
        """A slicing schedule's run: rounds of a slice per running CPU, until a reason
        to stop; the reason ("stopped": no CPU runs) and the instructions spent."""
        log = self._log
        spent = rounds = 0
        started = time.monotonic()
        while True:
            runnable = [c for c in self._cpus if c.state == "running"]
            if not runnable:
                return "stopped", spent
            step = log.step
            self._trapped = False
            reason, spent = self._round(runnable, until, spent)
            if reason != "stopped":
                return reason, spent
            rounds += 1
            if rounds % 32 == 0 and time.monotonic() - started > self.budget.seconds:
                return "budget", spent
            if rounds % self.budget.hang_check_rounds == 0:
                if watch.hung(log):
                    return "hang", spent
                if watch.repeating:  # spinning CPUs: slices stay short, as hang checks assume
                    self._level = self.schedule.quantum
                    continue
            if self._level_limit > self.schedule.quantum:
                self._grow(runnable, quiet=log.step == step and not self._trapped)

    def _run_steps(self, policy: PriorityPolicy, until: Callable[[], bool] | None,
                   watch: _HangWatch) -> tuple[RunReason, int]:
        """A priority schedule's run: one step of the CPU ``policy`` picks per round, until
        a reason to stop (as :meth:`run`'s rounds, without a round's machinery: a Python
        CPU's every operation is a step here, thousands in a patcher's rendezvous)."""
        log = self._log
        cpus = self._cpus
        budget = self.budget
        quantum = self.schedule.quantum
        spent = rounds = checked = 0
        started = time.monotonic()
        # A cycle: the steps from one waking of every CPU to the next.  After a quiet one
        # the guest steps of the next double, as rr's slices do (see _grow).
        cycle_step, cycle_trapped = log.step, False
        while True:
            runnable = [c.index for c in cpus if c.state == "running"]
            if not runnable:
                return "stopped", spent
            self._trapped = False
            cycles = policy.cycles
            target = cpus[policy.pick(runnable)]
            if policy.cycles != cycles:  # every CPU spun: all are woken again
                # (not while the hang checks see only known states: a spin is then
                # checked at the quantum, as before steps grew; grown steps put the
                # checks a hang needs beyond the instruction budget)
                self._grow([cpus[i] for i in runnable],
                           quiet=log.step == cycle_step and not cycle_trapped
                           and not watch.repeating)
                cycle_step, cycle_trapped = log.step, False
            before = log.step
            target.relaxed = False
            if target.kind == "python" and not target.guest_call:
                spent += self._python_slice(target, 1)
                guest = False
            else:
                guest = target.kind == "guest" or target.guest_call
                spent += self._slice(target, self._level)
            cycle_trapped = cycle_trapped or self._trapped
            changed = log.step != before
            if changed:  # (as a round's later slices would be: finely)
                self._level = quantum
            if until is not None and until():
                return "until", spent
            if spent >= budget.instructions:
                return "budget", spent
            policy.stepped(target.index, changed=changed, spun=target.relaxed or (
                guest and not changed))
            rounds += 1
            if rounds % 32 == 0 and time.monotonic() - started > budget.seconds:
                return "budget", spent
            # A hang check per as many steps as give each CPU about an rr:100 slice, and
            # while steps are grown, per as many instructions as rr's checks are apart
            # at its longest slices (else a spin's checks would outlast the budget).
            if rounds % (budget.hang_check_rounds * 64 * len(runnable)) == 0 \
                    or spent - checked >= budget.hang_check_rounds * len(runnable) \
                    * PCT_QUIET_STEP:
                checked = spent
                if watch.hung(log):
                    return "hang", spent
                if watch.repeating:
                    self._level = quantum

    def _grow(self, runnable: list[CpuRuntime], *, quiet: bool) -> None:
        """The ``rr`` slice of the next round, or the ``pct`` guest step of the next
        cycle: doubled (up to its limit) after a round or cycle in which CPUs could not
        interact, else the schedule's quantum.

        CPUs can interact through modified code (a store to code in flight), through a
        Python CPU's operations (each one a schedule step), and through anything the
        trace records (stores to code, maintenance, barriers, services, faults, traps).
        A round without any of these only ran guest code over memory nobody modifies
        as code, so longer slices give the same verdicts at unicorn's own speed."""
        if not quiet or self.code_in_flux() or any(
                c.kind == "python" or c.guest_call for c in runnable):
            self._level = self.schedule.quantum
        else:
            self._level = min(self._level * 2, self._level_limit)

    def _round(self, runnable: list[CpuRuntime], until: Callable[[], bool] | None,
               spent: int) -> tuple[RunReason, int]:
        """One round of slices; the reason to stop ("stopped": go on) and what is spent."""
        log = self._log
        for target in runnable:
            if target.state != "running":
                continue
            quantum = self._quantum(target)
            step = log.step
            spent += self._slice(target, quantum)
            if log.step != step:  # an event: the rest of the round is sliced finely
                self._level = self.schedule.quantum
            if until is not None and until():
                return "until", spent
            if spent >= self.budget.instructions:
                return "budget", spent
        return "stopped", spent

    def _report_end(self, code: str, spent: int) -> None:
        log = self._log
        pcs = {c.index: c.pc for c in self._cpus if c.state == "running"}
        listing = ", ".join(f"cpu{i} pc={pc:#x}" + (f" ({where})" if (where := log.where(pc))
                                                     else "") for i, pc in pcs.items())
        if code == "hang":
            message = f"every CPU spins without shared-memory progress: {listing}"
        else:
            message = f"run budget spent after {spent} instructions: {listing}"
        cpu = min(pcs) if pcs else 0
        log.report(code, message, cpu, detail={"pcs": pcs, "instructions": spent})

    def _quantum(self, target: CpuRuntime) -> int:
        schedule = self.schedule  # (a priority schedule's steps are _run_steps')
        if schedule.kind == "random":
            return self._rng.randint(1, schedule.quantum)
        if schedule.kind == "adversarial" and target.kind == "python" \
                and not target.guest_call:
            return 1
        if target.kind == "python" and not target.guest_call:
            return schedule.quantum
        return self._level

    def _slice(self, target: CpuRuntime, quantum: int, until: int = _UNTIL) -> int:
        """Run one slice of ``target``; returns the instructions/operations it is charged.

        A probe's slices end at its return trap (``until``), so the return costs no
        exception callback; unicorn bakes that exit into its translation of the trap
        word, so a slice of any other run that stops there takes the trap's SVC here.
        """
        if target.kind == "python" and not target.guest_call:
            return self._python_slice(target, quantum)
        hooks = self._hooks
        hooks.ready(target)
        hooks.running = target.index
        try:
            if target.barrier_exits:
                self._run_by_exits(target, quantum, until)
            else:
                target.uc.emu_start(target.pc, until, 0, quantum)
            target.pc = pc = target.regs.pc()
            if pc == PROBE_TRAP_VA and target.state == "running":
                if until == PROBE_TRAP_VA:
                    self.probe_returned(target, PROBE_TRAP_VA)
                else:
                    self.take_svc_at(target, target.uc, PROBE_TRAP_VA)
                    target.pc = target.regs.pc()
        except UcError as error:  # a guest fault the hooks did not already record
            if target.state == "running" and target.fault is None:
                self.fault(target, "guest-exception", f"unicorn stopped: {error}",
                           pc=target.uc.reg_read(PC), detail={"errno": error.errno})
            target.pc = target.regs.pc()
        finally:
            hooks.running = None
        if target.guest_call and target.fault is not None:
            target.guest_call = False  # the Python side raises GuestFault
        if target.trap_hit is not None and target.state == "running":
            self._take_trap(target)
        if target.state != "running":
            self._log.hang_seen = None
        target.instructions += quantum
        hooks.drain()
        return quantum

    def _run_by_exits(self, target: CpuRuntime, quantum: int, until: int) -> None:
        """Run ``quantum`` instructions of ``target``, whose engine stops at an exit before
        each barrier word: observe each barrier where the hook would have (before it
        runs), take it (it changes nothing but PC), and go on for the rest of the count,
        exactly as the same slice with barrier hooks (hooks.py)."""
        uc = target.uc
        executed = target.executed
        assert executed is not None
        barriers = target.barrier_hooks
        observe = self.observe_barrier
        pc, left = target.pc, quantum
        while True:
            if barriers.get(pc) == EXIT:
                if target.resume_skip == pc:  # observed when the last slice ended here
                    target.resume_skip = None
                elif observe(target, pc):  # the schedule ends the slice before it
                    target.resume_skip = pc
                    uc.reg_write(PC, pc)
                    return
                pc += 4
                left -= 1
                if left == 0 or target.state != "running":
                    uc.reg_write(PC, pc)
                    return
            target.stop_asked = False
            uc.emu_start(pc, until, 0, left)
            if target.stop_asked or target.state != "running":
                return
            pc = target.regs.pc()
            if barriers.get(pc) != EXIT:
                return
            ran = executed()  # the count + 1 if it ran out, else the instructions run
            if ran >= left:  # the count ran out on the barrier: the next slice takes it
                return
            left -= ran

    def _take_trap(self, target: CpuRuntime) -> None:
        address = target.trap_hit
        target.trap_hit = None
        if address is None or target.pc != address:
            return  # the slice ended elsewhere (a fault): nothing to handle
        self._trapped = True
        self._level = self.schedule.quantum
        call = TrapCall(self.port, target.index, address)
        self.code_traps[address](call)
        if call.progressed:
            self._log.progress()

    def _python_slice(self, target: CpuRuntime, quantum: int) -> int:
        assert target.greenlet is not None
        target.quantum_left = quantum
        hooks = self._hooks
        hooks.running = target.index
        self._scheduler = greenlet.getcurrent()
        try:
            target.greenlet.switch()
        finally:
            hooks.running = None
        used = quantum - target.quantum_left
        target.instructions += used
        hooks.drain()
        return max(used, 1)

    def python_step(self, cpu: int) -> CpuRuntime:
        """Gate of every context operation: one schedule step of a Python CPU."""
        target = self._cpus[cpu]
        if greenlet.getcurrent() is not target.greenlet:
            raise MachineError("MACHINE_STATE",
                               f"cpu{cpu}'s context used outside its own Python CPU")
        if target.quantum_left <= 0:
            assert self._scheduler is not None
            self._scheduler.switch()
        target.quantum_left -= 1
        if target.fault is not None:
            raise GuestFault(target.fault)
        return target

    def _outcomes(self) -> tuple[CpuOutcome, ...]:
        return tuple(
            CpuOutcome(c.index, c.state, c.pc, c.result, c.instructions, c.exception)
            for c in self._cpus
        )

    # --- starting CPUs ------------------------------------------------------------------
    def start_cpu(self, target: CpuRuntime, pc: int, *, sp: int,
                  x: Mapping[int, int] | None = None) -> None:
        """Make ``target`` (not running) run guest code from ``pc``."""
        target.kind = "guest"
        target.regs.restore(bytes(8 * len(STATE_REGS)))
        for index, value in (x or {}).items():
            if not 0 <= index <= 30:
                raise MachineError("MACHINE_CONFIG", f"x{index} is not a general register")
            target.uc.reg_write(X_REGS[index], value & MASK64)
        target.uc.reg_write(arm64.UC_ARM64_REG_SP, sp)
        target.pc = pc
        target.state = "running"
        target.resume_skip = None
        target.fault = None
        target.trap_hit = target.trap_skip = None
        self._log.event(target.index, "start", pc, "guest")
        self._log.progress()

    def start_python(self, target: CpuRuntime, fn: Callable[[Any], object]) -> None:
        """Make ``target`` (not running) run ``fn(context)``, interleaved with the others."""
        cpu = target.index
        context = CpuContext(self.port, cpu)
        target.kind = "python"
        target.fault = None
        target.exception = None
        target.result = None
        log = self._log

        def body() -> None:
            try:
                target.result = fn(context)
            except Exception as error:  # the patcher's own failure: recorded, not raised
                target.exception = PythonException(
                    type(error).__name__, str(error), traceback.format_exc())
            target.state = "faulted" if target.fault is not None or target.exception else "done"
            log.event(cpu, "done" if target.state == "done" else "fault", 0, "python")
            log.progress()

        target.greenlet = greenlet.greenlet(body)
        target.state = "running"
        log.event(cpu, "start", 0, "python")
        log.progress()

    # --- calls into guest code ----------------------------------------------------------
    def call_guest(self, cpu: int, pc: int, args: Sequence[int] = (), *, sp: int,
                   tpidr: int = 0) -> int:
        """From Python CPU ``cpu``'s own function: run the guest function at ``pc`` until
        it returns (the result is x0) or faults (GuestFault is raised)."""
        target = self.python_step(cpu)
        if len(args) > 8:
            raise MachineError("MACHINE_CONFIG", "a guest call takes at most 8 arguments")
        target.regs.restore(bytes(8 * len(STATE_REGS)))
        for index, value in enumerate(args):
            target.uc.reg_write(X_REGS[index], value & MASK64)
        target.uc.reg_write(X_REGS[30], GUEST_RETURN_VA)
        target.uc.reg_write(arm64.UC_ARM64_REG_SP, sp)
        target.uc.reg_write(arm64.UC_ARM64_REG_TPIDR_EL0, tpidr)
        target.pc = pc
        target.resume_skip = None
        target.guest_call = True
        self._log.event(cpu, "call", pc, " ".join(f"{a:#x}" for a in args))
        self._log.progress()
        assert self._scheduler is not None
        self._scheduler.switch()  # guest slices run until the return trap or a fault
        while target.guest_call:  # (defensive: resumed before the call ended)
            self._scheduler.switch()
        if target.fault is not None:
            raise GuestFault(target.fault)
        result = target.result
        return int(result) if isinstance(result, int) else 0

    def probe(self, target: CpuRuntime, pc: int, args: Mapping[int, int] | None,
              budget: int) -> ProbeResult:
        """Call the guest function at ``pc`` on ``target`` alone (see Machine.probe)."""
        cpu = target.index
        if target.greenlet is not None and not target.greenlet.dead and target.state == "running":
            raise MachineError("MACHINE_STATE", f"cpu{cpu} is running a Python function")
        if self._hooks.running is not None:
            raise MachineError("MACHINE_STATE", "probe() called from inside the machine")
        saved_regs = target.regs.snapshot()
        saved = (target.state, target.kind, target.pc, target.result, target.resume_skip)
        log = self._log
        first_finding = len(log.findings)
        # x0-x7 from args, LR at the trap, SP at the probe stack, everything else zero.
        start = bytearray(_PROBE_START)
        for index, value in (args or {}).items():
            if 0 <= index < 8:
                struct.pack_into("<Q", start, 8 * index, value & MASK64)
        target.regs.restore(bytes(start))
        target.state, target.kind, target.pc = "running", "guest", pc
        target.probe_returned = False
        target.resume_skip = None
        self.probing = cpu
        log.event(cpu, "start", pc, "probe")
        left = budget
        try:
            while target.state == "running" and not target.probe_returned and left > 0:
                quantum = min(left, 10_000)
                left -= self._slice(target, quantum, PROBE_TRAP_VA)
            state: str = target.state  # (mutated by hooks during the slices)
            completed = target.probe_returned or state == "done"
            if state == "running" and not completed:
                log.report("budget", f"probe at {pc:#x} did not return within {budget} "
                                     f"instructions (pc={target.pc:#x})", cpu, pc=target.pc,
                           detail={"probe": pc, "instructions": budget})
            values = struct.unpack_from("<8Q", target.regs.snapshot())
        finally:
            self.probing = None
            target.regs.restore(saved_regs)
            target.state, target.kind, target.pc, target.result, target.resume_skip = saved
        return ProbeResult(values, tuple(log.findings[first_finding:]), completed)


__all__ = ["Scheduler"]
