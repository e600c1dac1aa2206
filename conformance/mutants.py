"""Mutant patchers: the reference patcher with one historical bug put back each.

The corpus is only as good as the bugs it catches.  Every mutant here reproduces a
bug that shipped in Linux or Xen (or the obvious variant of one); the test suite runs
the bundled corpus against each and requires at least one case to fail.  Use them as
``--altpatch-patcher conformance.mutants:NAME`` to see what a failure looks like.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from pytest_altpatch.a64.classify import is_branch_imm
from pytest_altpatch.a64.pcrel import PcRelClass, decode_target, pc_relative_class
from pytest_altpatch.errors import Location
from pytest_altpatch.image.model import AltEntry
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import (
    LivepatchEnvironment,
    LivepatchFunction,
    PatchEnvironment,
)
from pytest_altpatch.patchers.reference import ReferencePatcher, read_entries


class NoBranchRetarget(ReferencePatcher):
    """Linux <= 4.5: replacements memcpy'd, PC-relative branches left pointing nowhere."""

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        return word if is_branch_imm(word) else super()._relocated(word, entry, slot)


class NoAdrpRetarget(ReferencePatcher):
    """Linux 4.6-era rules in a 4.9+ kernel: ADRP copied, computing the wrong page."""

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        cls = pc_relative_class(word)
        if cls is not None and cls.is_page:
            return word
        return super()._relocated(word, entry, slot)


class InternalBranchesRetargeted(ReferencePatcher):
    """Linux 5679b2814219's regression: branches inside the replacement re-targeted too."""

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        if is_branch_imm(word):
            cls = pc_relative_class(word)
            assert cls is not None
            target = decode_target(word, entry.target + 4 * slot)
            where = Location(site=entry.index, address=entry.site + 4 * slot)
            return self._encode(cls, word, entry.site + 4 * slot, target, where)
        return super()._relocated(word, entry, slot)


class ExclusiveEndBound(ReferencePatcher):
    """A branch to just past the replacement treated as external (powerpc selftest bug)."""

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        if is_branch_imm(word):
            target = decode_target(word, entry.target + 4 * slot)
            if target == entry.target + entry.repl_len:
                cls = pc_relative_class(word)
                assert cls is not None
                return self._encode(cls, word, entry.site + 4 * slot, target,
                                    Location(site=entry.index))
        return super()._relocated(word, entry, slot)


class WaitersSkipIsb(ReferencePatcher):
    """Waiting CPUs leave stop_machine without a context synchronisation."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            super().apply_alternatives_all(ctx, env)
            return
        while ctx.read32(env.sync_va) == 0:
            ctx.relax()


class LivepatchWaitersSkipIsb(ReferencePatcher):
    """Xen before 84c3ae30aa: CPUs waiting out a livepatch apply did no ISB."""

    def apply_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        if ctx.cpu == 0:
            super().apply_livepatch(ctx, env)
            return
        while ctx.read32(env.sync_va) == 0:
            ctx.relax()


class RelocatesFromAlias(ReferencePatcher):
    """Xen 2017 (8c3c32c585): branch offsets computed from the write alias, not the site."""

    def _patch_region(self, ctx: CpuContext, env: PatchEnvironment, mask: frozenset[int], *,
                      maintain: bool) -> None:
        self._alias_offset = env.region.alias_offset or 0
        super()._patch_region(ctx, env, mask, maintain=maintain)

    def _apply_entry(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry,
                     mask: frozenset[int], alias_offset: int) -> bool:
        self._alias_offset = alias_offset
        return super()._apply_entry(ctx, env, entry, mask, alias_offset)

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        moved = replace(entry, site=entry.site + self._alias_offset)
        return super()._relocated(word, moved, slot)


class WritesThroughTextVa(ReferencePatcher):
    """Writes the read-only text directly, as Linux 4.6 did when text was writable."""

    def _patch_region(self, ctx: CpuContext, env: PatchEnvironment, mask: frozenset[int], *,
                      maintain: bool) -> None:
        direct = replace(env, region=replace(env.region, alias_offset=0))
        super()._patch_region(ctx, direct, mask, maintain=maintain)


class NoDcacheClean(ReferencePatcher):
    """Skips the per-site D-cache clean: the new words never reach the point of unification."""

    def _clean_site(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry) -> None:
        return


class NoIcacheInvalidate(ReferencePatcher):
    """Cleans each site but never invalidates the I-cache."""

    def _finish_maintenance(self, ctx: CpuContext) -> None:
        ctx.dsb("ish")
        ctx.isb()


class CallbacksIgnoreCap(ReferencePatcher):
    """Linux 6.1 layout read with 4.17-6.0 rules: every callback applied unconditionally."""

    def _selected(self, cap: int, is_callback: bool, mask: frozenset[int],
                  env: PatchEnvironment) -> bool:
        if is_callback:
            return True
        return super()._selected(cap, is_callback, mask, env)


class CapsBeyondNcapsApplied(ReferencePatcher):
    """No ``cap < NCAPS`` check: an out-of-range capability number counts as present."""

    def _selected(self, cap: int, is_callback: bool, mask: frozenset[int],
                  env: PatchEnvironment) -> bool:
        if cap >= env.ncaps and not is_callback:
            return True
        return super()._selected(cap, is_callback, mask, env)


class NoLengthCheck(ReferencePatcher):
    """No BUG_ON(alt_len != orig_len): the shorter length is copied."""

    def _apply_entry(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry,
                     mask: frozenset[int], alias_offset: int) -> bool:
        if entry.site_len != entry.repl_len and entry.repl_len:
            short = min(entry.site_len, entry.repl_len)
            entry = replace(entry, site_len=short, repl_len=short)
        return super()._apply_entry(ctx, env, entry, mask, alias_offset)


class LiteralsCopied(ReferencePatcher):
    """Copies ADR and literal loads from replacements instead of refusing them."""

    def __init__(self, dialect: str) -> None:
        super().__init__(dialect)
        self.rules = replace(self.rules, refuse_literals=False)


# --------------------------------------------------------------------------- encodings
# A re-targeting encoder that rebuilds the word from its opcode and loses a field, or a
# classifier that misses a class: each shows only with a replacement using that field.


class _EncoderDropsBits(ReferencePatcher):
    """Re-targeted words of ``classes`` lose ``lost`` bits (replaced by ``forced``)."""

    classes: frozenset[str] = frozenset()
    lost = 0
    forced = 0

    def _encode(self, cls: PcRelClass, word: int, site_pc: int, target: int,
                where: Location) -> int:
        encoded = super()._encode(cls, word, site_pc, target, where)
        if cls.name in self.classes:
            encoded = (encoded & ~self.lost) | self.forced
        return encoded


class CondFieldDropped(_EncoderDropsBits):
    """B.cond rebuilt as B.EQ: the condition field (bits 3:0) is lost."""

    classes = frozenset({"b.cond", "bc.cond"})
    lost = 0xF


class CompareRegisterDropped(_EncoderDropsBits):
    """CBZ/CBNZ rebuilt with Rt = 0 (the register field of the copy is not kept)."""

    classes = frozenset({"cbz", "cbnz"})
    lost = 0x1F


class TestBitB5Dropped(_EncoderDropsBits):
    """TBZ/TBNZ rebuilt without b5 (bit 31): bit numbers >= 32 test bit n - 32."""

    classes = frozenset({"tbz", "tbnz"})
    lost = 1 << 31


class TestRegisterDropped(_EncoderDropsBits):
    """TBZ/TBNZ rebuilt with Rt = 0."""

    classes = frozenset({"tbz", "tbnz"})
    lost = 0x1F


class CompareSfForced(_EncoderDropsBits):
    """CBZ/CBNZ always rebuilt as the 64-bit form (sf, bit 31, forced to 1)."""

    classes = frozenset({"cbz", "cbnz"})
    forced = 1 << 31


class BcReencodedAsBcond(_EncoderDropsBits):
    """BC.cond re-encoded as B.cond: bit 4 (the BC marker) cleared."""

    classes = frozenset({"bc.cond"})
    lost = 1 << 4


class BlBecomesB(_EncoderDropsBits):
    """BL re-targeted as a plain B: the link bit (31) is lost."""

    classes = frozenset({"bl"})
    lost = 1 << 31


class _ClassNotBranch(ReferencePatcher):
    """A classifier that does not know ``classes`` copies them unchanged."""

    classes: frozenset[str] = frozenset()

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        cls = pc_relative_class(word)
        if cls is not None and cls.name in self.classes:
            return word
        return super()._relocated(word, entry, slot)


class TestBranchesNotRelocated(_ClassNotBranch):
    """TBZ/TBNZ missing from the branch classifier (only B, BL, B.cond, CBZ/CBNZ)."""

    classes = frozenset({"tbz", "tbnz"})


class CbnzNotRelocated(_ClassNotBranch):
    """CBZ handled, CBNZ (op bit 24) missed by the classifier's mask."""

    classes = frozenset({"cbnz"})


class BcNotRelocated(_ClassNotBranch):
    """An encoder written before FEAT_HBC: BC.cond copied unchanged."""

    classes = frozenset({"bc.cond"})


class BlNotRelocated(_ClassNotBranch):
    """Only B is re-targeted; BL copied (a call to nowhere)."""

    classes = frozenset({"bl"})


class FirstWordIsExternal(ReferencePatcher):
    """The "internal" test excludes the replacement's first word (``repl < target``)."""

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        if is_branch_imm(word) and decode_target(word, entry.target + 4 * slot) == entry.target:
            cls = pc_relative_class(word)
            assert cls is not None
            return self._encode(cls, word, entry.site + 4 * slot, entry.target,
                                Location(site=entry.index))
        return super()._relocated(word, entry, slot)


class StrictTruncates(ReferencePatcher):
    """strict without its range check: an out-of-range offset wraps like Linux's."""

    def __init__(self, dialect: str) -> None:
        super().__init__(dialect)
        self.rules = replace(self.rules, out_of_range="truncate")


class AdrpPageFromSiteStart(ReferencePatcher):
    """ADRP's page delta counted from the site's first word, not the ADRP's own slot."""

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        cls = pc_relative_class(word)
        if cls is not None and cls.is_page:
            target = decode_target(word, entry.target + 4 * slot)
            return self._encode(cls, word, entry.site, target, Location(site=entry.index))
        return super()._relocated(word, entry, slot)


class AdrpByteDelta(ReferencePatcher):
    """ADRP re-targeted by the byte distance, not by page: (target - site) >> 12."""

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        cls = pc_relative_class(word)
        if cls is not None and cls.is_page:
            page = decode_target(word, entry.target + 4 * slot)
            site_pc = entry.site + 4 * slot
            delta = ((page - site_pc) >> 12) << 12
            return cls.encode_offset(word, delta)
        return super()._relocated(word, entry, slot)


class _LiteralRefusalMisses(ReferencePatcher):
    """A literal check that does not know ``classes``: they are copied."""

    classes: frozenset[str] = frozenset()

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        cls = pc_relative_class(word)
        if cls is not None and cls.name in self.classes:
            return word
        return super()._relocated(word, entry, slot)


class LdrswNotRefused(_LiteralRefusalMisses):
    """The literal check knows LDR (literal) but not LDRSW (literal)."""

    classes = frozenset({"ldrsw"})


class PrfmNotRefused(_LiteralRefusalMisses):
    """The literal check does not know PRFM (literal)."""

    classes = frozenset({"prfm"})


class LiteralRefusalXOnly(_LiteralRefusalMisses):
    """Only 64-bit LDR (literal) is refused; the W form is copied."""

    classes = frozenset({"ldr.w"})


# --------------------------------------------------------------------------- table order


class PatchedSiteSkipped(ReferencePatcher):
    """A site already patched by an earlier entry is skipped (first applied wins)."""

    def _patch_region(self, ctx: CpuContext, env: PatchEnvironment, mask: frozenset[int], *,
                      maintain: bool) -> None:
        self._done: set[int] = set()
        super()._patch_region(ctx, env, mask, maintain=maintain)

    def _apply_entry(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry,
                     mask: frozenset[int], alias_offset: int) -> bool:
        if entry.site in self._done:
            return False
        applied = super()._apply_entry(ctx, env, entry, mask, alias_offset)
        if applied:
            self._done.add(entry.site)
        return applied


class EntriesInReverse(ReferencePatcher):
    """The table walked from its end (so the earliest entry for a site wins)."""

    def _patch_region(self, ctx: CpuContext, env: PatchEnvironment, mask: frozenset[int], *,
                      maintain: bool) -> None:
        region = env.region
        alias_va = None
        if region.live and region.alias_offset is None:
            alias_va = ctx.vmap(region.text_phys, region.text_end - region.text_start)
            alias_offset = alias_va - region.text_start
        else:
            alias_offset = region.alias_offset or 0
        try:
            for entry in reversed(read_entries(ctx, env)):
                if self._apply_entry(ctx, env, entry, mask, alias_offset) and maintain:
                    self._clean_site(ctx, env, entry)
            if maintain:
                self._finish_maintenance(ctx)
        finally:
            if alias_va is not None:
                ctx.vunmap(alias_va)


class CallbacksAfterPlainEntries(ReferencePatcher):
    """Plain entries first, callbacks in a second walk: a later plain entry loses."""

    def _apply_entry(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry,
                     mask: frozenset[int], alias_offset: int) -> bool:
        _, is_callback = self._decode_cap(entry.cap_field, env.ncaps)
        if is_callback and not getattr(self, "_second_walk", False):
            self._deferred.append(entry)
            return False
        return super()._apply_entry(ctx, env, entry, mask, alias_offset)

    def _patch_region(self, ctx: CpuContext, env: PatchEnvironment, mask: frozenset[int], *,
                      maintain: bool) -> None:
        self._deferred: list[AltEntry] = []
        self._second_walk = False
        super()._patch_region(ctx, env, mask, maintain=False)
        self._second_walk = True
        alias = env.region.alias_offset
        if alias is None:
            alias_va = ctx.vmap(env.region.text_phys, env.region.text_end - env.region.text_start)
            alias = alias_va - env.region.text_start
        else:
            alias_va = None
        try:
            for entry in self._deferred:
                super()._apply_entry(ctx, env, entry, mask, alias)
            if maintain:
                for entry in read_entries(ctx, env):
                    self._clean_site(ctx, env, entry)
                self._finish_maintenance(ctx)
        finally:
            if alias_va is not None:
                ctx.vunmap(alias_va)
            self._second_walk = False


# --------------------------------------------------------------------------- caches


class CleansFirstLineOnly(ReferencePatcher):
    """One DC per site, at the site's first word: a site straddling a line is half clean."""

    def _clean_site(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry) -> None:
        ctx.dc("civac", entry.site)


class DcacheStrideFromIline(ReferencePatcher):
    """The D-side clean steps by the I-line size."""

    def _line_sizes(self, ctx: CpuContext, env: PatchEnvironment) -> tuple[int, int]:
        _, iline = super()._line_sizes(ctx, env)
        return iline, iline


class IcacheStrideFromDline(ReferencePatcher):
    """IC IVAU steps by the D-line size (Linux 4.x flush_icache_range)."""

    def _line_sizes(self, ctx: CpuContext, env: PatchEnvironment) -> tuple[int, int]:
        dline, _ = super()._line_sizes(ctx, env)
        return dline, dline


class LineSizeFromCpu0(ReferencePatcher):
    """Line sizes read from the patching CPU's own CTR_EL0, not the system minimum."""

    def __init__(self, dialect: str) -> None:
        super().__init__(dialect)
        self.rules = replace(self.rules, line_source="own")


class SkipsIcWhenOwnDic(ReferencePatcher):
    """I-cache invalidation skipped because the patching CPU reports CTR_EL0.DIC=1."""

    def _finish_maintenance(self, ctx: CpuContext) -> None:
        if ctx.sysreg("ctr_el0") & (1 << 29):
            ctx.dsb("ish")
            ctx.isb()
            return
        super()._finish_maintenance(ctx)


class LocalIcacheInvalidate(ReferencePatcher):
    """IC IALLU (this CPU only) where IC IALLUIS is needed: other CPUs keep stale lines."""

    def _finish_maintenance(self, ctx: CpuContext) -> None:
        if self.rules.maintenance == "civac-then-ialluis":
            ctx.dsb("ish")
        ctx.ic("iallu")
        ctx.dsb("ish")
        ctx.isb()


class CleanCacheErratumIgnored(ReferencePatcher):
    """Linux 4.x flush_icache_range with DC CVAU although ARM64_WORKAROUND_CLEAN_CACHE is on."""

    def _clean_site(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry) -> None:
        plain = replace(env, cap_names={})
        super()._clean_site(ctx, plain, entry)


# --------------------------------------------------------------------------- rendezvous
# These pass every item whose patching CPU finishes before the others are scheduled
# (``rr:100``); the default ``pct:0`` runs the waiting CPUs ahead of CPU0 and fails them.


class WaitersLeaveWithoutWaiting(ReferencePatcher):
    """Linux before ef5e724b25c9 (v4.7): secondaries left stop_machine at once."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            super().apply_alternatives_all(ctx, env)
            return
        ctx.isb()


class WaitersIsbBeforeWaiting(ReferencePatcher):
    """The waiter's ISB comes before the spin, so it synchronises before the patch."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            super().apply_alternatives_all(ctx, env)
            return
        ctx.isb()
        while ctx.read32(env.sync_va) == 0:
            ctx.relax()


class WaitersCheckOnce(ReferencePatcher):
    """``if`` for ``while``: a waiter that finds the flag clear leaves anyway."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            super().apply_alternatives_all(ctx, env)
            return
        if ctx.read32(env.sync_va) == 0:
            ctx.relax()
        ctx.isb()


class _ReleaseEarly(ReferencePatcher):
    """CPU0 writes the release flag at ``release_point`` of its maintenance sequence."""

    release_point = "before-maintenance"
    _sync_va: int | None = None  # set while CPU0 is inside stop_machine

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu != 0:
            super().apply_alternatives_all(ctx, env)
            return
        self._sync_va = env.sync_va
        try:
            super().apply_alternatives_all(ctx, env)
        finally:
            self._sync_va = None

    def _release(self, ctx: CpuContext, point: str) -> None:
        if point == self.release_point and ctx.cpu == 0 and self._sync_va is not None:
            ctx.write32(self._sync_va, 1)

    def _patch_region(self, ctx: CpuContext, env: PatchEnvironment, mask: frozenset[int], *,
                      maintain: bool) -> None:
        self._release(ctx, "before-patching")
        super()._patch_region(ctx, env, mask, maintain=maintain)

    def _finish_maintenance(self, ctx: CpuContext) -> None:
        self._release(ctx, "before-maintenance")
        if self.release_point != "before-final-dsb":
            super()._finish_maintenance(ctx)
            return
        if self.rules.maintenance == "civac-then-ialluis":
            ctx.dsb("ish")
        ctx.ic("ialluis")
        self._release(ctx, "before-final-dsb")
        ctx.dsb("ish")
        ctx.isb()


class ReleaseBeforeMaintenance(_ReleaseEarly):
    """The patching CPU releases the flag after its writes, before IC/DSB/ISB."""

    release_point = "before-maintenance"


class ReleaseBeforeFinalDsb(_ReleaseEarly):
    """Released after IC IALLUIS but before the DSB that completes it."""

    release_point = "before-final-dsb"


class ReleaseBeforePatching(_ReleaseEarly):
    """The flag means "entered" rather than "done": released before any write."""

    release_point = "before-patching"


class LivepatchWaitersLeaveEarly(ReferencePatcher):
    """Xen livepatch without a quiesce: CPUs other than the master return at once."""

    def apply_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        if ctx.cpu == 0:
            super().apply_livepatch(ctx, env)
            return
        ctx.isb()


class LivepatchReleaseBeforeMaintenance(ReferencePatcher):
    """The livepatch master releases the others before its cache maintenance."""

    def _write_functions(self, ctx: CpuContext, env: LivepatchEnvironment,
                         planned: list[tuple[LivepatchFunction, list[int]]]) -> None:
        alias_va = ctx.vmap(env.text_phys, env.text_end - env.text_start) \
            if env.alias_offset is None else None
        offset = env.alias_offset if alias_va is None else alias_va - env.text_start
        try:
            for function, words in planned:
                for index, word in enumerate(words):
                    ctx.write32(function.old_addr + offset + 4 * index, word)
            ctx.write32(env.sync_va, 1)
            for function, words in planned:
                end = function.old_addr + 4 * len(words)
                for va in range(function.old_addr & -env.dcache_line, end, env.dcache_line):
                    ctx.dc("civac", va)
            ctx.dsb("ish")
            ctx.ic("ialluis")
            ctx.dsb("ish")
            ctx.isb()
        finally:
            if alias_va is not None:
                ctx.vunmap(alias_va)


@dataclass(frozen=True)
class Mutant:
    """A mutant, the dialect it runs as, and the bug it puts back."""

    name: str
    make: Callable[[], ReferencePatcher]
    bug: str


def _as(cls: type[ReferencePatcher], dialect: str) -> Callable[[], ReferencePatcher]:
    def make() -> ReferencePatcher:
        patcher = cls(dialect)
        patcher.name = f"mutant:{cls.__name__}:{dialect}"
        return patcher
    return make


MUTANTS: Final[Mapping[str, Mutant]] = {
    m.name: m for m in (
        Mutant("no-branch-retarget", _as(NoBranchRetarget, "linux-6.1"),
               "Linux <= 4.5 copied replacements without re-targeting branches"),
        Mutant("no-adrp-retarget", _as(NoAdrpRetarget, "linux-6.1"),
               "ADRP copied from the replacement (fixed in Linux 4.9)"),
        Mutant("internal-branches-retargeted", _as(InternalBranchesRetargeted, "linux-6.1"),
               "Linux 5679b2814219: internal branches treated as external"),
        Mutant("exclusive-end-bound", _as(ExclusiveEndBound, "linux-6.1"),
               "branch to the end of the replacement treated as external"),
        Mutant("waiters-skip-isb", _as(WaitersSkipIsb, "linux-6.1"),
               "CPUs waiting in stop_machine return without ISB"),
        Mutant("livepatch-waiters-skip-isb", _as(LivepatchWaitersSkipIsb, "xen-4.17"),
               "Xen before 84c3ae30aa: no ISB on CPUs waiting out a livepatch apply"),
        Mutant("relocates-from-alias", _as(RelocatesFromAlias, "xen-4.17"),
               "Xen 8c3c32c585: offsets computed from the vmap alias"),
        Mutant("writes-through-text-va", _as(WritesThroughTextVa, "linux-6.1"),
               "writes read-only text directly instead of through an alias"),
        Mutant("no-dcache-clean", _as(NoDcacheClean, "linux-6.1"),
               "no D-cache clean of patched lines"),
        Mutant("no-icache-invalidate", _as(NoIcacheInvalidate, "linux-6.1"),
               "no I-cache invalidation after patching"),
        Mutant("callbacks-ignore-cap", _as(CallbacksIgnoreCap, "linux-6.1"),
               "6.1 callbacks applied although their capability is off"),
        Mutant("caps-beyond-ncaps-applied", _as(CapsBeyondNcapsApplied, "linux-6.1"),
               "a capability number >= NCAPS treated as present"),
        Mutant("no-length-check", _as(NoLengthCheck, "linux-6.1"),
               "site and replacement lengths not compared"),
        Mutant("literals-copied", _as(LiteralsCopied, "linux-6.1"),
               "ADR / literal loads in replacements copied instead of refused"),
        Mutant("waiters-leave-without-waiting", _as(WaitersLeaveWithoutWaiting, "linux-6.1"),
               "Linux before ef5e724b25c9: secondaries return from stop_machine at once"),
        Mutant("waiters-isb-before-waiting", _as(WaitersIsbBeforeWaiting, "linux-6.1"),
               "waiters ISB once, then spin: the ISB precedes the patch"),
        Mutant("waiters-check-once", _as(WaitersCheckOnce, "linux-6.1"),
               "waiters test the release flag once instead of spinning on it"),
        Mutant("release-before-maintenance", _as(ReleaseBeforeMaintenance, "linux-6.1"),
               "patching CPU releases the flag before IC/DSB/ISB complete"),
        Mutant("release-before-final-dsb", _as(ReleaseBeforeFinalDsb, "linux-6.1"),
               "flag released between IC IALLUIS and the DSB that completes it"),
        Mutant("release-before-patching", _as(ReleaseBeforePatching, "linux-6.1"),
               "flag released on entry, before any write"),
        Mutant("xen-release-before-maintenance", _as(ReleaseBeforeMaintenance, "xen-4.17"),
               "Xen master releases the others before invalidating the I-cache"),
        Mutant("livepatch-waiters-leave-early", _as(LivepatchWaitersLeaveEarly, "xen-4.17"),
               "livepatch without quiescing: other CPUs return at once"),
        Mutant("livepatch-release-before-maintenance",
               _as(LivepatchReleaseBeforeMaintenance, "xen-4.17"),
               "livepatch master releases the others before its cache maintenance"),
        Mutant("cond-field-dropped", _as(CondFieldDropped, "linux-6.1"),
               "B.cond/BC.cond re-encoded with cond = 0 (EQ)"),
        Mutant("compare-register-dropped", _as(CompareRegisterDropped, "linux-6.1"),
               "CBZ/CBNZ re-encoded with Rt = 0"),
        Mutant("test-bit-b5-dropped", _as(TestBitB5Dropped, "linux-6.1"),
               "TBZ/TBNZ re-encoded without b5: bit numbers >= 32 lose 32"),
        Mutant("test-register-dropped", _as(TestRegisterDropped, "linux-6.1"),
               "TBZ/TBNZ re-encoded with Rt = 0"),
        Mutant("compare-sf-forced", _as(CompareSfForced, "linux-6.1"),
               "CBZ/CBNZ always re-encoded as the X form"),
        Mutant("bc-reencoded-as-bcond", _as(BcReencodedAsBcond, "linux-6.1"),
               "BC.cond (FEAT_HBC) re-encoded as B.cond"),
        Mutant("bl-becomes-b", _as(BlBecomesB, "linux-6.1"),
               "BL re-targeted as B: the call never returns"),
        Mutant("test-branches-not-relocated", _as(TestBranchesNotRelocated, "linux-6.1"),
               "TBZ/TBNZ missing from the branch classifier"),
        Mutant("cbnz-not-relocated", _as(CbnzNotRelocated, "linux-6.1"),
               "CBNZ missing from the branch classifier"),
        Mutant("bc-not-relocated", _as(BcNotRelocated, "linux-6.1"),
               "BC.cond (Armv8.8 FEAT_HBC) unknown to the classifier"),
        Mutant("bl-not-relocated", _as(BlNotRelocated, "xen-4.17"),
               "BL copied unchanged, only B re-targeted"),
        Mutant("first-word-is-external", _as(FirstWordIsExternal, "linux-6.1"),
               "internal test excludes the replacement's first word (retry loops break)"),
        Mutant("strict-truncates", _as(StrictTruncates, "strict"),
               "strict wraps out-of-range offsets instead of refusing them"),
        Mutant("adrp-page-from-site-start", _as(AdrpPageFromSiteStart, "linux-6.1"),
               "ADRP page delta counted from the site's first word"),
        Mutant("adrp-byte-delta", _as(AdrpByteDelta, "linux-4.9"),
               "ADRP re-targeted by byte distance instead of page distance"),
        Mutant("ldrsw-not-refused", _as(LdrswNotRefused, "linux-6.1"),
               "LDRSW (literal) not recognised as a literal load"),
        Mutant("prfm-not-refused", _as(PrfmNotRefused, "linux-6.1"),
               "PRFM (literal) not recognised as a literal load"),
        Mutant("literal-refusal-x-only", _as(LiteralRefusalXOnly, "linux-4.9"),
               "only 64-bit LDR (literal) refused"),
        Mutant("patched-site-skipped", _as(PatchedSiteSkipped, "linux-6.1"),
               "a site already patched is skipped: the first entry wins"),
        Mutant("entries-in-reverse", _as(EntriesInReverse, "xen-4.17"),
               "table walked from its end: the earliest entry for a site wins"),
        Mutant("callbacks-after-plain-entries", _as(CallbacksAfterPlainEntries, "linux-6.1"),
               "callbacks run in a second walk after every plain entry"),
        Mutant("cleans-first-line-only", _as(CleansFirstLineOnly, "linux-6.1"),
               "one DC per site: a site straddling a line is half cleaned"),
        Mutant("dcache-stride-from-iline", _as(DcacheStrideFromIline, "linux-6.1"),
               "D-cache clean stepped by the I-line size"),
        Mutant("icache-stride-from-dline", _as(IcacheStrideFromDline, "linux-4.9"),
               "IC IVAU stepped by the D-line size"),
        Mutant("line-size-from-cpu0", _as(LineSizeFromCpu0, "linux-4.9"),
               "line size from CPU0's CTR_EL0, not the system minimum (before Linux v4.10)"),
        Mutant("skips-ic-when-own-dic", _as(SkipsIcWhenOwnDic, "linux-6.1"),
               "IC skipped because the patching CPU has DIC=1"),
        Mutant("local-icache-invalidate", _as(LocalIcacheInvalidate, "linux-6.1"),
               "IC IALLU (local) instead of IC IALLUIS (inner shareable)"),
        Mutant("clean-cache-erratum-ignored", _as(CleanCacheErratumIgnored, "linux-4.9"),
               "DC CVAU on a Cortex-A53 needing ARM64_WORKAROUND_CLEAN_CACHE"),
    )
}

#: The rendezvous-ordering family: bugs only a schedule that runs the waiting CPUs
#: ahead of the patching one can show.
RENDEZVOUS_MUTANTS: Final = frozenset({
    "waiters-skip-isb", "livepatch-waiters-skip-isb", "waiters-leave-without-waiting",
    "waiters-isb-before-waiting", "waiters-check-once", "release-before-maintenance",
    "release-before-final-dsb", "release-before-patching", "xen-release-before-maintenance",
    "livepatch-waiters-leave-early", "livepatch-release-before-maintenance",
})


def __getattr__(name: str) -> ReferencePatcher:
    """``conformance.mutants:no_branch_retarget`` style access for ``--altpatch-patcher``."""
    key = name.replace("_", "-")
    if key in MUTANTS:
        return MUTANTS[key].make()
    raise AttributeError(name)


__all__ = ["MUTANTS", "RENDEZVOUS_MUTANTS", "Mutant"]
