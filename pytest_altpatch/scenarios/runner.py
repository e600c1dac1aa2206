"""Run one case under one patcher and schedule, and record what happened.

Boot flow: build the image; map it into a fresh machine (text and replacements R-X,
the table and rodata R--, data and stacks RW-, plus Linux's writable linear alias of
the executable sections); bring up CPU0, which runs the detection stub; for two-pass
patchers, patch the boot-CPU capabilities on CPU0; bring up the secondaries (Xen may
park some); resolve capabilities from what each CPU read; enter stop_machine (every
online CPU calls the patcher's ``apply_alternatives_all``); then run the case's probes
and bring up hot-plugged CPUs.  Late flows live in :mod:`.late`.

Nothing a case or a patcher does raises out of :func:`run_case`: build errors,
patcher refusals and crashes become the outcome's error; rule violations are findings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pytest_altpatch.cases.cpu_numbers import cpu_instance, cpu_numbering
from pytest_altpatch.cases.model import Case, Catalog, CpuInstance, Dialect, ProbeSpec
from pytest_altpatch.errors import AltpatchError, ErrorInfo, Location, Phase
from pytest_altpatch.findings import Finding
from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.callbacks import SMCCC_CONDUIT_SYMBOL, SMCCC_CONDUIT_VALUES
from pytest_altpatch.image.model import Image
from pytest_altpatch.machine import Budget, CpuConfig, CpuContext, GuestFault, Machine
from pytest_altpatch.machine.config import code_buffer_size
from pytest_altpatch.machine.results import RunResult
from pytest_altpatch.patchers.capabilities import (
    Capabilities,
    CpuReading,
    late_cpu_verdict,
    resolve_capabilities,
    semantics_of,
)
from pytest_altpatch.patchers.contract import AltRegion, PatchEnvironment, Patcher
from pytest_altpatch.scenarios import patcher_checks, watch
from pytest_altpatch.scenarios.harness import (
    BRINGUP_SYMBOL,
    DETECT_SYMBOL,
    DETECTED_REGISTERS,
    RECORD_SIZE,
    harness_source,
)
from pytest_altpatch.scenarios.outcome import (
    HotplugOutcome,
    Outcome,
    PhaseOutcome,
    ProbeOutcome,
    SectionSnapshot,
)

PAGE: Final = 4096
#: Linux's writable linear-map alias of kernel text: text VA + this offset.
LINEAR_ALIAS_OFFSET: Final = 0x0200_0000_0000
#: Harness data (detection records, the patcher's rendezvous word), outside any image.
HARNESS_DATA_VA: Final = 0x0100_0000_0000
RECORDS_SIZE: Final = 256 * RECORD_SIZE
SYNC_VA: Final = HARNESS_DATA_VA + RECORDS_SIZE
HARNESS_DATA_SIZE: Final = RECORDS_SIZE + PAGE
#: Capability whose errata make DC CVAU insufficient (Cortex-A53 826319 and friends).
CLEAN_CACHE_CAP: Final = "ARM64_WORKAROUND_CLEAN_CACHE"
DEFAULT_INSTRUCTION_BUDGET: Final = 20_000_000
PROBE_BUDGET: Final = 200_000


# --------------------------------------------------------------------------- the run


def numbering_for(catalog: Catalog, dialect: str) -> str:
    """The catalog numbering a dialect uses (``strict`` numbers as linux-6.1 if absent)."""
    if dialect in catalog.numberings:
        return dialect
    return "linux-6.1"


def run_case(
    case: Case,
    catalog: Catalog,
    *,
    mode: str,
    patcher: Patcher,
    schedule: str = "rr:100",
    seed: int = 0,
    timeout: float | None = None,
    instruction_budget: int = DEFAULT_INSTRUCTION_BUDGET,
) -> Outcome:
    """Build, boot, patch and probe ``case``; never raises for case or patcher problems."""
    session = BootSession(case, catalog, patcher, schedule=schedule, seed=seed,
                          timeout=timeout, instruction_budget=instruction_budget)
    outcome = session.boot(hotplug=(mode == "boot"))
    if mode == "late" and outcome.error is None:
        # Imported here: the late flow builds on this module's session.
        from pytest_altpatch.scenarios.late import run_late  # noqa: PLC0415

        outcome = run_late(session, outcome)
    return outcome


def _reading_of(values: Mapping[str, int]) -> CpuReading:
    id_regs = {name: value for name, value in values.items() if name.startswith("id_")}
    return CpuReading(values["midr_el1"], values["revidr_el1"], values["ctr_el0"], id_regs)


def _config_of(cpu: CpuInstance, index: int) -> CpuConfig:
    # Aff0 = index within a cluster of 8, Aff1 = cluster (bit 31 is RES1).
    mpidr = (1 << 31) | ((index // 8) << 8) | (index % 8)
    return CpuConfig(midr=cpu.midr, revidr=cpu.revidr, mpidr=mpidr, ctr=cpu.ctr,
                     id_regs=dict(cpu.id_regs))


def page_span(size: int) -> int:
    """``size`` rounded up to whole 4 KiB pages."""
    return -(-size // PAGE) * PAGE


@dataclass
class _Allocator:
    """Hands out page-aligned physical ranges in order."""

    next_pa: int = 0

    def take(self, size: int) -> int:
        pa = self.next_pa
        self.next_pa += max(PAGE, page_span(size))
        return pa


@dataclass
class BootSession:
    """One machine, one image, one patcher: boot, then whatever follows (late)."""

    case: Case
    catalog: Catalog
    patcher: Patcher
    schedule: str = "rr:100"
    seed: int = 0
    timeout: float | None = None
    instruction_budget: int = DEFAULT_INSTRUCTION_BUDGET
    image: Image | None = None
    machine: Machine | None = None
    section_pa: dict[str, int] = field(default_factory=dict)
    online: list[int] = field(default_factory=list)
    parked: list[int] = field(default_factory=list)
    readings: dict[int, CpuReading] = field(default_factory=dict)
    capabilities: Capabilities | None = None
    env: PatchEnvironment | None = None
    allocator: _Allocator = field(default_factory=_Allocator)
    spare_pa: int = 0  # start of physical memory left for late payloads
    findings_seen: int = 0
    last_run: RunResult | None = None
    #: What the patcher's own detection decided so far (``cpu-detection``), else None.
    detected: frozenset[int] | None = None
    #: Phases observed before the boot phase (the boot-CPU pass of two-pass dialects).
    early_phases: list[PhaseOutcome] = field(default_factory=list)

    @property
    def dialect(self) -> Dialect:
        """The dialect of the patcher under test."""
        return self.patcher.dialect  # type: ignore[return-value]

    # ------------------------------------------------------------------ outcome helpers

    def _outcome(self, *, phases: Sequence[PhaseOutcome] = (), error: ErrorInfo | None = None,
                 hotplug: Sequence[HotplugOutcome] = ()) -> Outcome:
        machine = self.machine
        trace = machine.trace.events if machine is not None else ()
        return Outcome(
            case_id=self.case.id, mode="boot", schedule=self.schedule, seed=self.seed,
            patcher=self.patcher.name, dialect=self.patcher.dialect, image=self.image,
            symbols=dict(self.image.symbols) if self.image is not None else {},
            phases=tuple(phases), hotplug=tuple(hotplug), error=error, trace=tuple(trace),
            trace_dropped=machine.trace.dropped if machine is not None else 0,
            instructions=sum(c.instructions for c in self.last_run.cpus)
            if self.last_run is not None else 0,
            parked=tuple(self.parked),
        )

    def new_findings(self) -> tuple[Finding, ...]:
        """Machine findings since the last call."""
        assert self.machine is not None
        all_findings = self.machine.findings
        fresh = all_findings[self.findings_seen:]
        self.findings_seen = len(all_findings)
        return tuple(fresh)

    def snapshots(self) -> tuple[SectionSnapshot, ...]:
        """Every image section as built and as it is now."""
        assert self.image is not None and self.machine is not None
        return tuple(
            SectionSnapshot(s.name, s.va, s.content,
                            self.machine.read_phys(self.section_pa[s.name], len(s.content)),
                            s.kind)
            for s in self.image.sections
        )

    # ------------------------------------------------------------------ building

    def _build(self) -> Image:
        numbering = self.catalog.numberings[numbering_for(self.catalog, self.dialect)]
        return build_image(self.case, dialect=self.dialect, numbering=numbering,
                           harness_text=harness_source())

    def clean_cache_needed(self, cpus: Sequence[int]) -> bool:
        """Whether one of ``cpus`` (case CPU numbers) has an erratum making DC CVAU
        insufficient.  Only CPUs online when patched text runs count (INTERPRETING §7):
        a late CPU that would need it is a hot-plug question, not a boot one."""
        instances = [cpu_instance(self.case, cpu) for cpu in cpus]
        return any(
            erratum.capability == CLEAN_CACHE_CAP and erratum.affects(cpu.midr, cpu.revidr)
            for erratum in self.catalog.errata.values() for cpu in instances
        )

    def _make_machine(self, image: Image) -> Machine:
        cpus = (*self.case.platform, *self.case.late_cpus)
        # Every boot CPU until the secondaries are up; then the online ones (Xen parks).
        clean_cache = self.clean_cache_needed(range(len(self.case.platform)))
        for section in image.sections:
            self.section_pa[section.name] = self.allocator.take(len(section.content))
        harness_pa = self.allocator.take(HARNESS_DATA_SIZE)
        self.spare_pa = self.allocator.take(0)
        # Room for late payloads, and for a native patcher's code and stacks.
        memory_size = self.spare_pa + (8 << 20) + int(getattr(self.patcher, "guest_memory", 0))
        budget = Budget(instructions=self.instruction_budget,
                        seconds=self.timeout if self.timeout else 120.0)
        # Translation buffer per CPU sized to the code it can run (late payloads: spare).
        code = sum(len(s.content) for s in image.sections if "x" in s.perms) + (64 << 10)
        machine = Machine([_config_of(cpu, i) for i, cpu in enumerate(cpus)],
                          memory_size=memory_size, schedule=self.schedule, seed=self.seed,
                          budget=budget, clean_cache_erratum=clean_cache,
                          code_buffer=code_buffer_size(code))
        linux = semantics_of(self.dialect) == "linux"
        for section in image.sections:
            if not section.content:
                continue
            pa = self.section_pa[section.name]
            machine.load_phys(pa, section.content)
            size = page_span(len(section.content))
            machine.map(section.va, pa, size, section.perms)
            if linux and section.kind in ("text", "replacement"):
                machine.map(section.va + LINEAR_ALIAS_OFFSET, pa, size, "rw-")
        machine.map(HARNESS_DATA_VA, harness_pa, HARNESS_DATA_SIZE, "rw-")
        self.section_pa["<harness-data>"] = harness_pa
        self._set_conduit(machine, image)
        return machine

    def _set_conduit(self, machine: Machine, image: Image) -> None:
        """Tell the guest SMCCC callback which conduit the firmware reported."""
        address = image.symbols.get(SMCCC_CONDUIT_SYMBOL)
        section = image.section_at(address) if address is not None else None
        if address is None or section is None:
            return
        value = SMCCC_CONDUIT_VALUES[self.case.options.smccc_conduit]
        machine.load_phys(self.section_pa[section.name] + (address - section.va),
                          value.to_bytes(4, "little"))

    # ------------------------------------------------------------------ CPUs

    def _stack_top(self, cpu: int) -> int:
        assert self.image is not None
        return self.image.stacks[cpu].top

    def _detect(self, cpus: Sequence[int]) -> None:
        assert self.machine is not None and self.image is not None
        entry = self.image.symbols[DETECT_SYMBOL]
        for cpu in cpus:
            self.machine.start_cpu(cpu, entry, sp=self._stack_top(cpu),
                                   x={0: HARNESS_DATA_VA + RECORD_SIZE * cpu})
        self.last_run = self.machine.run()
        record_base = self.section_pa["<harness-data>"]
        for cpu in cpus:
            raw = self.machine.read_phys(record_base + RECORD_SIZE * cpu, RECORD_SIZE)
            values = {name: int.from_bytes(raw[8 * slot:8 * slot + 8], "little")
                      for slot, (name, _) in enumerate(DETECTED_REGISTERS)}
            self.readings[cpu] = _reading_of(values)

    def _bring_up(self, cpu: int) -> None:
        """A late CPU starts by invalidating its local I-cache (so it cannot run pre-patch
        text), then synchronises its context."""
        assert self.machine is not None and self.image is not None
        self.machine.start_cpu(cpu, self.image.symbols[BRINGUP_SYMBOL],
                               sp=self._stack_top(cpu))
        self.machine.run()

    def _xen_parks(self, cpu: int) -> bool:
        if semantics_of(self.dialect) != "xen":
            return False
        boot, own = self.readings[0], self.readings[cpu]
        options = self.case.options
        if not options.hmp_unsafe and own.midr != boot.midr:
            return True
        return options.park_dcache_mismatch and own.dcache_line != boot.dcache_line

    # ------------------------------------------------------------------ patching

    def _resolve(self, cpus: Sequence[int]) -> Capabilities:
        """Capabilities from what ``cpus`` read, limited to those the dialect numbers
        (INTERPRETING.md §4: Xen has no LSE or CRC32 capability, for instance)."""
        assert self.image is not None
        numbering = self.image.numbering  # the dialect's, plus the case's own caps
        resolved = resolve_capabilities([self.readings[c] for c in cpus], self.catalog,
                                        self.dialect, self.case.caps)
        return resolved.restricted_to(lambda name: numbering.number(name) is not None)

    def environment(self, caps: Capabilities, region: AltRegion) -> PatchEnvironment:
        """The patch environment for ``region`` given the boot-time capabilities."""
        assert self.image is not None
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
        assert self.image is not None
        image = self.image
        linux = semantics_of(self.dialect) == "linux"
        return AltRegion(
            table_start=image.alt_table_start, table_end=image.alt_table_end,
            text_start=image.text_start, text_end=image.text_end,
            alias_offset=LINEAR_ALIAS_OFFSET if linux else None,
            text_phys=self.section_pa[".text"],
        )

    def run_patcher(self, cpus: Sequence[int],
                    entry: Callable[[CpuContext], None]) -> tuple[RunResult, ErrorInfo | None]:
        """Run ``entry`` on ``cpus`` until all return, one refuses, or the run ends."""
        assert self.machine is not None
        machine = self.machine
        refusals: dict[int, AltpatchError] = {}

        def on(cpu: int) -> Callable[[CpuContext], None]:
            def body(ctx: CpuContext) -> None:
                try:
                    entry(ctx)
                except AltpatchError as exc:
                    refusals[cpu] = exc
            return body

        before = watch.watch(self)
        for cpu in cpus:
            machine.start_python(cpu, on(cpu))
        result = machine.run(
            until=lambda: bool(refusals) or any(machine.cpu_state(c) == "faulted" for c in cpus))
        self.last_run = result
        watch.check(self, before, cpus)
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
        assert self.machine is not None and self.image is not None
        done: list[ProbeOutcome] = []
        known = self.image.symbols if symbols is None else symbols
        for index, spec in enumerate(probes):
            targets = cpus if spec.cpus == "all" else spec.cpus
            address = known.get(spec.call)
            for cpu in targets:
                if address is None or cpu not in cpus:
                    done.append(ProbeOutcome(index, spec.call, cpu, spec.args, (0,) * 8, False))
                    continue
                args = {int(reg[1:]): value for reg, value in spec.args.items()}
                result = self.machine.probe(cpu, address, args, budget=PROBE_BUDGET)
                self.findings_seen = len(self.machine.findings)
                done.append(ProbeOutcome(index, spec.call, cpu, spec.args, result.x,
                                         result.completed, result.findings))
        return tuple(done)

    # ------------------------------------------------------------------ the boot flow

    def boot(self, *, hotplug: bool) -> Outcome:
        """Build, boot and patch; then probes and (optionally) hot-plugged CPUs."""
        try:
            self.image = self._build()
        except AltpatchError as exc:
            return self._outcome(error=_in_phase(exc, "build"))
        try:
            self.machine = self._make_machine(self.image)
            return self._boot_flow(hotplug=hotplug)
        except AltpatchError as exc:
            return self._outcome(error=_in_phase(exc, "boot"))

    def _boot_flow(self, *, hotplug: bool) -> Outcome:
        assert self.machine is not None and self.image is not None
        nboot = len(self.case.platform)
        self._detect([0])
        self.online = [0]
        error = patcher_checks.run_detection(self, [0])
        if error is not None:
            return self._failed_boot(error)
        region = self.kernel_region()
        if "two-pass" in self.patcher.features:
            early = self._resolve([0])
            env = self.environment(early, region)
            _, error = self.run_patcher([0], lambda ctx: self.patcher.apply_boot_alternatives(
                ctx, env))
            if error is not None:
                return self._failed_boot(error)
            self._observe_boot_cpu_pass(early)
        secondaries = list(range(1, nboot))
        if secondaries:
            self._detect(secondaries)
        for cpu in secondaries:
            (self.parked if self._xen_parks(cpu) else self.online).append(cpu)
        self.machine.set_clean_cache_erratum(self.clean_cache_needed(self.online))
        error = patcher_checks.run_detection(self, self.online[1:])
        if error is not None:
            return self._failed_boot(error)
        caps = self._resolve(self.online)
        self.capabilities = caps
        self.env = env = self.environment(caps, region)
        _, error = self.run_patcher(self.online,
                                    lambda ctx: self.patcher.apply_alternatives_all(ctx, env))
        if error is not None or any(self.machine.cpu_state(c) != "done" for c in self.online):
            # A refusal, a crash, a fault, a hang or an exhausted budget: the CPUs left in
            # the rendezvous cannot run probes, and the findings already tell the story.
            return self._failed_boot(error)
        plugged, hotplug_error = self._hotplug() if hotplug else ((), None)
        findings = self.new_findings()
        expectation = self.case.expect.boot
        # Probes run last, so accepted hot-plugged CPUs run the patched text too.
        probes = self.run_probes(expectation.probes if expectation else (), self.online)
        boot_phase = PhaseOutcome(
            phase="boot", caps=tuple(sorted(caps.system)),
            caps_per_cpu=tuple(tuple(sorted(c)) for c in caps.per_cpu),
            sections=self.snapshots(), probes=probes, findings=findings,
            patchable=self.patchable(), patcher_caps=self.patcher_caps(),
        )
        return self._outcome(phases=(*self.early_phases, boot_phase), hotplug=plugged,
                             error=hotplug_error)

    def _observe_boot_cpu_pass(self, early: Capabilities) -> None:
        """The observation point between the passes: only CPU0 is up (expect.boot_cpu)."""
        expectation = self.case.expect.boot_cpu
        if expectation is None:
            return  # findings so far stay with the boot phase
        self.early_phases.append(PhaseOutcome(
            phase="boot-cpu", caps=tuple(sorted(early.boot_cpu)),
            sections=self.snapshots(), probes=self.run_probes(expectation.probes, [0]),
            findings=self.new_findings(), patchable=self.patchable()))

    def patcher_caps(self) -> tuple[str, ...] | None:
        """The patcher's own detection result by name, or None if it has none."""
        if self.detected is None:
            return None
        return patcher_checks.cap_names(self, self.detected)

    def patchable(self) -> tuple[tuple[int, int], ...]:
        """Ranges the patcher may change: every site of the base table."""
        assert self.image is not None
        return tuple((e.site, e.site + e.site_len) for e in self.image.alt_entries)

    def _failed_boot(self, error: ErrorInfo | None) -> Outcome:
        phase = PhaseOutcome(phase="boot", sections=self.snapshots(),
                             findings=self.new_findings(), error=error,
                             patchable=self.patchable())
        return self._outcome(phases=(*self.early_phases, phase), error=error)

    def _hotplug(self) -> tuple[tuple[HotplugOutcome, ...], ErrorInfo | None]:
        assert self.capabilities is not None
        results: list[HotplugOutcome] = []
        numbering = cpu_numbering(self.case)
        for index, cpu in enumerate(numbering.late_numbers):
            self._detect([cpu])
            own = patcher_checks.late_cpu_check(self, cpu)
            if own.error is not None:
                return tuple(results), own.error
            verdict = late_cpu_verdict(
                self.readings[cpu], self.readings[0], self.capabilities, self.catalog,
                self.dialect, hmp_unsafe=self.case.options.hmp_unsafe,
                park_dcache_mismatch=self.case.options.park_dcache_mismatch)
            if verdict.accepted:
                self._bring_up(cpu)
                self.online.append(cpu)
            results.append(HotplugOutcome(cpu=cpu, late_index=index, accepted=verdict.accepted,
                                          code=verdict.code, message=verdict.message,
                                          patcher_accepted=own.accepted,
                                          patcher_code=own.code))
        return tuple(results), None


def _in_phase(exc: AltpatchError, phase: Phase) -> ErrorInfo:
    info = exc.info()
    if exc.phase == "internal":
        return ErrorInfo(info.code, info.message, phase, info.location, info.hint)
    return info


__all__ = [
    "BootSession",
    "page_span",
    "run_case",
]
