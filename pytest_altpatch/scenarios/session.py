"""The booted session: one case's image in one machine, with one patcher.

A :class:`Session` exists only once the image is built and mapped into a fresh machine
(:func:`open_session`); the boot flow (:mod:`.runner`) brings its CPUs up and patches,
and once the system patch has run it is a :class:`Booted` session, which the hot-plug
and late flows (:mod:`.late`) continue.  Both flows depend on this module, never on
each other's.

Memory: text and replacements R-X, the table and rodata R--, data and stacks RW-, plus
Linux's writable linear alias of the executable sections, and the harness's own data
(detection records, the patcher's rendezvous word) outside any image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pytest_altpatch.a64.granule import PAGE_SIZE, align_up
from pytest_altpatch.cases.cpu_numbers import cpu_instance
from pytest_altpatch.cases.model import Case, Catalog, CpuInstance, ProbeSpec
from pytest_altpatch.dialects import Dialect, DialectTraits, traits
from pytest_altpatch.errors import AltpatchError, ErrorInfo, Location
from pytest_altpatch.findings import Finding
from pytest_altpatch.image.callbacks import SMCCC_CONDUIT_SYMBOL, SMCCC_CONDUIT_VALUES
from pytest_altpatch.image.model import Image
from pytest_altpatch.machine import (
    Budget,
    CpuConfig,
    CpuContext,
    GuestFault,
    Machine,
    Schedule,
)
from pytest_altpatch.machine.config import code_buffer_size
from pytest_altpatch.machine.results import RunResult
from pytest_altpatch.patchers.capabilities import Capabilities, CpuReading
from pytest_altpatch.patchers.contract import AltRegion, PatchEnvironment, Patcher
from pytest_altpatch.patchers.reference import CLEAN_CACHE_CAP
from pytest_altpatch.scenarios import watch
from pytest_altpatch.scenarios.buildcheck import build_for, numbering_for
from pytest_altpatch.scenarios.harness import (
    HARNESS_DATA_SIZE,
    HARNESS_DATA_VA,
    SYNC_VA,
)
from pytest_altpatch.scenarios.outcome import (
    HotplugOutcome,
    Outcome,
    PhaseOutcome,
    ProbeOutcome,
    SectionSnapshot,
)

#: Linux's writable linear-map alias of kernel text: text VA + this offset.
LINEAR_ALIAS_OFFSET: Final = 0x0200_0000_0000
DEFAULT_INSTRUCTION_BUDGET: Final = 20_000_000
PROBE_BUDGET: Final = 200_000
#: The key of the harness data in :attr:`Session.section_pa`.
HARNESS_DATA: Final = "<harness-data>"
#: Code a CPU may run besides its image's text: late payloads, a native patcher's code.
_CODE_ROOM: Final = 64 << 10
#: The translation buffer of a machine whose image has at most this room of code
#: (every bundled case's): the size a worker server makes its spare engines at.
SPARE_CODE_BUFFER: Final = code_buffer_size(2 * _CODE_ROOM)


@dataclass(frozen=True)
class RunSettings:
    """How one run is driven: the schedule (kept as given), seed and budgets."""

    schedule: Schedule | str = "rr:100"
    seed: int = 0
    timeout: float | None = None
    instruction_budget: int = DEFAULT_INSTRUCTION_BUDGET

    @property
    def schedule_name(self) -> str:
        """The schedule as the outcome records it (a string stays as the caller wrote it)."""
        return self.schedule if isinstance(self.schedule, str) else str(self.schedule)


def page_span(size: int) -> int:
    """``size`` rounded up to whole pages."""
    return align_up(size)


def clean_cache_needed(case: Case, catalog: Catalog, cpus: Sequence[int]) -> bool:
    """Whether one of ``cpus`` (case CPU numbers) has an erratum making DC CVAU
    insufficient.  Only CPUs online when patched text runs count (INTERPRETING §7):
    a late CPU that would need it is a hot-plug question, not a boot one."""
    instances = [cpu_instance(case, cpu) for cpu in cpus]
    return any(
        erratum.capability == CLEAN_CACHE_CAP and erratum.affects(cpu.midr, cpu.revidr)
        for erratum in catalog.errata.values() for cpu in instances
    )


def unbooted_outcome(case: Case, patcher: Patcher, settings: RunSettings,
                     image: Image | None, error: ErrorInfo) -> Outcome:
    """The outcome of a run that ended before a machine existed (a build or map error)."""
    return Outcome(
        case_id=case.id, mode="boot", schedule=settings.schedule_name, seed=settings.seed,
        patcher=patcher.name, dialect=patcher.dialect, image=image,
        symbols=dict(image.symbols) if image is not None else {}, error=error,
    )


@dataclass
class Session:
    """One machine holding one image, one patcher: what the boot and late flows drive.

    The case, image and machine are fixed for the session's life; the lists and counters
    below record the flows' progress (CPUs online, what they read, findings seen)."""

    case: Case
    catalog: Catalog
    patcher: Patcher
    settings: RunSettings
    image: Image
    machine: Machine
    #: Each image section's physical address, and the harness data's (:data:`HARNESS_DATA`).
    section_pa: Mapping[str, int]
    #: Start of physical memory left for late payloads (advanced as they load).
    spare_pa: int
    online: list[int] = field(default_factory=list)
    parked: list[int] = field(default_factory=list)
    readings: dict[int, CpuReading] = field(default_factory=dict)
    findings_seen: int = 0
    #: Guest instructions and context operations of the last detection or patcher run.
    instructions: int = 0
    #: What the patcher's own detection decided so far (``cpu-detection``), else None.
    detected: frozenset[int] | None = None
    #: Phases observed before the boot phase (the boot-CPU pass of two-pass dialects).
    early_phases: list[PhaseOutcome] = field(default_factory=list)

    @property
    def dialect(self) -> Dialect:
        """The dialect of the patcher under test."""
        return self.patcher.dialect  # type: ignore[return-value]

    @property
    def traits(self) -> DialectTraits:
        """The dialect's row of the dialect table."""
        return traits(self.patcher.dialect)

    @property
    def schedule(self) -> Schedule | str:
        """The schedule the machine runs under, as the caller gave it."""
        return self.settings.schedule

    @property
    def harness_pa(self) -> int:
        """Physical address of the harness data (detection records, rendezvous word)."""
        return self.section_pa[HARNESS_DATA]

    # ------------------------------------------------------------------ outcome helpers

    def outcome(self, *, phases: Sequence[PhaseOutcome] = (), error: ErrorInfo | None = None,
                hotplug: Sequence[HotplugOutcome] = ()) -> Outcome:
        """The boot outcome so far: the phases given, the machine's trace and counters."""
        machine = self.machine
        return Outcome(
            case_id=self.case.id, mode="boot", schedule=self.settings.schedule_name,
            seed=self.settings.seed, patcher=self.patcher.name, dialect=self.patcher.dialect,
            image=self.image, symbols=dict(self.image.symbols), phases=tuple(phases),
            hotplug=tuple(hotplug), error=error, trace=machine.trace.kept(),
            trace_dropped=machine.trace.dropped, instructions=self.instructions,
            parked=tuple(self.parked),
        )

    def new_findings(self) -> tuple[Finding, ...]:
        """Machine findings since the last call."""
        all_findings = self.machine.findings
        fresh = all_findings[self.findings_seen:]
        self.findings_seen = len(all_findings)
        return tuple(fresh)

    def snapshots(self) -> tuple[SectionSnapshot, ...]:
        """Every image section as built and as it is now."""
        return tuple(
            SectionSnapshot(s.name, s.va, s.content,
                            self.machine.read_phys(self.section_pa[s.name], len(s.content)),
                            s.kind)
            for s in self.image.sections
        )

    def patchable(self) -> tuple[tuple[int, int], ...]:
        """Ranges the patcher may change: every site of the base table."""
        return tuple((e.site, e.site + e.site_len) for e in self.image.alt_entries)

    def clean_cache_needed(self, cpus: Sequence[int]) -> bool:
        """Whether one of ``cpus`` needs DC CIVAC for DC CVAU (:func:`clean_cache_needed`)."""
        return clean_cache_needed(self.case, self.catalog, cpus)

    # ------------------------------------------------------------------ patching

    def environment(self, caps: Capabilities, region: AltRegion) -> PatchEnvironment:
        """The patch environment for ``region`` given the boot-time capabilities."""
        numbering = self.image.numbering
        numbers = {name: n for name in caps.system if (n := numbering.number(name)) is not None}
        online = [self.readings[c] for c in self.online] or [self.readings[0]]
        return PatchEnvironment(
            dialect=self.dialect,
            region=region,
            caps=frozenset(numbers.values()),
            boot_caps=frozenset(numbers[name] for name in caps.boot_cpu),
            ncaps=numbering.ncaps,
            ncpus=len(self.online),
            sync_va=SYNC_VA,
            dcache_line=min(reading.dcache_line for reading in online),
            icache_line=min(reading.icache_line for reading in online),
            callbacks={address: name for name, address in self.image.callbacks.items()},
            cap_names={n: name for name, n in numbers.items()},
            smccc_conduit=self.case.options.smccc_conduit,
        )

    def kernel_region(self) -> AltRegion:
        """The base image's alternatives region."""
        image = self.image
        return AltRegion(
            table_start=image.alt_table_start, table_end=image.alt_table_end,
            text_start=image.text_start, text_end=image.text_end,
            alias_offset=None if self.traits.is_xen else LINEAR_ALIAS_OFFSET,
            text_phys=self.section_pa[".text"],
        )

    def run_patcher(self, cpus: Sequence[int],
                    entry: Callable[[CpuContext], None]) -> tuple[RunResult, ErrorInfo | None]:
        """Run ``entry`` on ``cpus`` until all return, one refuses, or the run ends."""
        machine = self.machine
        refusals: dict[int, AltpatchError] = {}

        def on(cpu: int) -> Callable[[CpuContext], None]:
            def body(ctx: CpuContext) -> None:
                try:
                    entry(ctx)
                except AltpatchError as exc:
                    refusals[cpu] = exc
            return body

        before = watch.watch(machine, self.harness_pa)
        for cpu in cpus:
            machine.start_python(cpu, on(cpu))
        faulted = machine.state_watch(cpus, "faulted")
        result = machine.run(until=lambda: bool(refusals) or faulted())
        self.instructions = sum(c.instructions for c in result.cpus)
        watch.check(machine, before, cpus)
        if refusals:
            cpu = min(refusals)
            return result, refusals[cpu].info()
        for outcome in result.cpus:
            exc = outcome.exception
            if exc is not None and exc.type != GuestFault.__name__:
                return result, ErrorInfo(
                    "PATCHER_RAISED", f"cpu{outcome.cpu}: {exc.type}: {exc.message}",
                    "boot", Location(), hint=exc.traceback.strip().splitlines()[-1]
                    if exc.traceback.strip() else None)
        return result, None

    def run_probes(self, probes: Sequence[ProbeSpec], cpus: Sequence[int],
                   symbols: Mapping[str, int] | None = None) -> tuple[ProbeOutcome, ...]:
        """Run each probe on the CPUs it names (``all``: ``cpus``); functions are looked up
        in ``symbols`` (default: the base image's, so a late phase passes its payloads')."""
        done: list[ProbeOutcome] = []
        known = self.image.symbols if symbols is None else symbols
        online = frozenset(cpus)
        probe = self.machine.probe
        for index, spec in enumerate(probes):
            targets = cpus if spec.cpus == "all" else spec.cpus
            address = known.get(spec.call)
            args = {int(reg[1:]): value for reg, value in spec.args.items()}
            for cpu in targets:
                if address is None or cpu not in online:
                    done.append(ProbeOutcome(index, spec.call, cpu, spec.args, (0,) * 8, False))
                    continue
                result = probe(cpu, address, args, budget=PROBE_BUDGET)
                self.findings_seen = self.machine.finding_count
                done.append(ProbeOutcome(index, spec.call, cpu, spec.args, result.x,
                                         result.completed, result.findings))
        return tuple(done)


@dataclass(frozen=True)
class Booted:
    """A session whose system patch has run: the capabilities and environment it used."""

    session: Session
    capabilities: Capabilities
    env: PatchEnvironment


# --------------------------------------------------------------------------- opening


def _config_of(cpu: CpuInstance, index: int) -> CpuConfig:
    # Aff0 = index within a cluster of 8, Aff1 = cluster (bit 31 is RES1).
    mpidr = (1 << 31) | ((index // 8) << 8) | (index % 8)
    return CpuConfig(midr=cpu.midr, revidr=cpu.revidr, mpidr=mpidr, ctr=cpu.ctr,
                     id_regs=dict(cpu.id_regs))


@dataclass
class _Allocator:
    """Hands out page-aligned physical ranges in order."""

    next_pa: int = 0

    def take(self, size: int) -> int:
        pa = self.next_pa
        self.next_pa += max(PAGE_SIZE, page_span(size))
        return pa


def code_buffer_for(image: Image) -> int:
    """The translation buffer of each CPU of a machine for ``image``: sized to the code
    the CPU can run, its text and room for late payloads or a native patcher's code."""
    code = sum(len(s.content) for s in image.sections if "x" in s.perms) + _CODE_ROOM
    return code_buffer_size(code)


def _make_machine(case: Case, catalog: Catalog, patcher: Patcher, settings: RunSettings,
                  image: Image, section_pa: dict[str, int]) -> tuple[Machine, int]:
    """A fresh machine with ``image`` and the harness data mapped; fills ``section_pa``
    and returns the machine and the first spare physical address."""
    allocator = _Allocator()
    cpus = (*case.platform, *case.late_cpus)
    # Every boot CPU until the secondaries are up; then the online ones (Xen parks).
    clean_cache = clean_cache_needed(case, catalog, range(len(case.platform)))
    for section in image.sections:
        section_pa[section.name] = allocator.take(len(section.content))
    harness_pa = allocator.take(HARNESS_DATA_SIZE)
    spare_pa = allocator.take(0)
    # Room for late payloads, and for a native patcher's code and stacks.
    memory_size = spare_pa + (8 << 20) + int(getattr(patcher, "guest_memory", 0))
    budget = Budget(instructions=settings.instruction_budget,
                    seconds=settings.timeout if settings.timeout else 120.0)
    machine = Machine([_config_of(cpu, i) for i, cpu in enumerate(cpus)],
                      memory_size=memory_size, schedule=settings.schedule, seed=settings.seed,
                      budget=budget, clean_cache_erratum=clean_cache,
                      code_buffer=code_buffer_for(image))
    linux = not traits(patcher.dialect).is_xen
    for section in image.sections:
        if not section.content:
            continue
        pa = section_pa[section.name]
        machine.load_phys(pa, section.content)
        size = page_span(len(section.content))
        machine.map(section.va, pa, size, section.perms)
        if linux and section.kind in ("text", "replacement"):
            machine.map(section.va + LINEAR_ALIAS_OFFSET, pa, size, "rw-")
    machine.map(HARNESS_DATA_VA, harness_pa, HARNESS_DATA_SIZE, "rw-")
    section_pa[HARNESS_DATA] = harness_pa
    _set_conduit(case, machine, image, section_pa)
    return machine, spare_pa


def _set_conduit(case: Case, machine: Machine, image: Image,
                 section_pa: Mapping[str, int]) -> None:
    """Tell the guest SMCCC callback which conduit the firmware reported."""
    address = image.symbols.get(SMCCC_CONDUIT_SYMBOL)
    section = image.section_at(address) if address is not None else None
    if address is None or section is None:
        return
    value = SMCCC_CONDUIT_VALUES[case.options.smccc_conduit]
    machine.load_phys(section_pa[section.name] + (address - section.va),
                      value.to_bytes(4, "little"))


def open_session(case: Case, catalog: Catalog, patcher: Patcher, image: Image,
                 settings: RunSettings) -> Session:
    """Map ``image`` into a fresh machine for ``patcher``: the session before any CPU runs
    (raises the machine's errors, e.g. a bad schedule or mapping)."""
    section_pa: dict[str, int] = {}
    machine, spare_pa = _make_machine(case, catalog, patcher, settings, image, section_pa)
    return Session(case, catalog, patcher, settings, image, machine, section_pa, spare_pa)


__all__ = [
    "DEFAULT_INSTRUCTION_BUDGET",
    "HARNESS_DATA",
    "LINEAR_ALIAS_OFFSET",
    "PROBE_BUDGET",
    "SPARE_CODE_BUFFER",
    "Booted",
    "RunSettings",
    "Session",
    "build_for",
    "clean_cache_needed",
    "code_buffer_for",
    "numbering_for",
    "open_session",
    "page_span",
    "unbooted_outcome",
]
