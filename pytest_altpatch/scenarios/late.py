"""Late patching: livepatch (xSplice) payloads after boot, with Xen semantics.

For each payload: build it as a relocatable object and load it through the same ELF
loader as a real ``.livepatch`` file (relocations first), place it in the payload
window ``options.payload_offset`` bytes from the base text, validate its
``.altinstructions`` the way Xen's ``prepare_payload`` does (2023 rules), let the
patcher apply the payload's alternatives on one CPU with the capabilities fixed at
boot (no rendezvous: the code is not live yet), then make the text R-X.  Apply and
revert switch the old functions over at a quiescent point on every online CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from pytest_altpatch.cases.model import PayloadSpec, PhaseExpectation
from pytest_altpatch.errors import AltpatchError, ErrorInfo, Location
from pytest_altpatch.image.alt_table import ENTRY_SIZE
from pytest_altpatch.image.model import Image
from pytest_altpatch.image.objects import LoadedObject, LoadedSection, RelocatableObject
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import (
    AltRegion,
    LivepatchEnvironment,
    LivepatchFunction,
    LivepatchPatcher,
)
from pytest_altpatch.scenarios.harness import HARNESS_DATA_VA, SYNC_VA
from pytest_altpatch.scenarios.outcome import (
    Outcome,
    PhaseOutcome,
    ProbeOutcome,
    SectionSnapshot,
)
from pytest_altpatch.scenarios.session import Booted, Session, page_span


@dataclass(frozen=True)
class LoadedPayload:
    """A payload in the machine: its sections' physical homes and its symbols."""

    name: str
    spec: PayloadSpec
    loaded: LoadedObject
    section_pa: Mapping[str, int]


class LateFlowError(AltpatchError):
    """A payload is refused at load (phase ``late``)."""

    default_phase = "late"


def _payload_error(code: str, message: str, payload: str, *, site: int | None = None,
                   address: int | None = None) -> LateFlowError:
    return LateFlowError(code, f"payload {payload}: {message}",
                         location=Location(site=site, address=address))


def validate_payload_alternatives(loaded: LoadedObject, name: str, image: Image) -> None:
    """Xen's checks on a payload's ``.altinstructions`` (the 2023 rewrite), in its order."""
    table = loaded.section(".altinstructions")
    if table is None or not table.content:
        return
    if len(table.content) % ENTRY_SIZE:
        raise _payload_error("ALT_TABLE_SIZE",
                             f".altinstructions is {len(table.content)} bytes, not a multiple "
                             f"of {ENTRY_SIZE}", name, address=table.va)
    text = loaded.section(".text")
    if text is None or not text.content:
        raise _payload_error("NO_TEXT", "alternatives provided, but no .text", name)
    replacement = loaded.section(".altinstr_replacement")
    if replacement is None:
        if image.layout.replacement_placement != "subsection":
            raise _payload_error("NO_REPLACEMENT_SECTION",
                                 ".altinstructions provided, but no .altinstr_replacement",
                                 name)
        replacement = text  # Linux >= 5.8: replacements follow the site in its own section
    numbering = image.numbering
    for entry in loaded.alt_entries(image.dialect, numbering.ncaps, numbering):
        if entry.site_len == 0 or not (text.va <= entry.site
                                       and entry.site + entry.site_len <= text.end):
            raise _payload_error("ORIG_OUT_OF_REGION",
                                 f"entry {entry.index}: site {entry.site:#x}+{entry.site_len} "
                                 f"is not inside .text [{text.va:#x}, {text.end:#x})",
                                 name, site=entry.index, address=entry.site)
        if entry.is_callback:
            if not image.text_start <= entry.target < image.text_end:
                raise _payload_error("CALLBACK_NOT_IN_TEXT",
                                     f"entry {entry.index}: callback {entry.target:#x} is not "
                                     "in the base image's text", name, site=entry.index,
                                     address=entry.site)
            continue
        if not (replacement.va <= entry.target
                and entry.target + entry.repl_len <= replacement.end):
            raise _payload_error("REPL_OUT_OF_REGION",
                                 f"entry {entry.index}: replacement {entry.target:#x}"
                                 f"+{entry.repl_len} is not inside {replacement.name}",
                                 name, site=entry.index, address=entry.site)


def _payload_window(session: Session, index: int) -> int:
    image = session.image
    # Stacked payloads sit one after another, 1 MiB apart, in the window.
    return image.text_start + session.case.options.payload_offset + index * 0x10_0000


def _iter_sections(loaded: LoadedObject) -> Iterator[LoadedSection]:
    return (section for section in loaded.sections if section.content)


def load_payload(booted: Booted, spec: PayloadSpec, index: int, *,
                 alternatives_before_relocations: bool = False,
                 object_bytes: bytes | None = None) -> LoadedPayload:
    """Build, link, map (RW), validate and patch one payload; then make it executable.

    ``object_bytes``, when given, is a relocatable ELF built elsewhere (a real
    toolchain's ``.o``) loaded instead of building ``spec.text``; ``spec`` still names
    the payload and the functions it replaces.  ``alternatives_before_relocations``
    reproduces the historical loader bug (x86 livepatch, 2016) for tests that show a
    case catches it.
    """
    # The payload toolchain (assembler, ELF writer and reader) loads with the first
    # payload: a boot-only run never needs it.
    from pytest_altpatch.image.elf_reader import (  # noqa: PLC0415
        load_relocatable,
        packed_placement,
    )
    from pytest_altpatch.image.elf_writer import write_relocatable  # noqa: PLC0415
    from pytest_altpatch.image.payload import build_payload  # noqa: PLC0415

    session = booted.session
    image, machine = session.image, session.machine
    if object_bytes is None:
        obj = build_payload(spec, image)
        data = write_relocatable(obj)
        raw_text = _raw_section(obj, ".text")
    else:
        data, raw_text = object_bytes, None
    window = _payload_window(session, index)
    loaded = load_relocatable(data, base_symbols=image.symbols,
                              placement=packed_placement(window))
    _check_window(loaded, spec.name, image)
    validate_payload_alternatives(loaded, spec.name, image)
    in_memory = loaded
    if alternatives_before_relocations and raw_text is not None:
        # The buggy order: text still holds unrelocated bytes when alternatives run.
        in_memory = replace(loaded, sections=tuple(
            replace(s, content=raw_text) if s.name == ".text" else s for s in loaded.sections))
    section_pa: dict[str, int] = {}
    for section in _iter_sections(in_memory):
        size = page_span(len(section.content))
        pa = session.spare_pa
        session.spare_pa += size
        section_pa[section.name] = pa
        machine.load_phys(pa, section.content)
        machine.map(section.va, pa, size, "rw-")
        if section.perms == "r-x":
            machine.declare_code(pa, size)  # writes from here on are tracked by the fetch model
    payload = LoadedPayload(spec.name, spec, loaded, section_pa)
    _apply_payload_alternatives(booted, payload)
    if alternatives_before_relocations:
        # ... and relocation afterwards rewrites every relocated word, patched or not.
        text = loaded.section(".text")
        assert text is not None
        for reloc in loaded.relocations:
            if reloc.section == ".text":
                machine.load_phys(section_pa[".text"] + reloc.offset,
                                  text.content[reloc.offset:reloc.offset + 4])
    _secure(session, payload)
    return payload


def _check_window(loaded: LoadedObject, name: str, image: Image) -> None:
    """Refuse a payload placed over the base image (the window is the case's choice)."""
    for section in loaded.sections:
        if not section.content:
            continue
        end = section.va + page_span(len(section.content))
        for base in image.sections:
            base_end = base.va + page_span(len(base.content))
            if base.content and section.va < base_end and base.va < end:
                raise LateFlowError(
                    "BUILD_LAYOUT",
                    f"payload {name}: {section.name} at {section.va:#x} overlaps the base "
                    f"image's {base.name} [{base.va:#x}, {base_end:#x})",
                    location=Location(section=section.name, address=section.va),
                    hint="choose another options.payload_offset")


def _raw_section(obj: RelocatableObject, name: str) -> bytes | None:
    """A section's bytes as the object holds them, before any relocation."""
    for section in obj.sections:
        if section.name == name:
            return section.content
    return None


def _apply_payload_alternatives(booted: Booted, payload: LoadedPayload) -> None:
    session = booted.session
    table = payload.loaded.section(".altinstructions")
    if table is None or not table.content:
        return
    text = payload.loaded.section(".text")
    assert text is not None  # a table without text is refused by the validation
    region = AltRegion(table_start=table.va, table_end=table.end, text_start=text.va,
                       text_end=text.end, alias_offset=0,
                       text_phys=payload.section_pa[".text"], live=False)
    env = session.environment(booted.capabilities, region)
    # Applied on one CPU, without a rendezvous: nothing runs the payload yet.
    _, error = session.run_patcher([0], lambda ctx: session.patcher.apply_alternatives_region(
        ctx, env))
    if error is not None:
        raise LateFlowError(error.code, error.message, location=error.location, hint=error.hint)
    if not session.traits.is_xen:
        # Linux leaves cache maintenance of module text to the module loader.
        _loader_maintenance(session, text.va, text.end, env.dcache_line)


def _loader_maintenance(session: Session, start: int, end: int, line: int) -> None:
    """The Linux module loader's ``flush_icache_range()`` over the module text."""
    def flush(ctx: CpuContext) -> None:
        for va in range(start & -line, end, line):
            ctx.dc("civac", va)
        ctx.dsb("ish")
        ctx.ic("ialluis")
        ctx.dsb("ish")
        ctx.isb()

    session.run_patcher([0], flush)
    # flush_icache_range() ends with kick_all_cpus_sync(): an IPI to every other online
    # CPU, whose exception return synchronises its context before it can run the module.
    others = [cpu for cpu in session.online if cpu != 0]
    if others:
        session.run_patcher(others, lambda ctx: ctx.isb())


def _secure(session: Session, payload: LoadedPayload) -> None:
    """Xen ``arch_livepatch_secure``: text R-X, read-only data R--, data stays RW-.

    Like Xen's ``move_payload``, a section's kind comes from its ELF flags (executable,
    writable, else read-only), so ``.altinstructions`` and ``.rodata*`` become R--.
    """
    machine = session.machine
    for section in payload.loaded.sections:
        if not section.content:
            continue
        if section.perms != "rw-":
            machine.protect(section.va, page_span(len(section.content)), section.perms)


# --------------------------------------------------------------------------- apply/revert


def livepatch_environment(booted: Booted, payload: LoadedPayload) -> LivepatchEnvironment:
    """The functions a payload replaces, resolved against the base image and payload."""
    session = booted.session
    image = session.image
    functions: list[LivepatchFunction] = []
    for replacement in payload.spec.replaces:
        old = image.symbols.get(replacement.old)
        if old is None:
            raise LateFlowError("RELOC_UNDEFINED_SYMBOL",
                                f"payload {payload.name}: old function {replacement.old!r} is "
                                "not in the base image", location=replacement.location)
        new = None
        if replacement.new is not None:
            new = payload.loaded.symbols.get(replacement.new)
            if new is None:
                raise LateFlowError("RELOC_UNDEFINED_SYMBOL",
                                    f"payload {payload.name}: new function "
                                    f"{replacement.new!r} is not defined",
                                    location=replacement.location)
        expect = None
        if replacement.old in payload.spec.expect_old:
            from pytest_altpatch.a64.asm import assemble  # noqa: PLC0415

            expect = assemble(payload.spec.expect_old[replacement.old], base=old,
                              symbols=image.symbols).code
        functions.append(LivepatchFunction(replacement.old, old, 4, new, 4, expect))
    env = booted.env
    return LivepatchEnvironment(
        payload=payload.name, functions=tuple(functions),
        text_start=image.text_start, text_end=image.text_end,
        text_phys=session.section_pa[".text"],
        alias_offset=env.region.alias_offset, ncpus=len(session.online), sync_va=SYNC_VA,
        dcache_line=env.dcache_line, icache_line=env.icache_line,
    )


def switch(booted: Booted, payloads: Sequence[LoadedPayload], *, revert: bool
           ) -> ErrorInfo | None:
    """Apply (or revert, in reverse order) payloads at a quiescent point on every CPU."""
    session = booted.session
    machine = session.machine
    patcher = session.patcher
    if not isinstance(patcher, LivepatchPatcher):
        return ErrorInfo("PATCHER_UNSUPPORTED", f"{patcher.name} cannot apply livepatches",
                         "late")
    order = list(reversed(payloads)) if revert else list(payloads)
    for payload in order:
        env = livepatch_environment(booted, payload)
        machine.load_phys(session.harness_pa + (SYNC_VA - HARNESS_DATA_VA),
                          bytes(4))  # a fresh rendezvous word

        def body(ctx: CpuContext, env: LivepatchEnvironment = env) -> None:
            if revert:
                patcher.revert_livepatch(ctx, env)
            else:
                patcher.apply_livepatch(ctx, env)

        _, error = session.run_patcher(session.online, body)
        if error is not None:
            return replace(error, phase="late")
        if any(machine.cpu_state(c) != "done" for c in session.online):
            return None  # findings (fault, hang, budget) tell the story
    return None


# --------------------------------------------------------------------------- the flow


def _snapshots(session: Session, payloads: Sequence[LoadedPayload]
               ) -> tuple[SectionSnapshot, ...]:
    machine = session.machine
    snaps = list(session.snapshots())
    for payload in payloads:
        for section in _iter_sections(payload.loaded):
            after = machine.read_phys(payload.section_pa[section.name], len(section.content))
            snaps.append(SectionSnapshot(f"{payload.name}:{section.name}", section.va,
                                         section.content, after, "payload"))
    return tuple(snaps)


def _phase(booted: Booted, name: str, payloads: Sequence[LoadedPayload],
           expectation: PhaseExpectation | None, patchable: Sequence[tuple[int, int]],
           error: ErrorInfo | None = None) -> PhaseOutcome:
    probes: tuple[ProbeOutcome, ...] = ()
    session = booted.session
    machine = session.machine
    findings = session.new_findings()
    healthy = error is None and all(machine.cpu_state(c) == "done" for c in session.online)
    if expectation is not None and healthy:
        symbols = dict(session.image.symbols)
        for payload in payloads:
            symbols.update(payload.loaded.symbols)  # a module's own functions may be probed
        probes = session.run_probes(expectation.probes, session.online, symbols)
    return PhaseOutcome(phase=name, caps=tuple(sorted(booted.capabilities.system)),
                        sections=_snapshots(session, payloads), probes=probes,
                        findings=findings, error=error, patchable=tuple(patchable))


def run_late(booted: Booted, boot: Outcome, *,
             alternatives_before_relocations: bool = False) -> Outcome:
    """Continue a booted session with the case's payloads: load, apply, revert."""
    session = booted.session
    case = session.case
    late = case.expect.late
    phases = list(boot.phases)
    payloads: list[LoadedPayload] = []
    image = session.image
    symbols = dict(image.symbols)

    def finish(error: ErrorInfo | None = None) -> Outcome:
        entries = tuple((p.name, e) for p in payloads
                        for e in p.loaded.alt_entries(image.dialect, image.numbering.ncaps,
                                                      image.numbering))
        return replace(session.outcome(phases=phases, error=error, hotplug=boot.hotplug),
                       mode="late", symbols=symbols, payload_entries=entries)

    machine = session.machine
    if any(machine.cpu_state(c) != "done" for c in session.online):
        return finish(boot.error)
    base_sites = session.patchable()
    try:
        for index, spec in enumerate(case.payloads):
            payload = load_payload(booted, spec, index,
                                   alternatives_before_relocations=alternatives_before_relocations)
            payloads.append(payload)
            symbols.update(payload.loaded.symbols)
    except AltpatchError as exc:
        error = exc.with_phase("late").info()
        phases.append(_phase(booted, "load", payloads, None, base_sites, error))
        return finish(error)
    payload_sites = tuple((e.site, e.site + e.site_len) for p in payloads
                          for e in p.loaded.alt_entries(image.dialect, image.numbering.ncaps,
                                                        image.numbering))
    phases.append(_phase(booted, "load", payloads, late.load if late else None,
                         base_sites + payload_sites))
    function_sites = tuple(
        (image.symbols[r.old], image.symbols[r.old] + 4)
        for p in payloads for r in p.spec.replaces if r.old in image.symbols)
    allowed = base_sites + payload_sites + function_sites
    if not any(p.spec.replaces for p in payloads) and (late is None or late.apply is None):
        return finish()  # modules: loading is the whole late flow (nothing to switch)
    try:
        for name, revert in (("apply", False), ("revert", True)):
            expectation = getattr(late, name) if late else None
            if expectation is None and name == "revert":
                break
            switch_error = switch(booted, payloads, revert=revert)
            phases.append(_phase(booted, name, payloads, expectation, allowed, switch_error))
            if switch_error is not None:
                return finish(switch_error)
            if any(machine.cpu_state(c) != "done" for c in session.online):
                return finish()
    except AltpatchError as exc:
        return finish(exc.with_phase("late").info())
    return finish()


__all__ = [
    "LateFlowError",
    "LoadedPayload",
    "livepatch_environment",
    "load_payload",
    "run_late",
    "switch",
    "validate_payload_alternatives",
]
