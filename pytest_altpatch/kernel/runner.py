"""Run a shipped kernel image's own boot-time patcher in the emulated machine.

The image runs at its link address with its text read-only (:mod:`.layout`), on every
CPU of the platform, under the machine's fetch model, schedules, findings and trace.
The target profile (:mod:`.profile`) says what the harness stands in for:

* service stubs by symbol (code traps at the function's first word: the CPU never runs
  the kernel's own version; see :data:`~.profile.STUB_KINDS`);
* data set before the run: the capability bitmap (from the product's capability
  resolution for the platform under the profile's dialect, or given), line sizes, the
  per-CPU areas and lists the patcher walks;
* EL2-only words in the functions that run, emulated at their addresses.

Which entries the image applied is observed, not inferred: the profile's
``apply_entry`` function (and each callback) is watched with a code trap that records
x0, the entry, and lets the function run.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from unicorn import arm64_const as arm64

from pytest_altpatch.a64.granule import PAGE_SHIFT
from pytest_altpatch.cases.model import Catalog, CpuInstance
from pytest_altpatch.cases.platform import parse_platform
from pytest_altpatch.dialects import traits
from pytest_altpatch.errors import KernelError, Location
from pytest_altpatch.findings import Finding
from pytest_altpatch.image.alt_table import ENTRY_SIZE, decode_alt_table
from pytest_altpatch.image.model import AltEntry
from pytest_altpatch.kernel.layout import (
    FINISH_OFFSET,
    JOIN_OFFSET,
    RETURN_OFFSET,
    KernelImage,
    build_machine,
    read_u64,
    write_virtual,
)
from pytest_altpatch.kernel.profile import DataItem, StubKind, TargetProfile, check_symbols
from pytest_altpatch.machine import Budget, CpuConfig, MachineError, TraceEvent
from pytest_altpatch.machine.results import RunReason, RunResult
from pytest_altpatch.machine.traps import TrapCall, TrapHandler
from pytest_altpatch.patchers.capabilities import CpuReading, resolve_capabilities
from pytest_altpatch.patchers.reference import CLEAN_CACHE_CAP

#: Platform of ``--caps`` runs without ``--platform`` (its errata do not matter there).
DEFAULT_CPU: Final = "cortex-a72/r0p3"
DEFAULT_CPUS: Final = 4
_PAR_PA_MASK: Final = 0x0000_FFFF_FFFF_F000
_MAX_STRING: Final = 256
_XZR: Final = 31


@dataclass(frozen=True)
class EntryResult:
    """One table entry after the run: what the image did at its site."""

    index: int
    entry: AltEntry
    site_symbol: str
    cap_name: str | None
    applied: bool  # the image called its apply function (or the callback) for it
    before: bytes
    after: bytes
    replacement: bytes  # the replacement's bytes (empty for callbacks)

    @property
    def changed_words(self) -> int:
        """Words of the site whose encoding changed."""
        return sum(self.before[i:i + 4] != self.after[i:i + 4]
                   for i in range(0, len(self.before), 4))

    @property
    def retargeted_words(self) -> int:
        """Words written with a value other than the replacement's (relocated)."""
        if self.entry.is_callback or not self.applied:
            return 0
        return sum(self.after[i:i + 4] != self.replacement[i:i + 4]
                   for i in range(0, len(self.after), 4))


@dataclass(frozen=True)
class ImageRun:
    """Everything one run of a kernel image produced (plain data, deterministic)."""

    image: str
    profile: str
    dialect: str
    ncaps: int
    platform: tuple[str, ...]  # one label per CPU
    caps: tuple[tuple[int, str | None], ...]  # capabilities on: number, name
    schedule: str
    seed: int
    reason: RunReason
    entries: tuple[EntryResult, ...]
    findings: tuple[Finding, ...]
    trace: tuple[TraceEvent, ...]
    trace_dropped: int
    instructions: int
    cpu_states: tuple[str, ...]
    #: Executable sections after the run: (va, bytes), address order.
    text_after: tuple[tuple[int, bytes], ...]
    #: Words that changed outside every entry's site (should be none).
    stray_writes: tuple[int, ...] = field(default=())

    @property
    def applied(self) -> int:
        """Entries the image applied."""
        return sum(e.applied for e in self.entries)

    @property
    def sites_changed(self) -> int:
        """Entries whose site bytes changed."""
        return sum(e.before != e.after for e in self.entries)

    @property
    def words_changed(self) -> int:
        """Site words whose encoding changed."""
        return sum(e.changed_words for e in self.entries)

    @property
    def retargets(self) -> int:
        """Words the image relocated (written unlike the replacement)."""
        return sum(e.retargeted_words for e in self.entries)


@dataclass(frozen=True)
class RunRequest:
    """What to run: CPUs (platform) and capabilities (resolved or explicit)."""

    cpus: tuple[CpuInstance, ...]
    caps: frozenset[int]
    schedule: str = "rr:100"
    seed: int = 0
    instruction_budget: int = 50_000_000
    seconds: float = 300.0


def platform_cpus(catalog: Catalog, platform: str | None, count: int | None) -> tuple[
        CpuInstance, ...]:
    """The CPUs of a run: the platform's (cycled or cut to ``count``), or
    :data:`DEFAULT_CPU` ``count`` times (default :data:`DEFAULT_CPUS`)."""
    listed = parse_platform(platform or DEFAULT_CPU, catalog)
    wanted = count if count is not None else (len(listed) if platform else DEFAULT_CPUS)
    if not 1 <= wanted <= 64:
        raise MachineError("MACHINE_CONFIG", f"{wanted} CPUs; 1 to 64 supported")
    return tuple(listed[i % len(listed)] for i in range(wanted))


def resolved_caps(catalog: Catalog, profile: TargetProfile,
                  cpus: Sequence[CpuInstance]) -> frozenset[int]:
    """Capability numbers the product's own resolution turns on for ``cpus`` under the
    profile's dialect (only those the dialect numbers)."""
    numbering = catalog.numberings[traits(profile.dialect).numbering_in(catalog.numberings)]
    readings = [CpuReading(c.midr, c.revidr, c.ctr, dict(c.id_regs)) for c in cpus]
    resolved = resolve_capabilities(readings, catalog, profile.dialect)
    numbers = (numbering.number(name) for name in resolved.system)
    return frozenset(n for n in numbers if n is not None and n < profile.ncaps)


def cpu_config(cpu: CpuInstance, index: int) -> CpuConfig:
    """The machine CPU for a platform CPU (MPIDR: clusters of 8)."""
    mpidr = (1 << 31) | ((index // 8) << 8) | (index % 8)
    return CpuConfig(midr=cpu.midr, revidr=cpu.revidr, mpidr=mpidr, ctr=cpu.ctr,
                     id_regs=dict(cpu.id_regs))


def needs_clean_cache_erratum(catalog: Catalog, cpus: Sequence[CpuInstance]) -> bool:
    """Whether the fetch model must apply the Cortex-A53 DC CVAU errata."""
    return any(e.capability == CLEAN_CACHE_CAP and e.affects(c.midr, c.revidr)
               for e in catalog.errata.values() for c in cpus)


def symbol_names(image: KernelImage) -> dict[int, str]:
    """Address -> a name for it (lowest name wins on ties)."""
    names: dict[int, str] = {}
    for name, value in sorted(image.symbols.items()):
        names.setdefault(value, name)
    return names


class _Session:
    """One machine running one image under one profile (private to this module)."""

    def __init__(self, image: KernelImage, profile: TargetProfile, catalog: Catalog,
                 request: RunRequest) -> None:
        check_symbols(profile, image.symbols, image.name)
        self.image = image
        self.profile = profile
        self.request = request
        self.ncpus = len(request.cpus)
        percpu = self._percpu_item()
        percpu_size = 0
        if percpu is not None:
            assert percpu.start is not None and percpu.end is not None
            percpu_size = image.symbol(percpu.end) - image.symbol(percpu.start)
        budget = Budget(instructions=request.instruction_budget, seconds=request.seconds)
        self.machine, self.layout = build_machine(
            image, [cpu_config(c, i) for i, c in enumerate(request.cpus)],
            percpu_size=percpu_size, schedule=request.schedule, seed=request.seed,
            budget=budget,
            clean_cache_erratum=needs_clean_cache_erratum(catalog, request.cpus))
        self.percpu_offsets = [0] * self.ncpus
        self.applied: set[int] = set()
        self.table_start = image.symbol(profile.table_start)
        self.table_end = image.symbol(profile.table_end)
        self.results: dict[int, int] = {}
        self.stop_machine_lr: dict[int, int] = {}
        self.handlers: dict[int, list[TrapHandler]] = {}

    # ------------------------------------------------------------------ data
    def _percpu_item(self) -> DataItem | None:
        return next((d for d in self.profile.data if d.kind == "per-cpu-areas"), None)

    def set_data(self) -> None:
        """Write every data item of the profile into the image (before the run)."""
        for item in self.profile.data:
            if item.kind == "capability-bitmap":
                assert item.symbol is not None
                words = -(-self.profile.ncaps // 64)
                bitmap = sum(1 << cap for cap in self.request.caps)
                write_virtual(self.machine, self.image.symbol(item.symbol),
                              bitmap.to_bytes(8 * words, "little"))
            elif item.kind == "boot-cpu-dcache-line":
                assert item.symbol is not None
                line = self.request.cpus[0].dminline_bytes
                write_virtual(self.machine, self.image.symbol(item.symbol),
                              line.to_bytes(item.size, "little"))
            elif item.kind == "online-cpu-mask":
                assert item.symbol is not None
                mask = (1 << self.ncpus) - 1
                write_virtual(self.machine, self.image.symbol(item.symbol),
                              mask.to_bytes(8 * -(-self.ncpus // 64), "little"))
            elif item.kind == "per-cpu-areas":
                self._set_percpu(item)
            else:
                self._link_list(item)

    def _set_percpu(self, item: DataItem) -> None:
        assert item.start is not None and item.end is not None and item.offsets is not None
        start, end = self.image.symbol(item.start), self.image.symbol(item.end)
        offsets = self.image.symbol(item.offsets)
        area = self.machine.read_virtual(start, end - start)
        if area is None:
            raise KernelError("IMAGE_UNAVAILABLE", f"per-CPU area {item.start} is not mapped")
        for cpu in range(self.ncpus):
            if cpu:
                copy = self.layout.percpu_copy(cpu)
                write_virtual(self.machine, copy, area)
                self.percpu_offsets[cpu] = (copy - start) & (2**64 - 1)
            write_virtual(self.machine, offsets + 8 * cpu,
                          self.percpu_offsets[cpu].to_bytes(8, "little"))
            for percpu_field in item.fields:
                va = (self.image.symbol(percpu_field.symbol) + self.percpu_offsets[cpu]) \
                    & (2**64 - 1)
                write_virtual(self.machine, va, cpu.to_bytes(percpu_field.size, "little"))

    def _link_list(self, item: DataItem) -> None:
        """``list_add_tail(node, head)`` for each node (``struct list_head`` first)."""
        assert item.head is not None
        head = self.image.symbol(item.head)
        for name in item.nodes:
            node = self.image.symbol(name)
            prev = read_u64(self.machine, head + 8)
            write_virtual(self.machine, node, head.to_bytes(8, "little"))
            write_virtual(self.machine, node + 8, prev.to_bytes(8, "little"))
            write_virtual(self.machine, prev, node.to_bytes(8, "little"))
            write_virtual(self.machine, head + 8, node.to_bytes(8, "little"))

    # ------------------------------------------------------------------ traps
    def _trap(self, va: int, handler: TrapHandler) -> None:
        """Add ``handler`` at ``va``; several handlers at one address run in order until
        one moves the CPU, waits or lets the word run."""
        if va not in self.handlers:
            self.handlers[va] = []
            chain = self.handlers[va]

            def dispatch(call: TrapCall) -> None:
                for step in chain:
                    step(call)
                    if call.settled:
                        return
                call.execute()
            self.machine.add_code_trap(va, dispatch)
        self.handlers[va].append(handler)

    def install_traps(self, entries: Sequence[AltEntry]) -> None:
        """Stubs, EL2 words, the apply-entry watch and the harness return addresses."""
        for symbol, kind in self.profile.stubs.items():
            self._trap(self.image.symbol(symbol), self._stub(symbol, kind))
        watched = {entry.target for entry in entries if entry.is_callback}
        if self.profile.apply_entry is not None:
            watched.add(self.image.symbol(self.profile.apply_entry))
        for address in sorted(watched):
            self._trap(address, self._watch_entry)
        for function in self.profile.trap_in:
            self._trap_function(function)
        trap_va = self.layout.trap_va
        self.machine.add_code_trap(trap_va + FINISH_OFFSET, self._finish)
        self.machine.add_code_trap(trap_va + RETURN_OFFSET, self._returned)
        self.machine.add_code_trap(trap_va + JOIN_OFFSET, self._join)

    def _trap_function(self, function: str) -> None:
        start = self.image.symbol(function)
        size = self.image.elf.symbol_sizes.get(function, 0)
        if size <= 0:
            raise KernelError("PROFILE_INVALID", f"{function} has no size in "
                              f"{self.image.name}'s symbol table, so its words cannot be "
                              "scanned for traps", location=Location(symbol=function))
        code = self.machine.read_virtual(start, size) or b""
        for offset in range(0, len(code) - 3, 4):
            word = int.from_bytes(code[offset:offset + 4], "little")
            for rule in self.profile.traps:
                if rule.matches(word):
                    self._trap(start + offset, self._el2(rule.name, rule.returns, rule.mask,
                                                         rule.value))

    def _el2(self, name: str, returns: str, mask: int, value: int) -> TrapHandler:
        def emulate(call: TrapCall) -> None:
            raw = call.read(call.address, 4)
            word = int.from_bytes(raw, "little") if raw is not None else 0
            if word & mask != value:
                call.execute()  # patched into something else: run what is there now
                return
            rt = word & 0x1F
            if returns == "per-cpu-offset":
                result = self.percpu_offsets[call.cpu]
                if rt != _XZR:
                    call.set_x(rt, result)
            else:
                address = call.x(rt) if rt != _XZR else 0
                found = self.machine.translate(address)
                result = (found[0] & _PAR_PA_MASK) if found is not None else 1
                call.set_sysreg(arm64.UC_ARM64_REG_PAR_EL1, result)
            call.event("trap", f"{name} -> {result:#x}")
            call.skip()
        return emulate

    def _watch_entry(self, call: TrapCall) -> None:
        entry = call.x(0)
        if self.table_start <= entry < self.table_end and \
                (entry - self.table_start) % ENTRY_SIZE == 0:
            index = (entry - self.table_start) // ENTRY_SIZE
            self.applied.add(index)
            call.event("apply", f"entry {index}")
        call.execute()

    # ------------------------------------------------------------------ stubs
    def _stub(self, symbol: str, kind: StubKind) -> TrapHandler:
        def log_format(call: TrapCall) -> None:
            raw = call.read(call.x(0), _MAX_STRING) or b""
            text = raw.split(b"\0", 1)[0].decode("ascii", errors="replace")
            call.event("log", f"{symbol}: {text.strip()}")
            call.ret(0)

        def vmap(call: TrapCall) -> None:
            found = call.read(call.x(0), 8)
            granularity, count = call.x(1) & 0xFFFFFFFF, call.x(2) & 0xFFFFFFFF
            va = 0
            if found is not None and granularity and count:
                mfn = int.from_bytes(found, "little")
                pages = granularity * count
                contiguous = all(
                    (page := call.read(call.x(0) + 8 * i, 8)) is not None
                    and int.from_bytes(page, "little") == mfn + granularity * i
                    for i in range(1, count))
                if kind == "vmap-identity":
                    va = mfn << PAGE_SHIFT
                elif contiguous:
                    try:
                        va = self.machine.vmap(mfn << PAGE_SHIFT, pages << PAGE_SHIFT)
                    except MachineError as exc:
                        call.event("stub", f"{symbol} refused: {exc.message}")
            call.event("stub", f"{symbol}({call.x(0):#x}, {granularity}, {count}) -> {va:#x}")
            call.ret(va)

        def vunmap(call: TrapCall) -> None:
            try:
                self.machine.vunmap(call.x(0))
                call.event("stub", f"{symbol}({call.x(0):#x})")
            except MachineError as exc:
                call.event("stub", f"{symbol}({call.x(0):#x}) refused: {exc.message}")
            call.ret()

        def run_on_all(call: TrapCall) -> None:
            fn, data, only = call.x(0), call.x(1), call.x(2) & 0xFFFFFFFF
            runners = [only] if only < self.ncpus else list(range(self.ncpus))
            call.event("stub", f"{symbol}({fn:#x}, {data:#x}, {only}) on cpus {runners}")
            self.results.clear()
            self.stop_machine_lr[call.cpu] = call.x(30)
            for cpu in runners:
                if cpu == call.cpu:
                    continue
                self.machine.start_cpu(cpu, fn, sp=self.layout.stack_top(cpu),
                                       x={0: data, 30: self.layout.trap_va + RETURN_OFFSET})
            if call.cpu in runners:
                call.set_x(0, data)
                call.set_x(30, self.layout.trap_va + JOIN_OFFSET)
                call.jump(fn)
            else:
                call.jump(self.layout.trap_va + JOIN_OFFSET)

        def return_zero(call: TrapCall) -> None:
            call.event("stub", symbol)
            call.ret(0)

        table: dict[str, TrapHandler] = {
            "log-format": log_format, "vmap-mfns": vmap, "vmap-identity": vmap,
            "vunmap": vunmap, "run-on-all-cpus": run_on_all, "return-zero": return_zero,
        }
        return table[kind]

    def _returned(self, call: TrapCall) -> None:
        self.results[call.cpu] = call.x(0) & 0xFFFFFFFF
        call.finish(call.x(0))

    def _join(self, call: TrapCall) -> None:
        self.results.setdefault(call.cpu, call.x(0) & 0xFFFFFFFF)
        others = [c for c in range(self.ncpus) if c != call.cpu]
        if any(self.machine.cpu_state(c) == "running" for c in others):
            call.wait()
            return
        first = next((self.results[c] for c in sorted(self.results) if self.results[c]), 0)
        call.event("stub", f"stop_machine done: {first:#x}")
        call.set_x(0, first)
        call.jump(self.stop_machine_lr.pop(call.cpu))

    def _finish(self, call: TrapCall) -> None:
        call.finish(call.x(0))

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """CPU0 calls the entry function; the run ends when no CPU runs."""
        entry = self.image.symbol(self.profile.entry)
        self.machine.start_cpu(0, entry, sp=self.layout.stack_top(0),
                               x={30: self.layout.trap_va + FINISH_OFFSET})
        return self.machine.run()


def image_entries(image: KernelImage, profile: TargetProfile) -> tuple[AltEntry, ...]:
    """The image's own table, decoded under the profile's dialect and NCAPS."""
    start, end = image.symbol(profile.table_start), image.symbol(profile.table_end)
    raw = image.elf.read(start, end - start)
    if raw is None:
        raise KernelError("IMAGE_UNAVAILABLE",
                          f"{profile.table_start}..{profile.table_end} is not inside one "
                          "section", location=Location(symbol=profile.table_start))

    return decode_alt_table(raw, start, profile.dialect, profile.ncaps)


def run_image(image: KernelImage, profile: TargetProfile, catalog: Catalog,
              request: RunRequest) -> ImageRun:
    """Run the image's boot-time patching on the request's CPUs and observe it."""
    session = _Session(image, profile, catalog, request)
    entries = image_entries(image, profile)
    session.set_data()
    session.install_traps(entries)
    machine = session.machine
    before = {e.index: machine.read_virtual(e.site, e.site_len) or b"" for e in entries}
    replacement = {e.index: b"" if e.is_callback else
                   machine.read_virtual(e.target, e.repl_len) or b"" for e in entries}
    text_ranges = image.executable_ranges()
    text_before = [(start, machine.read_virtual(start, end - start) or b"")
                   for start, end in text_ranges]
    result = session.run()
    text_after = tuple((start, machine.read_virtual(start, end - start) or b"")
                       for start, end in text_ranges)
    names = symbol_names(image)
    numbering = catalog.numberings.get(traits(profile.dialect).numbering_in(catalog.numberings))
    results = tuple(
        EntryResult(
            index=e.index, entry=e, site_symbol=describe_address(names, e.site),
            cap_name=None if e.is_callback or numbering is None else numbering.name(e.cap),
            applied=e.index in session.applied, before=before[e.index],
            after=machine.read_virtual(e.site, e.site_len) or b"",
            replacement=replacement[e.index])
        for e in entries)
    stray = _stray_words(text_before, text_after, entries)
    return ImageRun(
        image=image.name, profile=profile.name, dialect=profile.dialect, ncaps=profile.ncaps,
        platform=tuple(c.label for c in request.cpus),
        caps=tuple((n, numbering.name(n) if numbering else None) for n in sorted(request.caps)),
        schedule=str(machine.schedule), seed=request.seed, reason=result.reason,
        entries=results,
        findings=tuple(machine.findings), trace=machine.trace.events,
        trace_dropped=machine.trace.dropped,
        instructions=sum(cpu.instructions for cpu in result.cpus),
        cpu_states=tuple(machine.cpu_state(c) for c in range(machine.cpu_count)),
        text_after=text_after, stray_writes=stray)


def describe_address(names: Mapping[int, str], address: int) -> str:
    """``symbol`` or ``symbol+0xN`` for ``address`` (nearest preceding symbol)."""
    addresses = sorted(names)
    index = bisect.bisect_right(addresses, address) - 1
    if index < 0:
        return f"{address:#x}"
    base = addresses[index]
    return names[base] if base == address else f"{names[base]}+{address - base:#x}"


def _stray_words(before: Sequence[tuple[int, bytes]], after: Sequence[tuple[int, bytes]],
                 entries: Sequence[AltEntry]) -> tuple[int, ...]:
    sites = sorted((e.site, e.site + e.site_len) for e in entries)
    stray: list[int] = []
    for (start, old), (_, new) in zip(before, after, strict=True):
        for offset in range(0, len(old) - 3, 4):
            if old[offset:offset + 4] != new[offset:offset + 4]:
                va = start + offset
                if not any(low <= va < high for low, high in sites):
                    stray.append(va)
    return tuple(stray)


__all__ = [
    "DEFAULT_CPU",
    "DEFAULT_CPUS",
    "EntryResult",
    "ImageRun",
    "RunRequest",
    "cpu_config",
    "describe_address",
    "image_entries",
    "needs_clean_cache_erratum",
    "platform_cpus",
    "resolved_caps",
    "run_image",
    "symbol_names",
]
