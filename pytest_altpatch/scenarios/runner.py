"""Run one case under one patcher and schedule, and record what happened.

Boot flow: build the image; map it into a fresh machine (:mod:`.session`); bring up
CPU0, which runs the detection stub; for two-pass patchers, patch the boot-CPU
capabilities on CPU0; bring up the secondaries (Xen may park some); resolve
capabilities from what each CPU read; enter stop_machine (every online CPU calls the
patcher's ``apply_alternatives_all``); then run the case's probes and bring up
hot-plugged CPUs.  Late flows live in :mod:`.late`; both continue a :class:`Booted`
session.

Nothing a case or a patcher does raises out of :func:`run_case`: build errors,
patcher refusals and crashes become the outcome's error; rule violations are findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_altpatch import collector
from pytest_altpatch.cases.cpu_numbers import cpu_numbering
from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.errors import AltpatchError, ErrorInfo, Phase
from pytest_altpatch.machine import Schedule
from pytest_altpatch.patchers.capabilities import (
    Capabilities,
    CpuReading,
    late_cpu_verdict,
    resolve_capabilities,
)
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.scenarios import patcher_checks
from pytest_altpatch.scenarios.harness import (
    BRINGUP_SYMBOL,
    DETECT_SYMBOL,
    DETECTED_REGISTERS,
    HARNESS_DATA_VA,
    RECORD_SIZE,
)
from pytest_altpatch.scenarios.outcome import HotplugOutcome, Outcome, PhaseOutcome
from pytest_altpatch.scenarios.session import (
    DEFAULT_INSTRUCTION_BUDGET,
    Booted,
    RunSettings,
    Session,
    build_for,
    open_session,
    unbooted_outcome,
)

# --------------------------------------------------------------------------- the run


def run_case(
    case: Case,
    catalog: Catalog,
    *,
    mode: str,
    patcher: Patcher,
    schedule: Schedule | str = "rr:100",
    seed: int = 0,
    timeout: float | None = None,
    instruction_budget: int = DEFAULT_INSTRUCTION_BUDGET,
) -> Outcome:
    """Build, boot, patch and probe ``case``; never raises for case or patcher problems.

    ``schedule`` is handed to the machine as given (a :class:`Schedule` or its text)."""
    settings = RunSettings(schedule=schedule, seed=seed, timeout=timeout,
                           instruction_budget=instruction_budget)
    with collector.settled():  # the case, catalog and image live as long as the run
        outcome, booted = boot(case, catalog, patcher, settings, hotplug=(mode == "boot"))
        if mode == "late" and outcome.error is None and booted is not None:
            # (a boot item never loads the late flows and the payload models they use)
            from pytest_altpatch.scenarios.late import run_late  # noqa: PLC0415

            outcome = run_late(booted, outcome)
    return outcome


def boot(case: Case, catalog: Catalog, patcher: Patcher, settings: RunSettings | None = None,
         *, hotplug: bool) -> tuple[Outcome, Booted | None]:
    """Build, boot and patch; then probes and (optionally) hot-plugged CPUs.

    Returns the boot outcome and, once the system patch has run, the booted session
    (None when the run ended before: a build, map, detection or first-pass error)."""
    settings = settings or RunSettings()
    try:
        image = build_for(case, catalog, patcher.dialect)  # type: ignore[arg-type]
    except AltpatchError as exc:
        return unbooted_outcome(case, patcher, settings, None, _in_phase(exc, "build")), None
    collector.settle()
    try:
        session = open_session(case, catalog, patcher, image, settings)
    except AltpatchError as exc:
        return unbooted_outcome(case, patcher, settings, image, _in_phase(exc, "boot")), None
    try:
        return _boot_flow(session, hotplug=hotplug)
    except AltpatchError as exc:
        return session.outcome(error=_in_phase(exc, "boot")), None


def _in_phase(exc: AltpatchError, phase: Phase) -> ErrorInfo:
    info = exc.info()
    if exc.phase == "internal":
        return ErrorInfo(info.code, info.message, phase, info.location, info.hint)
    return info


# --------------------------------------------------------------------------- CPUs


def _reading_of(values: Mapping[str, int]) -> CpuReading:
    id_regs = {name: value for name, value in values.items() if name.startswith("id_")}
    return CpuReading(values["midr_el1"], values["revidr_el1"], values["ctr_el0"], id_regs)


def _detect(session: Session, cpus: Sequence[int]) -> None:
    """Run the detection stub on ``cpus`` and keep what each read."""
    machine, image = session.machine, session.image
    entry = image.symbols[DETECT_SYMBOL]
    for cpu in cpus:
        machine.start_cpu(cpu, entry, sp=image.stacks[cpu].top,
                          x={0: HARNESS_DATA_VA + RECORD_SIZE * cpu})
    result = machine.run()
    session.instructions = sum(c.instructions for c in result.cpus)
    record_base = session.harness_pa
    for cpu in cpus:
        raw = machine.read_phys(record_base + RECORD_SIZE * cpu, RECORD_SIZE)
        values = {name: int.from_bytes(raw[8 * slot:8 * slot + 8], "little")
                  for slot, (name, _) in enumerate(DETECTED_REGISTERS)}
        session.readings[cpu] = _reading_of(values)


def _bring_up(session: Session, cpu: int) -> None:
    """A late CPU starts by invalidating its local I-cache (so it cannot run pre-patch
    text), then synchronises its context."""
    session.machine.start_cpu(cpu, session.image.symbols[BRINGUP_SYMBOL],
                              sp=session.image.stacks[cpu].top)
    session.machine.run()


def _xen_parks(session: Session, cpu: int) -> bool:
    if not session.traits.is_xen:
        return False
    boot_cpu, own = session.readings[0], session.readings[cpu]
    options = session.case.options
    if not options.hmp_unsafe and own.midr != boot_cpu.midr:
        return True
    return options.park_dcache_mismatch and own.dcache_line != boot_cpu.dcache_line


def _resolve(session: Session, cpus: Sequence[int]) -> Capabilities:
    """Capabilities from what ``cpus`` read, limited to those the dialect numbers
    (INTERPRETING.md §4: Xen has no LSE or CRC32 capability, for instance)."""
    numbering = session.image.numbering  # the dialect's, plus the case's own caps
    resolved = resolve_capabilities([session.readings[c] for c in cpus], session.catalog,
                                    session.dialect, session.case.caps)
    return resolved.restricted_to(lambda name: numbering.number(name) is not None)


# --------------------------------------------------------------------------- the boot flow


def _bring_up_boot_cpus(session: Session) -> ErrorInfo | None:
    """CPU0, its first pass (two-pass dialects), then the secondaries (Xen may park)."""
    _detect(session, [0])
    session.online = [0]
    error = patcher_checks.run_detection(session, [0])
    if error is not None:
        return error
    patcher = session.patcher
    if "two-pass" in patcher.features:
        early = _resolve(session, [0])
        env = session.environment(early, session.kernel_region())
        _, error = session.run_patcher([0], lambda ctx: patcher.apply_boot_alternatives(
            ctx, env))
        if error is not None:
            return error
        _observe_boot_cpu_pass(session, early)
    secondaries = list(range(1, len(session.case.platform)))
    if secondaries:
        _detect(session, secondaries)
    for cpu in secondaries:
        (session.parked if _xen_parks(session, cpu) else session.online).append(cpu)
    session.machine.set_clean_cache_erratum(session.clean_cache_needed(session.online))
    return patcher_checks.run_detection(session, session.online[1:])


def _boot_flow(session: Session, *, hotplug: bool) -> tuple[Outcome, Booted | None]:
    error = _bring_up_boot_cpus(session)
    if error is not None:
        return _failed_boot(session, error), None
    caps = _resolve(session, session.online)
    env = session.environment(caps, session.kernel_region())
    booted = Booted(session, caps, env)
    patcher = session.patcher
    _, error = session.run_patcher(session.online,
                                   lambda ctx: patcher.apply_alternatives_all(ctx, env))
    if error is not None or any(session.machine.cpu_state(c) != "done" for c in session.online):
        # A refusal, a crash, a fault, a hang or an exhausted budget: the CPUs left in
        # the rendezvous cannot run probes, and the findings already tell the story.
        return _failed_boot(session, error), booted
    plugged, hotplug_error = _hotplug(booted) if hotplug else ((), None)
    findings = session.new_findings()
    expectation = session.case.expect.boot
    # Probes run last, so accepted hot-plugged CPUs run the patched text too.
    probes = session.run_probes(expectation.probes if expectation else (), session.online)
    boot_phase = PhaseOutcome(
        phase="boot", caps=tuple(sorted(caps.system)),
        caps_per_cpu=tuple(tuple(sorted(c)) for c in caps.per_cpu),
        sections=session.snapshots(), probes=probes, findings=findings,
        patchable=session.patchable(), patcher_caps=patcher_caps(session),
    )
    return session.outcome(phases=(*session.early_phases, boot_phase), hotplug=plugged,
                           error=hotplug_error), booted


def _observe_boot_cpu_pass(session: Session, early: Capabilities) -> None:
    """The observation point between the passes: only CPU0 is up (expect.boot_cpu)."""
    expectation = session.case.expect.boot_cpu
    if expectation is None:
        return  # findings so far stay with the boot phase
    session.early_phases.append(PhaseOutcome(
        phase="boot-cpu", caps=tuple(sorted(early.boot_cpu)),
        sections=session.snapshots(), probes=session.run_probes(expectation.probes, [0]),
        findings=session.new_findings(), patchable=session.patchable()))


def patcher_caps(session: Session) -> tuple[str, ...] | None:
    """The patcher's own detection result by name, or None if it has none."""
    if session.detected is None:
        return None
    return patcher_checks.cap_names(session, session.detected)


def _failed_boot(session: Session, error: ErrorInfo | None) -> Outcome:
    phase = PhaseOutcome(phase="boot", sections=session.snapshots(),
                         findings=session.new_findings(), error=error,
                         patchable=session.patchable())
    return session.outcome(phases=(*session.early_phases, phase), error=error)


def _hotplug(booted: Booted) -> tuple[tuple[HotplugOutcome, ...], ErrorInfo | None]:
    session = booted.session
    results: list[HotplugOutcome] = []
    numbering = cpu_numbering(session.case)
    options = session.case.options
    for index, cpu in enumerate(numbering.late_numbers):
        _detect(session, [cpu])
        own = patcher_checks.late_cpu_check(booted, cpu)
        if own.error is not None:
            return tuple(results), own.error
        verdict = late_cpu_verdict(
            session.readings[cpu], session.readings[0], booted.capabilities, session.catalog,
            session.dialect, hmp_unsafe=options.hmp_unsafe,
            park_dcache_mismatch=options.park_dcache_mismatch)
        if verdict.accepted:
            _bring_up(session, cpu)
            session.online.append(cpu)
        results.append(HotplugOutcome(cpu=cpu, late_index=index, accepted=verdict.accepted,
                                      code=verdict.code, message=verdict.message,
                                      patcher_accepted=own.accepted,
                                      patcher_code=own.code))
    return tuple(results), None


__all__ = [
    "boot",
    "patcher_caps",
    "run_case",
]
