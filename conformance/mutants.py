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
from pytest_altpatch.a64.pcrel import decode_target, pc_relative_class
from pytest_altpatch.errors import Location
from pytest_altpatch.image.model import AltEntry
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import (
    LivepatchEnvironment,
    LivepatchFunction,
    PatchEnvironment,
)
from pytest_altpatch.patchers.reference import ReferencePatcher


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
