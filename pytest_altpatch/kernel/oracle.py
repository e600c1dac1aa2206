"""The differential oracle: a shipped image's own patcher against the reference dialect.

Both run on machines built the same way (:func:`~.layout.build_machine`), on the same
CPUs, with the same capabilities and the image's own table.  The reference patcher
(:mod:`pytest_altpatch.patchers.reference`, the profile's dialect) runs as Python CPUs
inside stop_machine; the image's code runs as guest code.  Afterwards every word of
every executable section must be identical, except at callback sites: there the
reference runs the callback's registry entry when the registry has one (and the words
are compared like any others); a callback the registry does not know is left out of
the reference run (its entry is masked in the reference machine's copy of the table)
and its site is reported with what the image's own callback wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_altpatch.a64.disasm import disassemble
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.dialects import traits
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.kernel.layout import KernelImage, build_machine, write_virtual
from pytest_altpatch.kernel.profile import TargetProfile
from pytest_altpatch.kernel.runner import (
    ImageRun,
    RunRequest,
    cpu_config,
    describe_address,
    image_entries,
    needs_clean_cache_erratum,
    run_image,
    symbol_names,
)
from pytest_altpatch.machine import Budget
from pytest_altpatch.machine.context import CpuContext
from pytest_altpatch.patchers.callbacks import CALLBACKS
from pytest_altpatch.patchers.contract import AltRegion, PatchEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher

#: Capability field that no dialect applies (masks an entry in the reference's table).
_NEVER: bytes = (0xFFFF).to_bytes(2, "little")


@dataclass(frozen=True)
class WordDifference:
    """One word where the image's result and the reference's differ."""

    address: int
    symbol: str
    image: int
    reference: int

    def render(self) -> str:
        """``address <symbol>: image <insn> / reference <insn>``."""
        mine = disassemble(self.image.to_bytes(4, "little"), self.address)[0].text
        theirs = disassemble(self.reference.to_bytes(4, "little"), self.address)[0].text
        return f"{self.address:#x} <{self.symbol}>: image {mine} / reference {theirs}"


@dataclass(frozen=True)
class CallbackSite:
    """A callback entry the registry does not know: compared with nothing."""

    index: int
    site: int
    callback: str
    before: bytes
    after: bytes


@dataclass(frozen=True)
class OracleResult:
    """The image run, the reference's count of changed words, and every difference."""

    run: ImageRun
    reference_words_changed: int
    reference_error: str | None
    differences: tuple[WordDifference, ...]
    unregistered_callbacks: tuple[CallbackSite, ...]

    @property
    def identical(self) -> bool:
        """No word differs and the reference did not fail."""
        return not self.differences and self.reference_error is None


def _callback_names(image: KernelImage, targets: set[int]) -> Mapping[int, str]:
    names = symbol_names(image)
    return {target: names.get(target, f"{target:#x}") for target in targets}


def reference_text(image: KernelImage, profile: TargetProfile, catalog: Catalog,
                   request: RunRequest) -> tuple[tuple[tuple[int, bytes], ...], str | None,
                                                 frozenset[int]]:
    """Run the reference dialect on the image's table; returns the executable sections
    after it, the error it ended with (or None) and the masked callback entries."""
    cpus = [cpu_config(c, i) for i, c in enumerate(request.cpus)]
    machine, layout = build_machine(
        image, cpus, percpu_size=0, schedule=request.schedule, seed=request.seed,
        budget=Budget(instructions=request.instruction_budget, seconds=request.seconds),
        clean_cache_erratum=needs_clean_cache_erratum(catalog, request.cpus))
    entries = image_entries(image, profile)
    names = _callback_names(image, {e.target for e in entries if e.is_callback})
    callbacks = {target: name for target, name in names.items() if name in CALLBACKS}
    masked = frozenset(e.index for e in entries
                       if e.is_callback and e.target not in callbacks)
    for entry in entries:
        if entry.index in masked:
            write_virtual(machine, entry.entry_address + 8, _NEVER)
    numbering = catalog.numberings[traits(profile.dialect).numbering_in(catalog.numberings)]
    start = min(s.va for s in image.elf.sections if s.content)
    end = max(s.end for s in image.elf.sections if s.content)
    env = PatchEnvironment(
        dialect=profile.dialect,
        region=AltRegion(table_start=image.symbol(profile.table_start),
                         table_end=image.symbol(profile.table_end), text_start=start,
                         text_end=end, alias_offset=None, text_phys=start),
        caps=request.caps, boot_caps=frozenset(), ncaps=profile.ncaps, ncpus=len(cpus),
        sync_va=layout.scratch_va,
        dcache_line=min(c.dminline_bytes for c in request.cpus),
        icache_line=min(c.iminline_bytes for c in request.cpus),
        callbacks=callbacks,
        cap_names={n: name for n in request.caps if (name := numbering.name(n)) is not None},
    )
    patcher = ReferencePatcher(profile.dialect)
    errors: list[str] = []

    def body(ctx: CpuContext) -> None:
        try:
            patcher.apply_alternatives_all(ctx, env)
        except AltpatchError as exc:
            errors.append(f"cpu{ctx.cpu}: {exc.render()}")

    for cpu in range(len(cpus)):
        machine.start_python(cpu, body)
    result = machine.run()
    if result.reason != "stopped" and not errors:
        errors.append(f"reference run ended: {result.reason}")
    errors.extend(f.render() for f in result.findings)
    errors.extend(f"cpu{c.cpu}: {c.exception.type}: {c.exception.message}"
                  for c in result.cpus if c.exception is not None)
    text = tuple((lo, machine.read_virtual(lo, hi - lo) or b"")
                 for lo, hi in image.executable_ranges())
    return text, (errors[0] if errors else None), masked


def compare_with_reference(image: KernelImage, profile: TargetProfile, catalog: Catalog,
                           request: RunRequest) -> OracleResult:
    """Run the image and the reference on the same CPUs and caps; diff the text."""
    run = run_image(image, profile, catalog, request)
    reference, error, masked = reference_text(image, profile, catalog, request)
    skipped = [(e.entry.site, e.entry.site + e.entry.site_len) for e in run.entries
               if e.index in masked]
    names = symbol_names(image)
    original = {start: image.elf.read(start, len(text)) or b""
                for start, text in run.text_after}
    differences: list[WordDifference] = []
    reference_changed = 0
    for (start, mine), (_, theirs) in zip(run.text_after, reference, strict=True):
        before = original[start]
        for offset in range(0, len(mine) - 3, 4):
            va = start + offset
            word_ref = theirs[offset:offset + 4]
            reference_changed += word_ref != before[offset:offset + 4]
            if mine[offset:offset + 4] == word_ref:
                continue
            if any(low <= va < high for low, high in skipped):
                continue
            differences.append(WordDifference(
                va, describe_address(names, va), int.from_bytes(mine[offset:offset + 4],
                                                                 "little"),
                int.from_bytes(word_ref, "little")))
    unregistered = tuple(
        CallbackSite(e.index, e.entry.site, names.get(e.entry.target, f"{e.entry.target:#x}"),
                     e.before, e.after)
        for e in run.entries if e.index in masked)
    return OracleResult(run, reference_changed, error, tuple(differences), unregistered)


__all__ = [
    "CallbackSite",
    "OracleResult",
    "WordDifference",
    "compare_with_reference",
    "reference_text",
]
