"""The emulated SMP AArch64 machine: unicorn CPUs over one physical memory.

One unicorn instance per CPU (model MAX, so LSE atomics run) maps one host buffer of
physical memory through a mapping table shared by all CPUs.  The fetch model
(:mod:`.ifetch`) decides staleness; unicorn's translation cache is only kept in step
with it.  Hooks are narrow so plain guest code runs at unicorn speed:

* UC_HOOK_MEM_WRITE only over writable mappings of *code pages* (physical pages that
  are or were mapped executable, or were declared code);
* UC_HOOK_CODE only on the DSB/ISB words of executable mappings (they never reach
  INSN hooks) and, per CPU, on the 64-byte lines holding words stale for that CPU;
* UC_HOOK_INSN for MRS (ID registers) and SYS (DC/IC), UC_HOOK_INTR for SVC & co.

Unicorn state of an instance is never changed while it emulates (``ctl_remove_cache``
inside a memory hook loses the store); such changes wait for the end of the slice, and
a store to a code page ends its CPU's slice.  Unicorn then re-executes that store (its
PC stays on it), which rewrites the same bytes and is recognised as no change.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import random
import re
import struct
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import greenlet
import unicorn as _unicorn
from unicorn import (
    UC_ARCH_ARM64,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_INVALID,
    UC_HOOK_MEM_WRITE,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_ARM,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
)
from unicorn import arm64_const as arm64
from unicorn.unicorn_py3.unicorn import uclib

from pytest_altpatch.a64.classify import CACHE_OPS, barrier, exception_call
from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.config import (
    MAX_CODE_BUFFER,
    MAX_CPUS,
    MIN_CODE_BUFFER,
    PAGE_SIZE,
    VA_LIMIT,
    Budget,
    CpuConfig,
    MachineError,
    Perms,
    Schedule,
)
from pytest_altpatch.machine.context import CpuContext, GuestFault
from pytest_altpatch.machine.guest_services import ServiceCall, ServiceHandler, Symbolizer
from pytest_altpatch.machine.ifetch import FetchModel, FetchVerdict, LineGeometry
from pytest_altpatch.machine.priority import PriorityPolicy
from pytest_altpatch.machine.results import (
    CpuOutcome,
    CpuState,
    ProbeResult,
    PythonException,
    RunReason,
    RunResult,
)
from pytest_altpatch.machine.services import GUEST_RETURN, PROBE_RETURN, HostService, svc_word
from pytest_altpatch.machine.sysregs import (
    ID_REGISTERS,
    IDENTITY_REGISTERS,
    SysregKey,
    in_id_space,
)
from pytest_altpatch.machine.trace import Trace, TraceEvent
from pytest_altpatch.machine.traps import TrapCall, TrapHandler
from pytest_altpatch.machine.uchooks import CodeHooks

# unicorn's binding is only partly typed: its engine class is used as Any.
Uc: Any = _unicorn.__dict__["Uc"]
UcError: Any = _unicorn.__dict__["UcError"]

PAGE_SHIFT: Final = 12
#: Exit address of every slice: never reachable (all VAs are below 2**47).
_UNTIL: Final = 1 << 48
#: Default per-instance translation buffer (a caller that knows its code passes less).
TCG_BUFFER_SIZE: Final = MAX_CODE_BUFFER
#: Granule of the per-CPU stale-line code hooks.
HOOK_LINE: Final = 64
#: A stale-line hook outlives its line's staleness until it has fired this many times
#: with nothing to report: adding and deleting a unicorn hook costs far more than a
#: harmless callback, and a patch-and-call loop re-arms the same lines every time.
_IDLE_FIRES: Final = 256
#: At most this many such kept hooks per CPU: unicorn's translation time grows with
#: the number of code hooks, so after a large patch the fresh lines are unhooked.
_IDLE_KEEP: Final = 16
#: Where ``vmap`` places RW aliases.
VMAP_BASE: Final = 0x7000_0000_0000
VMAP_LIMIT: Final = 0x7800_0000_0000
#: The harness window: probe return trap page (R-X) and the probe stack (RW-).
HARNESS_VA: Final = 0x7FFF_0000_0000
PROBE_STACK_SIZE: Final = 0x10000
_HARNESS_SIZE: Final = PAGE_SIZE + PROBE_STACK_SIZE
PROBE_TRAP_VA: Final = HARNESS_VA
#: Return address of a Python CPU's call into guest code (:meth:`Machine.call_guest`).
GUEST_RETURN_VA: Final = HARNESS_VA + 4
PROBE_STACK_TOP: Final = HARNESS_VA + _HARNESS_SIZE
MAX_MEMORY: Final = 1 << 32

_X_REGS: Final = tuple(getattr(arm64, f"UC_ARM64_REG_X{i}") for i in range(31))
_STATE_REGS: Final = (*_X_REGS, arm64.UC_ARM64_REG_SP, arm64.UC_ARM64_REG_PC,
                      arm64.UC_ARM64_REG_NZCV)
_PC: Final = arm64.UC_ARM64_REG_PC
_SP_SLOT: Final = _STATE_REGS.index(arm64.UC_ARM64_REG_SP)

_UC_PROT: Final = {Perms.R: UC_PROT_READ, Perms.W: UC_PROT_WRITE, Perms.X: UC_PROT_EXEC}

# DSB or ISB words (little-endian bytes): op2 in {100, 110}, any CRm; refined by
# a64.classify.barrier.
_BARRIER_BYTES: Final = re.compile(rb"[\x9f\xdf][\x30-\x3f]\x03\xd5")

_CLEAN_OPS: Final = {"dc cvau": "cvau", "dc cvac": "cvac", "dc civac": "civac"}
_INVALIDATE_OPS: Final = {"ic ivau": "va", "ic ialluis": "all", "ic iallu": "local"}
#: CACHE_OPS is keyed (op1, CRn, CRm, op2); the SYS hook reports those fields.
_SYS_OPS: Final = {key: name for key, name in CACHE_OPS.items()
                   if name in _CLEAN_OPS or name in _INVALIDATE_OPS}

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


@dataclass(frozen=True)
class MappingEntry:
    """One mapped run of pages (coalesced view of the shared table)."""

    va: int
    pa: int
    size: int
    perms: Perms
    kind: str


_DEFAULT_BUDGET: Final = Budget()


class _RegisterFile:
    """Fast batch access to one instance's x0-x30, SP, PC, NZCV through ctypes."""

    def __init__(self, uc: Any) -> None:
        count = len(_STATE_REGS)
        self._uch = uc._uch
        self._count = count
        self._ids = (ctypes.c_int * count)(*_STATE_REGS)
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
        uclib.uc_reg_read(self._uch, _PC, self._pc_ptr)
        return self._pc_value.value


class _Cpu:
    """Mutable runtime state of one CPU (private to the machine)."""

    def __init__(self, index: int, config: CpuConfig, uc: Any) -> None:
        self.index = index
        self.config = config
        self.uc: Any = uc
        self.regs = _RegisterFile(uc)
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
        #: Hooked lines no longer stale for this CPU -> harmless fires since (see _IDLE_FIRES).
        self.idle_lines: dict[int, int] = {}
        self.barrier_hooks: dict[int, int] = {}
        self.write_hooks: list[int] = []
        self.resume_skip: int | None = None
        self.trap_hooks: dict[int, int] = {}
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
        if memory_size <= 0 or memory_size % PAGE_SIZE or memory_size > MAX_MEMORY:
            raise MachineError(
                "MACHINE_CONFIG",
                f"memory_size {memory_size:#x} is not a positive multiple of 4 KiB up to 4 GiB",
            )
        if not MIN_CODE_BUFFER <= code_buffer <= MAX_CODE_BUFFER:
            raise MachineError("MACHINE_CONFIG", f"code_buffer {code_buffer:#x} is not in "
                               f"[{MIN_CODE_BUFFER:#x}, {MAX_CODE_BUFFER:#x}]")
        self._code_buffer = code_buffer
        self.schedule = Schedule.parse(schedule)
        self.seed = seed
        self.budget = budget
        self.memory_size = memory_size
        self.clean_cache_erratum = clean_cache_erratum
        self.trace = Trace(trace_capacity)
        self._rng = random.Random(f"{self.schedule.seed}:{seed}")
        self._priorities = PriorityPolicy(len(cpus), self.schedule.seed, seed) \
            if self.schedule.kind == "pct" else None
        self._step = 0
        self._findings: list[Finding] = []
        self._harness_pa = memory_size
        total = memory_size + _HARNESS_SIZE
        # The buffer and its ctypes view must outlive every unicorn instance that maps it
        # (unicorn holds a raw pointer): both are attributes of the machine.
        self._buffer = mmap.mmap(-1, total)
        self._cbuffer = (ctypes.c_char * total).from_buffer(self._buffer)
        self._base = ctypes.addressof(self._cbuffer)
        self._pages: dict[int, tuple[int, Perms, str]] = {}
        self._code_pages: set[int] = set()
        self._exec_alias: dict[int, list[int]] = {}
        self._vmaps: dict[int, int] = {}
        self._write_ranges: list[tuple[int, int]] = []
        self._running: int | None = None
        self._after_slice: list[Callable[[], object]] = []
        self._stop_slice = False
        self._scheduler: greenlet.greenlet | None = None
        self._probing: int | None = None
        #: None after any progress event; the hang detector restarts from there.
        self._hang_seen: bool | None = None
        self._services: dict[int, ServiceHandler] = {}
        self._symbolizers: list[Symbolizer] = []
        #: Trace step of a write to code -> the PC of its store instruction.
        self._writers: dict[int, int] = {}
        self._code_traps: dict[int, TrapHandler] = {}
        self._fetch = FetchModel(
            [LineGeometry(c.dminline, c.iminline, c.idc, c.dic) for c in cpus],
            clean_cache_erratum=clean_cache_erratum,
        )
        self._cpus = [self._make_cpu(index, config) for index, config in enumerate(cpus)]
        self._buffer[self._harness_pa:self._harness_pa + 4] = svc_word(PROBE_RETURN).to_bytes(
            4, "little")
        self._buffer[self._harness_pa + 4:self._harness_pa + 8] = svc_word(GUEST_RETURN).to_bytes(
            4, "little")
        self._map_pages(HARNESS_VA, self._harness_pa, PAGE_SIZE, Perms.R | Perms.X, "harness")
        self._map_pages(HARNESS_VA + PAGE_SIZE, self._harness_pa + PAGE_SIZE, PROBE_STACK_SIZE,
                        Perms.R | Perms.W, "harness")

    def set_clean_cache_erratum(self, on: bool) -> None:
        """Whether DC CVAU is insufficient (an online CPU has the Cortex-A53 errata); set
        by the runner once it knows which CPUs are online when patched text runs."""
        self.clean_cache_erratum = on
        self._fetch.set_clean_cache_erratum(on)

    # ================================================================== construction
    def _make_cpu(self, index: int, config: CpuConfig) -> _Cpu:
        uc: Any = Uc(UC_ARCH_ARM64, UC_MODE_ARM, arm64.UC_CPU_ARM64_MAX)
        uc.ctl_set_tcg_buffer_size(self._code_buffer)
        cpu = _Cpu(index, config, uc)
        uc.hook_add(UC_HOOK_INTR, self._on_exception, index)
        uc.hook_add(UC_HOOK_INSN, self._on_mrs, index, 1, 0, arm64.UC_ARM64_INS_MRS)
        uc.hook_add(UC_HOOK_INSN, self._on_sys, index, 1, 0, arm64.UC_ARM64_INS_SYS)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_memory_fault, index)
        cpu.stale_hook_ranges = CodeHooks(uc, self._on_stale_line, index)
        cpu.barrier_hook_ranges = CodeHooks(uc, self._on_barrier, index)
        return cpu

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
        return tuple(self._findings)

    @property
    def vmaps(self) -> Mapping[int, int]:
        """The vmap aliases mapped now: first page VA -> length in bytes."""
        return dict(self._vmaps)

    def note(self, code: str, message: str, *, cpu: int, address: int | None = None,
             detail: Mapping[str, object] | None = None) -> Finding:
        """Record a finding the caller observed about the machine (it does not stop a CPU)."""
        return self._report(code, message, cpu, address=address, detail=detail)

    def cpu_state(self, cpu: int) -> CpuState:
        """The current state of CPU ``cpu``."""
        return self._cpu(cpu).state

    def _cpu(self, cpu: int) -> _Cpu:
        if not isinstance(cpu, int) or not 0 <= cpu < len(self._cpus):
            raise MachineError("MACHINE_CONFIG", f"no CPU {cpu!r} (have {len(self._cpus)})")
        return self._cpus[cpu]

    # ================================================================== memory
    def load_phys(self, pa: int, data: bytes) -> None:
        """Write ``data`` at physical ``pa``, bypassing permissions and the fetch model
        (for building the initial image before any CPU runs it)."""
        self._check_phys(pa, len(data))
        self._buffer[pa:pa + len(data)] = bytes(data)
        # Executable aliases of what was loaded: find new barriers, drop translations.
        for pa_page in range(pa >> PAGE_SHIFT, (pa + len(data) + PAGE_SIZE - 1) >> PAGE_SHIFT):
            for page in self._exec_alias.get(pa_page, ()):
                self._scan_barriers(page, pa_page)
                self._soon(self._drop_translations(page << PAGE_SHIFT, PAGE_SIZE))

    def read_phys(self, pa: int, size: int) -> bytes:
        """``size`` bytes of physical memory at ``pa``."""
        self._check_phys(pa, size)
        return self._buffer[pa:pa + size]

    def _drop_translations(self, va: int, size: int) -> Callable[[], None]:
        def apply() -> None:
            for cpu in self._cpus:
                cpu.uc.ctl_remove_cache(va, va + size)
        return apply

    def _check_phys(self, pa: int, size: int) -> None:
        if pa < 0 or size < 0 or pa + size > self.memory_size:
            raise MachineError(
                "MACHINE_MAPPING",
                f"physical range [{pa:#x}, {pa + size:#x}) is outside memory "
                f"[0, {self.memory_size:#x})",
            )

    def map(self, va: int, pa: int, size: int, perms: Perms | str) -> None:
        """Map physical [pa, pa+size) at ``va`` with ``perms`` (``"r-x"``, ``"r--"``,
        ``"rw-"``) for every CPU.  Addresses and size must be 4 KiB aligned."""
        flags = Perms.parse(perms)
        self._check_range(va, size)
        self._check_phys(pa, size)
        if pa % PAGE_SIZE:
            raise MachineError("MACHINE_MAPPING", f"physical address {pa:#x} is not 4 KiB aligned")
        if va < VMAP_LIMIT and va + size > VMAP_BASE:
            raise MachineError(
                "MACHINE_MAPPING",
                f"[{va:#x}, {va + size:#x}) overlaps the vmap alias window "
                f"[{VMAP_BASE:#x}, {VMAP_LIMIT:#x})",
            )
        self._check_free(va, size)
        self._map_pages(va, pa, size, flags, "map")

    def unmap(self, va: int, size: int) -> None:
        """Remove the mappings of [va, va+size) (every page must be mapped)."""
        self._check_range(va, size)
        self._check_mapped(va, size)
        if any(self._pages[page][2] == "harness" for page in self._page_range(va, size)):
            raise MachineError("MACHINE_MAPPING", "the harness window cannot be unmapped")
        self._unmap_pages(va, size)

    def protect(self, va: int, size: int, perms: Perms | str) -> None:
        """Change the permissions of the mapped pages [va, va+size) to ``perms``."""
        flags = Perms.parse(perms)
        self._check_range(va, size)
        self._check_mapped(va, size)
        for page in self._page_range(va, size):
            pa_page, old, kind = self._pages[page]
            if kind == "harness":
                raise MachineError("MACHINE_MAPPING", "the harness window cannot be changed")
            if Perms.X in old and Perms.X not in flags:
                self._forget_exec_page(page, pa_page)
            self._pages[page] = (pa_page, flags, kind)
        if Perms.X in flags:
            for page in self._page_range(va, size):
                self._note_exec_page(page, self._pages[page][0])
        prot = self._uc_prot(flags)

        def apply() -> None:
            for cpu in self._cpus:
                cpu.uc.mem_protect(va, size, prot)
        self._soon(apply)
        self._refresh_write_hooks()

    def vmap(self, pa: int, size: int) -> int:
        """Map physical [pa, pa+size) read-write at a free VA of the alias window;
        returns the VA of byte ``pa`` (``pa`` need not be page aligned)."""
        if size <= 0:
            raise MachineError("MACHINE_MAPPING", f"vmap size {size} is not positive")
        self._check_phys(pa, size)
        first = pa & ~(PAGE_SIZE - 1)
        length = ((pa + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) - first
        va = self._free_alias_va(length)
        self._vmaps[va] = length
        self._map_pages(va, first, length, Perms.R | Perms.W, "vmap")
        return va + (pa - first)

    def vunmap(self, va: int) -> None:
        """Remove the vmap alias that contains ``va``."""
        for start, length in self._vmaps.items():
            if start <= va < start + length:
                del self._vmaps[start]
                self._unmap_pages(start, length)
                return
        raise MachineError("MACHINE_MAPPING", f"{va:#x} is not inside a vmap alias")

    def declare_code(self, pa: int, size: int) -> None:
        """Treat physical [pa, pa+size) as code before it is mapped executable, so
        stores to it (e.g. a late payload written while still RW) are tracked."""
        self._check_phys(pa, size)
        for page in range(pa >> PAGE_SHIFT, (pa + size + PAGE_SIZE - 1) >> PAGE_SHIFT):
            self._code_pages.add(page)
        self._refresh_write_hooks()

    def mappings(self) -> tuple[MappingEntry, ...]:
        """The shared mapping table, coalesced into runs, in VA order."""
        entries: list[MappingEntry] = []
        for page in sorted(self._pages):
            pa_page, perms, kind = self._pages[page]
            if entries:
                last = entries[-1]
                if (last.va + last.size == page << PAGE_SHIFT
                        and last.pa + last.size == pa_page << PAGE_SHIFT
                        and last.perms == perms and last.kind == kind):
                    entries[-1] = MappingEntry(last.va, last.pa, last.size + PAGE_SIZE, perms,
                                               kind)
                    continue
            entries.append(MappingEntry(page << PAGE_SHIFT, pa_page << PAGE_SHIFT, PAGE_SIZE,
                                        perms, kind))
        return tuple(entries)

    def translate(self, va: int) -> tuple[int, Perms] | None:
        """(physical address, permissions) of ``va``, or None when unmapped."""
        entry = self._pages.get(va >> PAGE_SHIFT)
        if entry is None:
            return None
        return (entry[0] << PAGE_SHIFT) | (va & (PAGE_SIZE - 1)), entry[1]

    # --- mapping internals ---------------------------------------------------------
    @staticmethod
    def _page_range(va: int, size: int) -> range:
        return range(va >> PAGE_SHIFT, (va + size) >> PAGE_SHIFT)

    def _check_range(self, va: int, size: int) -> None:
        if va % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
            raise MachineError(
                "MACHINE_MAPPING", f"[{va:#x}, +{size:#x}) is not a 4 KiB aligned, non-empty range"
            )
        if va < 0 or va + size > VA_LIMIT:
            raise MachineError("MACHINE_MAPPING", f"[{va:#x}, +{size:#x}) is not below 2**47")

    def _check_free(self, va: int, size: int) -> None:
        for page in self._page_range(va, size):
            if page in self._pages:
                raise MachineError(
                    "MACHINE_MAPPING", f"{page << PAGE_SHIFT:#x} is already mapped"
                )

    def _check_mapped(self, va: int, size: int) -> None:
        for page in self._page_range(va, size):
            if page not in self._pages:
                raise MachineError("MACHINE_MAPPING", f"{page << PAGE_SHIFT:#x} is not mapped")

    def _free_alias_va(self, length: int) -> int:
        candidate = VMAP_BASE
        for start in sorted(self._vmaps):
            if start - candidate >= length:
                break
            candidate = max(candidate, start + self._vmaps[start])
        if candidate + length > VMAP_LIMIT:
            raise MachineError("MACHINE_MAPPING", "the vmap alias window is full")
        return candidate

    @staticmethod
    def _uc_prot(perms: Perms) -> int:
        prot = 0
        for flag, value in _UC_PROT.items():
            if flag in perms:
                prot |= value
        return prot

    def _map_pages(self, va: int, pa: int, size: int, perms: Perms, kind: str) -> None:
        for offset in range(0, size, PAGE_SIZE):
            page = (va + offset) >> PAGE_SHIFT
            pa_page = (pa + offset) >> PAGE_SHIFT
            self._pages[page] = (pa_page, perms, kind)
            if Perms.X in perms:
                self._note_exec_page(page, pa_page)
        prot = self._uc_prot(perms)
        pointer = self._base + pa

        def apply() -> None:
            for cpu in self._cpus:
                cpu.uc.mem_map_ptr(va, size, prot, pointer)
        self._soon(apply)
        self._refresh_write_hooks()

    def _unmap_pages(self, va: int, size: int) -> None:
        for page in self._page_range(va, size):
            pa_page, perms, _ = self._pages.pop(page)
            if Perms.X in perms:
                self._forget_exec_page(page, pa_page)

        def apply() -> None:
            for cpu in self._cpus:
                cpu.uc.mem_unmap(va, size)
        self._soon(apply)
        self._refresh_write_hooks()

    def _note_exec_page(self, page: int, pa_page: int) -> None:
        """A VA page became executable: index it, scan it for barriers, hook stale words."""
        self._code_pages.add(pa_page)
        aliases = self._exec_alias.setdefault(pa_page, [])
        if page in aliases:
            return
        aliases.append(page)
        aliases.sort()
        va = page << PAGE_SHIFT
        self._scan_barriers(page, pa_page)
        for write in self._fetch.pending_words():
            if write.pa >> PAGE_SHIFT == pa_page:
                for cpu in sorted(write.pending):
                    self._hook_stale_line(self._cpus[cpu], va + (write.pa & (PAGE_SIZE - 1)))

    def _scan_barriers(self, page: int, pa_page: int) -> None:
        """Hook every DSB/ISB word of the executable VA page ``page``."""
        pa = pa_page << PAGE_SHIFT
        text = self._buffer[pa:pa + PAGE_SIZE]
        for match in _BARRIER_BYTES.finditer(text):
            offset = match.start()
            if offset % 4 == 0:
                word = int.from_bytes(text[offset:offset + 4], "little")
                self._hook_barrier_word((page << PAGE_SHIFT) + offset, word)

    def _forget_exec_page(self, page: int, pa_page: int) -> None:
        aliases = self._exec_alias.get(pa_page, [])
        if page in aliases:
            aliases.remove(page)
        low, high = page << PAGE_SHIFT, (page + 1) << PAGE_SHIFT
        for cpu in self._cpus:
            for va in [v for v in cpu.idle_lines if low <= v < high]:
                del cpu.idle_lines[va]
            for hooks in (cpu.barrier_hooks, cpu.stale_hooks):
                for va in [v for v in hooks if low <= v < high]:
                    handle = hooks.pop(va)
                    if handle != -1:
                        self._soon(functools.partial(cpu.uc.hook_del, handle))

    def _hook_barrier_word(self, va: int, word: int) -> None:
        found = barrier(word)
        if found is None or found.kind == "dmb":
            return
        for cpu in self._cpus:
            if va not in cpu.barrier_hooks:
                cpu.barrier_hooks[va] = -1
                self._soon(functools.partial(self._add_barrier_hook, cpu, va))

    def _add_barrier_hook(self, cpu: _Cpu, va: int) -> None:
        if cpu.barrier_hooks.get(va) == -1:
            assert cpu.barrier_hook_ranges is not None
            cpu.barrier_hooks[va] = cpu.barrier_hook_ranges.add(va, va + 3)
            cpu.uc.ctl_remove_cache(va, va + 4)

    def _hook_stale_line(self, cpu: _Cpu, va: int) -> None:
        line = va & -HOOK_LINE
        if cpu.idle_lines.pop(line, None) is not None and any(
                word in cpu.barrier_hooks for word in range(line, line + HOOK_LINE, 4)):
            # Stale again, beside a barrier hook: hook anew, so the two callbacks run in
            # the order they would if the kept hook had been deleted when it went idle.
            old = cpu.stale_hooks.pop(line)
            if old != -1:
                self._soon(functools.partial(cpu.uc.hook_del, old))
        if line not in cpu.stale_hooks:
            cpu.stale_hooks[line] = -1

            def add() -> None:
                if cpu.stale_hooks.get(line) == -1:
                    assert cpu.stale_hook_ranges is not None
                    cpu.stale_hooks[line] = cpu.stale_hook_ranges.add(line, line + HOOK_LINE - 1)
            self._soon(add)
        self._soon(lambda: cpu.uc.ctl_remove_cache(va & ~3, (va & ~3) + 4))

    def _refresh_write_hooks(self) -> None:
        """Hook stores exactly on writable mappings of code pages."""
        ranges: list[tuple[int, int]] = []
        for page in sorted(self._pages):
            pa_page, perms, _ = self._pages[page]
            if Perms.W not in perms or pa_page not in self._code_pages:
                continue
            start = page << PAGE_SHIFT
            if ranges and ranges[-1][1] + 1 == start:
                ranges[-1] = (ranges[-1][0], start + PAGE_SIZE - 1)
            else:
                ranges.append((start, start + PAGE_SIZE - 1))
        if ranges == self._write_ranges:
            return
        self._write_ranges = ranges

        def rehook() -> None:
            for cpu in self._cpus:
                for handle in cpu.write_hooks:
                    cpu.uc.hook_del(handle)
                cpu.write_hooks = [
                    cpu.uc.hook_add(UC_HOOK_MEM_WRITE, self._on_code_write, cpu.index, low, high)
                    for low, high in self._write_ranges
                ]
                cpu.uc.ctl_flush_tb()
        self._soon(rehook)

    def _soon(self, action: Callable[[], object]) -> None:
        """Run ``action`` now, or after the current slice if a CPU is emulating."""
        if self._running is None:
            action()
        else:
            self._after_slice.append(action)

    def _drain(self) -> None:
        while self._after_slice:
            actions, self._after_slice = self._after_slice, []
            for action in actions:
                action()

    # ================================================================== code traps
    def add_code_trap(self, va: int, handler: TrapHandler) -> None:
        """Stop any guest CPU about to execute the word at ``va`` and call ``handler``
        between slices (see :mod:`.traps`).  ``va`` must be mapped executable when run."""
        if va % 4 or not 0 <= va < VA_LIMIT:
            raise MachineError("MACHINE_MAPPING", f"trap address {va:#x} is not a word address")
        if va in self._code_traps:
            raise MachineError("MACHINE_MAPPING", f"{va:#x} already has a code trap")
        self._code_traps[va] = handler
        for cpu in self._cpus:
            self._soon(functools.partial(self._add_trap_hook, cpu, va))

    def _add_trap_hook(self, cpu: _Cpu, va: int) -> None:
        cpu.trap_hooks[va] = cpu.uc.hook_add(UC_HOOK_CODE, self._on_code_trap, cpu.index,
                                             va, va + 3)
        cpu.uc.ctl_remove_cache(va, va + 4)

    def _on_code_trap(self, uc: Any, address: int, size: int, cpu: int) -> None:
        target = self._cpus[cpu]
        if target.trap_skip == address:
            target.trap_skip = None
            return
        target.trap_hit = address
        self._stop_slice = True
        uc.emu_stop()

    def _take_trap(self, target: _Cpu) -> None:
        address = target.trap_hit
        target.trap_hit = None
        if address is None or target.pc != address:
            return  # the slice ended elsewhere (a fault): nothing to handle
        call = TrapCall(self, target.index, address)
        self._code_traps[address](call)
        if call.progressed:
            self._progress()

    def x_register(self, index: int) -> int:
        """Unicorn's register id of ``x<index>`` (0-30)."""
        if not 0 <= index <= 30:
            raise MachineError("MACHINE_CONFIG", f"x{index} is not a general register")
        return int(_X_REGS[index])

    def read_virtual(self, va: int, size: int) -> bytes | None:
        """``size`` bytes at ``va`` through the mapping table (harness-side, no fetch
        model, no permissions), or None when any page is unmapped."""
        out = bytearray()
        while size > 0:
            found = self.translate(va)
            if found is None:
                return None
            chunk = min(size, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
            out += self._buffer[found[0]:found[0] + chunk]
            va, size = va + chunk, size - chunk
        return bytes(out)

    def record(self, cpu: int, kind: str, address: int, detail: str = "") -> int:
        """Append a harness event to the trace; returns its step."""
        return self._event(cpu, kind, address, detail)

    # ================================================================== events, findings
    def _event(self, cpu: int, kind: str, address: int, detail: str = "") -> int:
        step = self._step
        self._step += 1
        self.trace.append(TraceEvent(step, cpu, kind, address, detail))
        return step

    def _report(self, code: str, message: str, cpu: int, *, pc: int | None = None,
                address: int | None = None, detail: Mapping[str, object] | None = None,
                kind: str | None = None) -> Finding:
        details = dict(detail or {})
        where = self.where(pc) if pc is not None else None
        if where is not None:
            message = f"{message} (at {where})"
            details["where"] = where
        step = self._event(cpu, kind or code, address if address is not None else (pc or 0),
                           message)
        finding = Finding(code, message, cpu=cpu, pc=pc, address=address, step=step,
                          detail=details)
        self._findings.append(finding)
        return finding

    def _fault(self, cpu: _Cpu, code: str, message: str, *, pc: int | None,
               address: int | None = None, detail: Mapping[str, object] | None = None) -> Finding:
        """Record a fault: the CPU stops (a Python CPU gets a GuestFault instead)."""
        finding = self._report(code, message, cpu.index, pc=pc, address=address, detail=detail,
                               kind="fault")
        if cpu.kind == "python" and cpu.greenlet is not None and not cpu.greenlet.dead \
                and self._probing != cpu.index:
            cpu.fault = finding
        else:
            cpu.state = "faulted"
        return finding

    # ----------------------------------------------------------------- stores to code
    def _store(self, cpu: int, va: int, pa: int, old: bytes, new: bytes,
               pc: int | None = None) -> None:
        """Feed a store over code pages to the fetch model (the caller does the store)."""
        start = pa & ~3
        end = (pa + len(new) + 3) & ~3
        before = self._buffer[start:end]
        after = bytearray(before)
        after[pa - start:pa - start + len(new)] = new
        if pc is not None and self._symbolizers:
            self._writers[self._step] = pc  # named only if a finding quotes the write
        step = self._event(cpu, "write", va, f"pa={pa:#x} {old.hex()}->{new.hex()}")
        for offset in range(0, end - start, 4):
            old_word = int.from_bytes(before[offset:offset + 4], "little")
            new_word = int.from_bytes(after[offset:offset + 4], "little")
            record = self._fetch.write(cpu, start + offset, old_word, new_word, step)
            if record is None:
                continue
            for alias in self._exec_alias.get(record.pa >> PAGE_SHIFT, ()):
                word_va = (alias << PAGE_SHIFT) | (record.pa & (PAGE_SIZE - 1))
                for target in self._cpus:
                    self._hook_stale_line(target, word_va)
                self._hook_barrier_word(word_va, new_word)
            self._progress()

    def _on_code_write(self, uc: Any, access: int, address: int, size: int, value: int,
                       cpu: int) -> None:
        entry = self._pages.get(address >> PAGE_SHIFT)
        if entry is None:
            return
        pa = (entry[0] << PAGE_SHIFT) | (address & (PAGE_SIZE - 1))
        new = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        old = self._buffer[pa:pa + size]
        if old == new:
            return  # also the re-execution of a store whose slice we ended
        self._store(cpu, address, pa, old, new, uc.reg_read(_PC))
        self._stop_slice = True
        uc.emu_stop()

    # ----------------------------------------------------------------- fetch checks
    def _on_stale_line(self, uc: Any, address: int, size: int, cpu: int) -> None:
        entry = self._pages.get(address >> PAGE_SHIFT)
        if entry is None:
            return
        pa = (entry[0] << PAGE_SHIFT) | (address & (PAGE_SIZE - 1))
        verdict = self._fetch.check_fetch(cpu, pa)
        if verdict is not None:
            self._report_fetch(cpu, address, pa, verdict)
            return
        target = self._cpus[cpu]
        line = address & -HOOK_LINE
        fires = target.idle_lines.get(line)
        if fires is None:
            return
        target.idle_lines[line] = fires + 1
        if fires + 1 == _IDLE_FIRES:
            self._soon(functools.partial(self._drop_idle_hook, target, line))

    def _drop_idle_hook(self, target: _Cpu, line: int) -> None:
        """Delete a kept stale-line hook that is still idle (not re-armed meanwhile)."""
        if target.idle_lines.get(line, 0) < _IDLE_FIRES:
            return
        del target.idle_lines[line]
        handle = target.stale_hooks.pop(line, None)
        if handle is not None and handle != -1:
            target.uc.hook_del(handle)
        target.uc.ctl_remove_cache(line, line + HOOK_LINE)

    def _report_fetch(self, cpu: int, va: int, pa: int, verdict: FetchVerdict) -> None:
        write = verdict.write
        detail: dict[str, object] = {
            "pa": pa,
            "writer": write.writer,
            "write_step": write.step,
            "missing": verdict.missing,
            "old": write.old,
            "new": write.new,
        }
        writer_pc = self._writers.get(write.step)
        writer = self.where(writer_pc) if writer_pc is not None else None
        if writer is not None:
            detail["write_by"] = writer
        if verdict.missing == "clean" and write.erratum_clean_seen:
            detail["note"] = "DC CVAU does not count as a clean on this platform (A53 erratum)"
        if verdict.kind == "cmodx":
            message = (f"executed {write.new:#010x} (was {write.old:#010x}) while cpu"
                       f"{write.writer}'s modification at step {write.step} was unsynchronised")
            self._report("cmodx", message, cpu, pc=va, address=va, detail=detail)
        else:
            message = (f"executed a word written by cpu{write.writer} at step {write.step} "
                       f"before the maintenance sequence completed: missing {verdict.missing}")
            if writer is not None:
                message += f" (the write: {writer})"
            self._report("stale-fetch", message, cpu, pc=va, address=va, detail=detail,
                         kind="fetch-stale")

    # ----------------------------------------------------------------- maintenance
    def _context_sync(self, cpu: int, step: int) -> None:
        fresh = self._fetch.context_sync(cpu, step)
        if not fresh:
            return
        target = self._cpus[cpu]
        lines: set[int] = set()
        for pa in fresh:
            for alias in self._exec_alias.get(pa >> PAGE_SHIFT, ()):
                va = (alias << PAGE_SHIFT) | (pa & (PAGE_SIZE - 1))
                lines.add(va & -HOOK_LINE)
        for line in sorted(lines):
            entry = self._pages.get(line >> PAGE_SHIFT)
            if entry is None:
                continue
            pa_line = (entry[0] << PAGE_SHIFT) | (line & (PAGE_SIZE - 1))
            if any(self._fetch.is_pending(cpu, pa_line + off) for off in range(0, HOOK_LINE, 4)):
                continue
            if line not in target.stale_hooks:
                continue
            if line in target.idle_lines or len(target.idle_lines) < _IDLE_KEEP:
                # Fresh: drop the old translation now; the hook stays until idle.
                target.idle_lines.setdefault(line, 0)
                self._soon(functools.partial(target.uc.ctl_remove_cache, line,
                                             line + HOOK_LINE))
                continue
            handle = target.stale_hooks.pop(line)

            def unhook(h: int = handle, low: int = line) -> None:
                if h != -1:
                    target.uc.hook_del(h)
                target.uc.ctl_remove_cache(low, low + HOOK_LINE)
            self._soon(unhook)

    def _maintenance(self, cpu: int, name: str, va: int | None, pc: int) -> bool:
        """A DC/IC operation by ``cpu``; False when its VA is unmapped (a fault)."""
        pa: int | None = None
        if va is not None:
            found = self.translate(va)
            if found is None:
                self._fault(self._cpus[cpu], "unmapped-access",
                            f"{name} by unmapped address {va:#x}", pc=pc, address=va)
                return False
            pa = found[0]
        kind = "dc" if name.startswith("dc") else "ic"
        step = self._event(cpu, kind, va or 0, name)
        if name in _CLEAN_OPS:
            assert pa is not None
            self._fetch.clean(cpu, pa, _CLEAN_OPS[name], step)  # type: ignore[arg-type]
        else:
            self._fetch.invalidate(cpu, pa, _INVALIDATE_OPS[name], step)  # type: ignore[arg-type]
        self._cpus[cpu].progress += 1
        return True

    def _on_sys(self, uc: Any, reg: int, cp: Any, cpu: int) -> int:
        name = _SYS_OPS.get((cp.op1, cp.crn, cp.crm, cp.op2))
        if name is None or cp.op0 != 1:
            return 0
        pc = uc.reg_read(_PC)
        by_va = name not in ("ic iallu", "ic ialluis")
        if not self._maintenance(cpu, name, cp.val if by_va else None, pc):
            uc.emu_stop()
            return 1
        if self.schedule.stops_at_events:
            self._stop_slice = True
            uc.emu_stop()
        return 0

    def _on_barrier(self, uc: Any, address: int, size: int, cpu: int) -> None:
        target = self._cpus[cpu]
        if target.resume_skip == address:
            target.resume_skip = None
            return
        entry = self._pages.get(address >> PAGE_SHIFT)
        if entry is None:
            return
        pa = (entry[0] << PAGE_SHIFT) | (address & (PAGE_SIZE - 1))
        found = barrier(int.from_bytes(self._buffer[pa:pa + 4], "little"))
        if found is None or found.kind == "dmb":
            return
        step = self._event(cpu, found.kind, address, found.option)
        if found.kind == "dsb":
            self._fetch.dsb(cpu, step)
        else:
            self._context_sync(cpu, step)
        if self.schedule.stops_at_events:
            # Unicorn stops *before* a hooked instruction: skip this hook once on resume.
            target.resume_skip = address
            self._stop_slice = True
            uc.emu_stop()

    # ----------------------------------------------------------------- system registers
    def _on_mrs(self, uc: Any, reg: int, cp: Any, cpu: int) -> int:
        key = (cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        value = self._cpus[cpu].sysregs.get(key)
        if value is None:
            if not in_id_space(key):
                return 0
            value = 0
        uc.reg_write(reg, value)
        return 1

    def sysreg(self, cpu: int, name: str) -> int:
        """The value CPU ``cpu`` reads from system register ``name`` (lower case)."""
        key = ID_REGISTERS.get(name)
        if key is None and name in IDENTITY_REGISTERS:
            key = IDENTITY_REGISTERS[name][1]
        if key is None:
            raise MachineError("MACHINE_CONFIG", f"unknown system register {name!r}")
        return self._cpu(cpu).sysregs.get(key, 0)

    # ----------------------------------------------------------------- exceptions, services
    def _word_at(self, va: int) -> int | None:
        entry = self._pages.get(va >> PAGE_SHIFT)
        if entry is None:
            return None
        pa = (entry[0] << PAGE_SHIFT) | (va & (PAGE_SIZE - 1))
        return int.from_bytes(self._buffer[pa:pa + 4], "little")

    def _on_exception(self, uc: Any, intno: int, cpu: int) -> None:
        target = self._cpus[cpu]
        pc = uc.reg_read(_PC)
        if intno == _EXC_SVC:
            word = self._word_at(pc - 4)
            call = exception_call(word) if word is not None else None
            if call is not None and call[0] == "svc":
                self._service(target, uc, call[1], pc - 4)
                return
        # BRK and UNDEF leave PC at the instruction; SMC and SVC after it.
        at = pc if intno in (_EXC_UNDEF, 7) else pc - 4
        word = self._word_at(at)
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
        uc.emu_stop()

    def _service(self, target: _Cpu, uc: Any, imm: int, pc: int) -> None:
        cpu = target.index
        step = self._event(cpu, "service", pc, self._service_name(imm))
        # Taking the SVC and returning from it is context synchronising; the guest-call
        # return trap is harness plumbing (the code "returns" without an exception).
        if not (imm == GUEST_RETURN and target.guest_call):
            self._context_sync(cpu, step)
        x0 = uc.reg_read(_X_REGS[0])
        if imm == PROBE_RETURN and self._probing == cpu:
            target.probe_returned = True
            uc.emu_stop()
            return
        if imm == GUEST_RETURN and target.guest_call:
            target.guest_call = False
            target.result = x0
            self._event(cpu, "return", pc, f"x0={x0:#x}")
            self._stop_slice = True
            uc.emu_stop()
            return
        handler = self._services.get(imm)
        if handler is not None:
            call = ServiceCall(self, target.index, uc, pc)
            handler(call)
            if call.progress:
                self._progress()
            self._stop_slice = True
            uc.emu_stop()
            return
        if imm == HostService.DONE:
            target.state = "done"
            target.result = x0
            self._event(cpu, "done", pc, f"x0={x0:#x}")
        elif imm == HostService.PARK:
            target.state = "parked"
            self._event(cpu, "park", pc)
        elif imm == HostService.RELAX:
            pass
        elif imm == HostService.LOG:
            values = " ".join(f"{uc.reg_read(_X_REGS[i]):#x}" for i in range(4))
            self._event(cpu, "log", pc, values)
        elif imm == HostService.BUG:
            self._fault(target, "bug", f"guest bug() with code {x0:#x}", pc=pc,
                        detail={"code": x0})
        elif imm == HostService.VMAP:
            size = uc.reg_read(_X_REGS[1])
            try:
                va = self.vmap(x0, size)
            except MachineError as error:
                self._event(cpu, "service", pc, f"vmap refused: {error.message}")
                va = 0
            uc.reg_write(_X_REGS[0], va)
        elif imm == HostService.VUNMAP:
            try:
                self.vunmap(x0)
                ok = 1
            except MachineError:
                ok = 0
            uc.reg_write(_X_REGS[0], ok)
        else:
            self._fault(target, "unknown-service", f"svc #{imm:#x} is not a host service",
                        pc=pc, detail={"imm": imm})
        if imm not in (HostService.LOG, HostService.RELAX):
            self._progress()
        if imm == HostService.RELAX:
            target.relaxed = True
        if imm != HostService.LOG or self.schedule.stops_at_events:
            # done/park/bug must stop; relax yields the slice; vmap must let the
            # deferred mapping happen before the CPU uses the alias.
            self._stop_slice = True
            uc.emu_stop()

    @staticmethod
    def _service_name(imm: int) -> str:
        if imm == PROBE_RETURN:
            return "probe-return"
        if imm == GUEST_RETURN:
            return "guest-return"
        try:
            return HostService(imm).name.lower()
        except ValueError:
            return f"#{imm:#x}"

    def _on_memory_fault(self, uc: Any, access: int, address: int, size: int, value: int,
                         cpu: int) -> bool:
        code, text = _FAULT_CODES.get(access, ("unmapped-access", f"memory access {access}"))
        pc = address if access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT) \
            else uc.reg_read(_PC)
        self._fault(self._cpus[cpu], code, f"{text} at {address:#x}", pc=pc, address=address,
                    detail={"size": size})
        return False

    def _progress(self) -> None:
        self._hang_seen = None

    # ================================================================== starting CPUs
    def start_cpu(self, cpu: int, pc: int, *, sp: int, x: Mapping[int, int] | None = None) -> None:
        """Make CPU ``cpu`` run guest code from ``pc`` with stack ``sp`` and x registers."""
        target = self._startable(cpu)
        target.kind = "guest"
        target.regs.restore(bytes(8 * len(_STATE_REGS)))
        for index, value in (x or {}).items():
            if not 0 <= index <= 30:
                raise MachineError("MACHINE_CONFIG", f"x{index} is not a general register")
            target.uc.reg_write(_X_REGS[index], value & (2**64 - 1))
        target.uc.reg_write(arm64.UC_ARM64_REG_SP, sp)
        target.pc = pc
        target.state = "running"
        target.resume_skip = None
        target.fault = None
        target.trap_hit = target.trap_skip = None
        self._event(cpu, "start", pc, "guest")
        self._progress()

    def start_python(self, cpu: int, fn: Callable[[Any], object]) -> None:
        """Make CPU ``cpu`` run ``fn(context)`` (a CpuContext), interleaved with the others."""
        target = self._startable(cpu)
        context = CpuContext(self, cpu)
        target.kind = "python"
        target.fault = None
        target.exception = None
        target.result = None

        def body() -> None:
            try:
                target.result = fn(context)
            except Exception as error:  # the patcher's own failure: recorded, not raised
                target.exception = PythonException(
                    type(error).__name__, str(error), traceback.format_exc())
            target.state = "faulted" if target.fault is not None or target.exception else "done"
            self._event(cpu, "done" if target.state == "done" else "fault", 0, "python")
            self._progress()

        target.greenlet = greenlet.greenlet(body)
        target.state = "running"
        self._event(cpu, "start", 0, "python")
        self._progress()

    def _startable(self, cpu: int) -> _Cpu:
        target = self._cpu(cpu)
        if target.state == "running":
            raise MachineError("MACHINE_STATE", f"cpu{cpu} is already running")
        return target

    # ================================================================== running
    def run(self, until: Callable[[], bool] | None = None) -> RunResult:
        """Interleave all running CPUs under the schedule until none is running,
        ``until()`` is true, the budget is spent, or every CPU spins (hang)."""
        if self._running is not None or self._probing is not None:
            raise MachineError("MACHINE_STATE", "run() called from inside the machine")
        first_finding = len(self._findings)
        spent = 0
        started = time.monotonic()
        rounds = 0
        hang_streak = 0
        self._hang_seen = None
        seen: dict[int, set[bytes]] = {}
        reason: RunReason = "stopped"
        while True:
            runnable = [c for c in self._cpus if c.state == "running"]
            if not runnable:
                break
            for target in self._turns(runnable):
                if target.state != "running":
                    continue
                quantum = self._quantum(target)
                spent += self._slice(target, quantum)
                if until is not None and until():
                    reason = "until"
                    break
                if spent >= self.budget.instructions:
                    reason = "budget"
                    break
            if reason != "stopped":
                break
            rounds += 1
            if rounds % 32 == 0 and time.monotonic() - started > self.budget.seconds:
                reason = "budget"
                break
            if rounds % (self.budget.hang_check_rounds * self._round_steps(runnable)) == 0:
                if self._hang_seen is None:
                    self._hang_seen = True
                    seen = {}
                    hang_streak = 0
                repeated = True
                for target in self._cpus:
                    if target.state != "running":
                        continue
                    snapshot = target.regs.snapshot() \
                        if target.kind == "guest" or target.guest_call \
                        else target.progress.to_bytes(8, "little")
                    known = seen.setdefault(target.index, set())
                    if snapshot not in known:
                        repeated = False
                        if len(known) > 4096:
                            known.clear()
                        known.add(snapshot)
                hang_streak = hang_streak + 1 if repeated else 0
                if hang_streak >= self.budget.hang_checks:
                    reason = "hang"
                    break
        if reason == "budget":
            self._report_end("budget", spent)
        elif reason == "hang":
            self._report_end("hang", spent)
        return RunResult(reason, self._outcomes(), tuple(self._findings[first_finding:]), spent)

    def _report_end(self, code: str, spent: int) -> None:
        pcs = {c.index: c.pc for c in self._cpus if c.state == "running"}
        listing = ", ".join(f"cpu{i} pc={pc:#x}" + (f" ({where})" if (where := self.where(pc))
                                                     else "") for i, pc in pcs.items())
        if code == "hang":
            message = f"every CPU spins without shared-memory progress: {listing}"
        else:
            message = f"run budget spent after {spent} instructions: {listing}"
        cpu = min(pcs) if pcs else 0
        self._report(code, message, cpu, detail={"pcs": pcs, "instructions": spent})

    def _turns(self, runnable: list[_Cpu]) -> Iterator[_Cpu]:
        """The CPUs to run a slice each in this round: all (round robin), or one step
        of the CPU a priority schedule picks, whose outcome it then records."""
        policy = self._priorities
        if policy is None:
            yield from runnable
            return
        target = self._cpus[policy.pick([c.index for c in runnable])]
        before = self._step
        target.relaxed = False
        yield target
        changed = self._step != before
        spun = target.relaxed or (target.kind == "guest" and not changed)
        policy.stepped(target.index, changed=changed, spun=spun)

    def _round_steps(self, runnable: list[_Cpu]) -> int:
        """Rounds that make one hang-check round: a priority round is one step, so it
        takes as many as give each CPU about an ``rr:100`` slice."""
        return 1 if self._priorities is None else 64 * len(runnable)

    def _quantum(self, target: _Cpu) -> int:
        if self.schedule.kind == "pct":
            return 1 if target.kind == "python" else self.schedule.quantum
        if self.schedule.kind == "random":
            return self._rng.randint(1, self.schedule.quantum)
        if self.schedule.kind == "adversarial" and target.kind == "python" \
                and not target.guest_call:
            return 1
        return self.schedule.quantum

    def _slice(self, target: _Cpu, quantum: int) -> int:
        """Run one slice of ``target``; returns the instructions/operations it is charged."""
        if target.kind == "python" and not target.guest_call:
            return self._python_slice(target, quantum)
        self._running = target.index
        self._stop_slice = False
        try:
            target.uc.emu_start(target.pc, _UNTIL, 0, quantum)
        except UcError as error:  # a guest fault the hooks did not already record
            if target.state == "running" and target.fault is None:
                self._fault(target, "guest-exception", f"unicorn stopped: {error}",
                            pc=target.uc.reg_read(_PC), detail={"errno": error.errno})
        finally:
            self._running = None
        target.pc = target.regs.pc()
        if target.guest_call and target.fault is not None:
            target.guest_call = False  # the Python side raises GuestFault
        if target.trap_hit is not None and target.state == "running":
            self._take_trap(target)
        if target.state != "running":
            self._progress()
        target.instructions += quantum
        self._drain()
        return quantum

    def _python_slice(self, target: _Cpu, quantum: int) -> int:
        assert target.greenlet is not None
        target.quantum_left = quantum
        self._running = target.index
        self._scheduler = greenlet.getcurrent()
        try:
            target.greenlet.switch()
        finally:
            self._running = None
        used = quantum - target.quantum_left
        target.instructions += used
        self._drain()
        return max(used, 1)

    def _python_step(self, cpu: int) -> _Cpu:
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

    # ================================================================== guest calls
    def add_service(self, imm: int, handler: ServiceHandler) -> None:
        """Serve ``svc #imm`` with ``handler`` (native patcher services; the built-in
        immediates of :class:`HostService` and the harness traps cannot be replaced)."""
        if imm in (PROBE_RETURN, GUEST_RETURN) or imm in HostService.__members__.values() \
                or not 0 <= imm <= 0xFFFF:
            raise MachineError("MACHINE_CONFIG", f"svc #{imm:#x} cannot be a new service")
        self._services[imm] = handler

    def add_symbolizer(self, symbolizer: Symbolizer) -> None:
        """Name code addresses in findings (``symbol+offset (file:line)``)."""
        self._symbolizers.append(symbolizer)

    def where(self, pc: int) -> str | None:
        """What a symbolizer says about ``pc``, or None."""
        for symbolizer in self._symbolizers:
            found = symbolizer(pc)
            if found is not None:
                return found
        return None

    def call_guest(self, cpu: int, pc: int, args: Sequence[int] = (), *, sp: int,
                   tpidr: int = 0) -> int:
        """From Python CPU ``cpu``'s own function: run the guest function at ``pc`` with
        x0..x7 = ``args`` and stack ``sp`` on that CPU, under the schedule like any guest
        code, until it returns (the result is x0) or faults (GuestFault is raised)."""
        target = self._python_step(cpu)
        if len(args) > 8:
            raise MachineError("MACHINE_CONFIG", "a guest call takes at most 8 arguments")
        target.regs.restore(bytes(8 * len(_STATE_REGS)))
        for index, value in enumerate(args):
            target.uc.reg_write(_X_REGS[index], value & (2**64 - 1))
        target.uc.reg_write(_X_REGS[30], GUEST_RETURN_VA)
        target.uc.reg_write(arm64.UC_ARM64_REG_SP, sp)
        target.uc.reg_write(arm64.UC_ARM64_REG_TPIDR_EL0, tpidr)
        target.pc = pc
        target.resume_skip = None
        target.guest_call = True
        self._event(cpu, "call", pc, " ".join(f"{a:#x}" for a in args))
        self._progress()
        assert self._scheduler is not None
        self._scheduler.switch()  # guest slices run until the return trap or a fault
        while target.guest_call:  # (defensive: resumed before the call ended)
            self._scheduler.switch()
        if target.fault is not None:
            raise GuestFault(target.fault)
        result = target.result
        return int(result) if isinstance(result, int) else 0

    # ================================================================== probes
    def probe(self, cpu: int, pc: int, args: Mapping[int, int] | None = None,
              budget: int = 100_000) -> ProbeResult:
        """Call the guest function at ``pc`` on CPU ``cpu`` with x0..x7 from ``args``,
        a fresh stack and LR at a return trap; only that CPU runs.  The CPU's registers
        and state are restored afterwards."""
        target = self._cpu(cpu)
        if target.greenlet is not None and not target.greenlet.dead and target.state == "running":
            raise MachineError("MACHINE_STATE", f"cpu{cpu} is running a Python function")
        if self._running is not None:
            raise MachineError("MACHINE_STATE", "probe() called from inside the machine")
        saved_regs = target.regs.snapshot()
        saved = (target.state, target.kind, target.pc, target.result, target.resume_skip)
        first_finding = len(self._findings)
        # x0-x7 from args, LR at the trap, SP at the probe stack, everything else zero.
        start = [0] * len(_STATE_REGS)
        for index in range(8):
            start[index] = (args or {}).get(index, 0) & (2**64 - 1)
        start[30] = PROBE_TRAP_VA
        start[_SP_SLOT] = PROBE_STACK_TOP
        target.regs.restore(struct.pack(f"<{len(start)}Q", *start))
        target.state, target.kind, target.pc = "running", "guest", pc
        target.probe_returned = False
        target.resume_skip = None
        self._probing = cpu
        self._event(cpu, "start", pc, "probe")
        left = budget
        try:
            while target.state == "running" and not target.probe_returned and left > 0:
                quantum = min(left, 10_000)
                left -= self._slice(target, quantum)
            state: str = target.state  # (mutated by hooks during the slices)
            completed = target.probe_returned or state == "done"
            if state == "running" and not completed:
                self._report("budget", f"probe at {pc:#x} did not return within {budget} "
                                       f"instructions (pc={target.pc:#x})", cpu, pc=target.pc,
                             detail={"probe": pc, "instructions": budget})
            values = struct.unpack_from("<8Q", target.regs.snapshot())
        finally:
            self._probing = None
            target.regs.restore(saved_regs)
            target.state, target.kind, target.pc, target.result, target.resume_skip = saved
        return ProbeResult(values, tuple(self._findings[first_finding:]), completed)


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
