"""The emulated SMP AArch64 machine: unicorn CPUs over one physical memory.

One unicorn instance per CPU (model MAX, so LSE atomics run) maps one host buffer of
physical memory through a mapping table shared by all CPUs.  The fetch model
(:mod:`.ifetch`) decides staleness; unicorn's translation cache is only kept in step
with it.  :class:`Machine` is the public facade; its parts are

* :mod:`.memory`: the physical buffer, the page table, aliases, ``translate``;
* :mod:`.hooks`: which unicorn hooks exist and the translation-cache upkeep;
* :mod:`.coherence`: stores to code, fetch checks, DC/IC and barriers;
* :mod:`.host_services`: SVC services (a table), exceptions and memory faults;
* :mod:`.scheduler`: run, slices, quanta, hang detection, Python CPUs, probes;
* :mod:`.events`: the trace, the findings and the symbolizers.

Python patchers, user services and code traps reach these only through the
:class:`~.port.MachinePort` the facade hands them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from unicorn import UC_HOOK_INSN, UC_HOOK_INTR, UC_HOOK_MEM_INVALID
from unicorn import arm64_const as arm64

from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.coherence import CodeCoherence
from pytest_altpatch.machine.config import (
    MAX_CODE_BUFFER,
    MAX_CPUS,
    MIN_CODE_BUFFER,
    VA_LIMIT,
    Budget,
    CpuConfig,
    MachineError,
    Perms,
    Schedule,
)
from pytest_altpatch.machine.cpu import CpuRuntime, x_register
from pytest_altpatch.machine.engines import new_engine
from pytest_altpatch.machine.events import EventLog
from pytest_altpatch.machine.guest_services import ServiceHandler, Symbolizer
from pytest_altpatch.machine.hooks import HOOK_LINE, HookBook
from pytest_altpatch.machine.host_services import HostServices
from pytest_altpatch.machine.ifetch import FetchModel, LineGeometry
from pytest_altpatch.machine.memory import (
    HARNESS_VA,
    PROBE_STACK_TOP,
    PROBE_TRAP_VA,
    VMAP_BASE,
    VMAP_LIMIT,
    MappingEntry,
    MemoryMap,
)
from pytest_altpatch.machine.port import MachinePort
from pytest_altpatch.machine.results import CpuState, ProbeResult, RunResult
from pytest_altpatch.machine.scheduler import Scheduler
from pytest_altpatch.machine.sysregs import MrsHook, SysregKey, register_key
from pytest_altpatch.machine.trace import Trace
from pytest_altpatch.machine.traps import TrapHandler
from pytest_altpatch.machine.uchooks import CodeHooks
from pytest_altpatch.machine.ucount import instruction_counter

#: Default per-instance translation buffer (a caller that knows its code passes less).
TCG_BUFFER_SIZE: Final = MAX_CODE_BUFFER
_DEFAULT_BUDGET: Final = Budget()


class Machine:
    """A deterministic SMP AArch64 machine (see the module and package docstrings)."""

    def __init__(
        self,
        cpus: Sequence[CpuConfig],
        *,
        memory_size: int,
        schedule: Schedule | str = "rr:100",
        seed: int = 0,
        budget: Budget = _DEFAULT_BUDGET,
        clean_cache_erratum: bool = False,
        trace_capacity: int = 8192,
        code_buffer: int = TCG_BUFFER_SIZE,
    ) -> None:
        if not 1 <= len(cpus) <= MAX_CPUS:
            raise MachineError("MACHINE_CONFIG", f"{len(cpus)} CPUs; 1 to {MAX_CPUS} supported")
        self._memory = MemoryMap(memory_size)
        if not MIN_CODE_BUFFER <= code_buffer <= MAX_CODE_BUFFER:
            raise MachineError("MACHINE_CONFIG", f"code_buffer {code_buffer:#x} is not in "
                               f"[{MIN_CODE_BUFFER:#x}, {MAX_CODE_BUFFER:#x}]")
        self._code_buffer = code_buffer
        parsed = Schedule.parse(schedule)
        self.seed = seed
        self.memory_size = memory_size
        self.clean_cache_erratum = clean_cache_erratum
        self._log = EventLog(trace_capacity)
        self._fetch = FetchModel(
            [LineGeometry(c.dminline, c.iminline, c.idc, c.dic) for c in cpus],
            clean_cache_erratum=clean_cache_erratum,
        )
        # The parts share one CPU list, filled once every part exists: each CPU's hooks
        # call into the parts, and the harness window is mapped last, on every CPU.
        self._cpus: list[CpuRuntime] = []
        self._hooks = HookBook(self._cpus, self._memory, self._fetch)
        self._scheduler = Scheduler(self._cpus, self._log, self._hooks, parsed, seed, budget,
                                    cpu_count=len(cpus))
        fault = self._scheduler.fault
        self._coherence = CodeCoherence(self._cpus, self._memory, self._fetch, self._log,
                                        self._hooks, parsed, fault)
        self._services = HostServices(self._cpus, self._memory, self._log, self._scheduler,
                                      self._coherence.context_sync, parsed, fault)
        self._hooks.on_code_write = self._coherence.on_code_write
        port = self._port()
        self._scheduler.port = port
        self._scheduler.code_in_flux = self._fetch.in_flux
        self._scheduler.probe_returned = self._services.probe_returned
        self._scheduler.take_svc_at = self._services.take_svc_at
        self._scheduler.observe_barrier = self._coherence.observe_barrier
        self._services.port = port
        tables: list[dict[SysregKey, int]] = []
        self._mrs = MrsHook(tables)
        for index, config in enumerate(cpus):
            cpu = self._make_cpu(index, config)
            self._cpus.append(cpu)
            tables.append(cpu.sysregs)
        self._memory.listener = self._hooks
        self._memory.map_harness()

    def _port(self) -> MachinePort:
        memory, scheduler, coherence = self._memory, self._scheduler, self._coherence
        return MachinePort(
            cpus=self._cpus, buffer=memory.buffer, code_pages=memory.code_pages,
            translate=memory.translate, read_phys=memory.read_phys,
            read_virtual=memory.read_virtual, event=self._log.event, fault=scheduler.fault,
            python_step=scheduler.python_step, call_guest=scheduler.call_guest,
            store_code=coherence.store, maintenance=coherence.maintenance,
            dsb=coherence.dsb, context_sync=coherence.context_sync, vmap=memory.vmap,
            vunmap=memory.vunmap, sysreg=self.sysreg, owner=self,
        )

    def _make_cpu(self, index: int, config: CpuConfig) -> CpuRuntime:
        uc: Any = new_engine(self._code_buffer)
        cpu = CpuRuntime(index, config, uc)
        services, coherence = self._services, self._coherence
        uc.hook_add(UC_HOOK_INTR, services.on_exception, index)
        uc.hook_add(UC_HOOK_INSN, self._mrs.on_mrs, index, 1, 0, arm64.UC_ARM64_INS_MRS)
        uc.hook_add(UC_HOOK_INSN, coherence.on_sys, index, 1, 0, arm64.UC_ARM64_INS_SYS)
        uc.hook_add(UC_HOOK_MEM_INVALID, services.on_memory_fault, index)
        cpu.stale_hook_ranges = CodeHooks(uc, coherence.on_stale_line, index)
        cpu.barrier_hook_ranges = CodeHooks(uc, coherence.on_barrier, index)
        # Barriers by exits where unicorn's instruction counter can be read (ucount.py);
        # with exits on, the probe's return trap is an exit too (emu_start's "until"
        # is then ignored).
        cpu.executed = instruction_counter(uc)
        if cpu.executed is not None:
            uc.ctl_exits_enabled(True)
            cpu.barrier_exits = cpu.exits_changed = True
        return cpu

    # ================================================================== configuration
    @property
    def schedule(self) -> Schedule:
        """The schedule the CPUs run under."""
        return self._scheduler.schedule

    @property
    def budget(self) -> Budget:
        """The limits of one :meth:`run`."""
        return self._scheduler.budget

    @property
    def trace(self) -> Trace:
        """Every event since the machine was built (the newest ``trace_capacity``)."""
        return self._log.trace

    def set_clean_cache_erratum(self, on: bool) -> None:
        """Whether DC CVAU is insufficient (an online CPU has the Cortex-A53 errata); set
        by the runner once it knows which CPUs are online when patched text runs."""
        self.clean_cache_erratum = on
        self._fetch.set_clean_cache_erratum(on)

    @property
    def cpu_count(self) -> int:
        """Number of CPUs."""
        return len(self._cpus)

    def cpu_config(self, cpu: int) -> CpuConfig:
        """The configuration CPU ``cpu`` was built with."""
        return self._cpu(cpu).config

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding since the machine was built, in order."""
        return tuple(self._log.findings)

    @property
    def finding_count(self) -> int:
        """How many findings there are (``len(findings)`` without copying them)."""
        return len(self._log.findings)

    @property
    def vmaps(self) -> Mapping[int, int]:
        """The vmap aliases mapped now: first page VA -> length in bytes."""
        return dict(self._memory.vmaps)

    def note(self, code: str, message: str, *, cpu: int, address: int | None = None,
             detail: Mapping[str, object] | None = None) -> Finding:
        """Record a finding the caller observed about the machine (it does not stop a CPU)."""
        return self._log.report(code, message, cpu, address=address, detail=detail)

    def cpu_state(self, cpu: int) -> CpuState:
        """The current state of CPU ``cpu``."""
        return self._cpu(cpu).state

    def state_watch(self, cpus: Sequence[int], state: CpuState) -> Callable[[], bool]:
        """A check of whether one of ``cpus`` is in ``state`` now (the CPUs checked once,
        here: a run's ``until`` asks after every step)."""
        watched = [self._cpu(cpu) for cpu in cpus]
        # (a list and its membership test cost a quarter of any() over a generator)
        return lambda: state in [runtime.state for runtime in watched]

    def _cpu(self, cpu: int) -> CpuRuntime:
        if not isinstance(cpu, int) or not 0 <= cpu < len(self._cpus):
            raise MachineError("MACHINE_CONFIG", f"no CPU {cpu!r} (have {len(self._cpus)})")
        return self._cpus[cpu]

    # ================================================================== memory
    def load_phys(self, pa: int, data: bytes) -> None:
        """Write ``data`` at physical ``pa``, bypassing permissions and the fetch model
        (for building the initial image before any CPU runs it)."""
        self._memory.load_phys(pa, data)

    def read_phys(self, pa: int, size: int) -> bytes:
        """``size`` bytes of physical memory at ``pa``."""
        return self._memory.read_phys(pa, size)

    def map(self, va: int, pa: int, size: int, perms: Perms | str) -> None:
        """Map physical [pa, pa+size) at ``va`` with ``perms`` (``"r-x"``, ``"r--"``,
        ``"rw-"``) for every CPU.  Addresses and size must be 4 KiB aligned."""
        self._memory.map(va, pa, size, perms)

    def unmap(self, va: int, size: int) -> None:
        """Remove the mappings of [va, va+size) (every page must be mapped)."""
        self._memory.unmap(va, size)

    def protect(self, va: int, size: int, perms: Perms | str) -> None:
        """Change the permissions of the mapped pages [va, va+size) to ``perms``."""
        self._memory.protect(va, size, perms)

    def vmap(self, pa: int, size: int) -> int:
        """Map physical [pa, pa+size) read-write at a free VA of the alias window;
        returns the VA of byte ``pa`` (``pa`` need not be page aligned)."""
        return self._memory.vmap(pa, size)

    def vunmap(self, va: int) -> None:
        """Remove the vmap alias that contains ``va``."""
        self._memory.vunmap(va)

    def declare_code(self, pa: int, size: int) -> None:
        """Treat physical [pa, pa+size) as code before it is mapped executable, so
        stores to it (e.g. a late payload written while still RW) are tracked."""
        self._memory.declare_code(pa, size)

    def mappings(self) -> tuple[MappingEntry, ...]:
        """The shared mapping table, coalesced into runs, in VA order."""
        return self._memory.mappings()

    def translate(self, va: int) -> tuple[int, Perms] | None:
        """(physical address, permissions) of ``va``, or None when unmapped."""
        return self._memory.translate(va)

    def read_virtual(self, va: int, size: int) -> bytes | None:
        """``size`` bytes at ``va`` through the mapping table (harness-side, no fetch
        model, no permissions), or None when any page is unmapped."""
        return self._memory.read_virtual(va, size)

    # ================================================================== code traps, trace
    def add_code_trap(self, va: int, handler: TrapHandler) -> None:
        """Stop any guest CPU about to execute the word at ``va`` and call ``handler``
        between slices (see :mod:`.traps`).  ``va`` must be mapped executable when run."""
        if va % 4 or not 0 <= va < VA_LIMIT:
            raise MachineError("MACHINE_MAPPING", f"trap address {va:#x} is not a word address")
        traps = self._scheduler.code_traps
        if va in traps:
            raise MachineError("MACHINE_MAPPING", f"{va:#x} already has a code trap")
        traps[va] = handler
        self._hooks.add_trap_hooks(va)

    def x_register(self, index: int) -> int:
        """Unicorn's register id of ``x<index>`` (0-30)."""
        return x_register(index)

    def record(self, cpu: int, kind: str, address: int, detail: str = "") -> int:
        """Append a harness event to the trace; returns its step."""
        return self._log.event(cpu, kind, address, detail)

    # ================================================================== system registers
    def sysreg(self, cpu: int, name: str) -> int:
        """The value CPU ``cpu`` reads from system register ``name`` (lower case)."""
        key = register_key(name)
        if key is None:
            raise MachineError("MACHINE_CONFIG", f"unknown system register {name!r}")
        return self._cpu(cpu).sysregs.get(key, 0)

    # ================================================================== starting, running
    def start_cpu(self, cpu: int, pc: int, *, sp: int, x: Mapping[int, int] | None = None) -> None:
        """Make CPU ``cpu`` run guest code from ``pc`` with stack ``sp`` and x registers."""
        self._scheduler.start_cpu(self._startable(cpu), pc, sp=sp, x=x)

    def start_python(self, cpu: int, fn: Callable[[Any], object]) -> None:
        """Make CPU ``cpu`` run ``fn(context)`` (a CpuContext), interleaved with the others."""
        self._scheduler.start_python(self._startable(cpu), fn)

    def _startable(self, cpu: int) -> CpuRuntime:
        target = self._cpu(cpu)
        if target.state == "running":
            raise MachineError("MACHINE_STATE", f"cpu{cpu} is already running")
        return target

    def run(self, until: Callable[[], bool] | None = None) -> RunResult:
        """Interleave all running CPUs under the schedule until none is running,
        ``until()`` is true, the budget is spent, or every CPU spins (hang)."""
        return self._scheduler.run(until)

    def call_guest(self, cpu: int, pc: int, args: Sequence[int] = (), *, sp: int,
                   tpidr: int = 0) -> int:
        """From Python CPU ``cpu``'s own function: run the guest function at ``pc`` with
        x0..x7 = ``args`` and stack ``sp`` on that CPU, under the schedule like any guest
        code, until it returns (the result is x0) or faults (GuestFault is raised)."""
        return self._scheduler.call_guest(cpu, pc, args, sp=sp, tpidr=tpidr)

    def probe(self, cpu: int, pc: int, args: Mapping[int, int] | None = None,
              budget: int = 100_000) -> ProbeResult:
        """Call the guest function at ``pc`` on CPU ``cpu`` with x0..x7 from ``args``,
        a fresh stack and LR at a return trap; only that CPU runs.  The CPU's registers
        and state are restored afterwards."""
        return self._scheduler.probe(self._cpu(cpu), pc, args, budget)

    # ================================================================== services, names
    def add_service(self, imm: int, handler: ServiceHandler) -> None:
        """Serve ``svc #imm`` with ``handler`` (native patcher services; the built-in
        immediates of :class:`HostService` and the harness traps cannot be replaced)."""
        self._services.add(imm, handler)

    def add_symbolizer(self, symbolizer: Symbolizer) -> None:
        """Name code addresses in findings (``symbol+offset (file:line)``)."""
        self._log.symbolizers.append(symbolizer)

    def where(self, pc: int) -> str | None:
        """What a symbolizer says about ``pc``, or None."""
        return self._log.where(pc)


__all__ = [
    "HARNESS_VA",
    "HOOK_LINE",
    "PROBE_STACK_TOP",
    "PROBE_TRAP_VA",
    "TCG_BUFFER_SIZE",
    "VMAP_BASE",
    "VMAP_LIMIT",
    "Machine",
    "MappingEntry",
]
