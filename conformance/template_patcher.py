"""A minimal Python alternatives patcher: copy this file to start your own.

It implements the ``linux-6.1`` rules in one pass (no ``two-pass`` feature): read the
``.altinstructions`` table, pick the entries whose capability is on, copy each
replacement over its site through the writable alias (re-targeting branches and ADRP
that leave the replacement, refusing other literals), run callbacks, then make the
new code visible to every CPU.  CPU0 patches; the other CPUs wait inside
stop_machine and synchronise their instruction fetch before they return.

Run it against the bundled corpus (cases needing a feature it does not declare are
reported as not applicable)::

    pytest --altpatch-corpus --altpatch-patcher conformance.template_patcher:MinimalPatcher

See conformance/writing-a-patcher.md for a walk through it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_altpatch.a64.classify import is_branch_imm, is_simd_fp_literal, uses_literal
from pytest_altpatch.a64.pcrel import decode_target, pc_relative_class, retarget
from pytest_altpatch.errors import Location, PatchError
from pytest_altpatch.patchers.callbacks import CALLBACKS

if TYPE_CHECKING:
    from pytest_altpatch.machine.context import CpuContext
    from pytest_altpatch.patchers.contract import PatchEnvironment

#: One table entry: s32 site offset, s32 replacement offset (each from its own field),
#: u16 capability, u8 site length, u8 replacement length; 12 bytes, little-endian.
ENTRY = struct.Struct("<iiHBB")
CALLBACK_BIT = 1 << 15  # linux-6.1 marks a callback entry by bit 15 of the capability


@dataclass(frozen=True)
class Entry:
    """One decoded ``.altinstructions`` entry (addresses are absolute VAs)."""

    index: int
    site: int
    replacement: int  # the callback's code for a callback entry
    cap: int
    is_callback: bool
    site_len: int
    repl_len: int


def read_table(ctx: CpuContext, env: PatchEnvironment) -> list[Entry]:
    """Decode the region's table; offsets are relative to the field that holds them."""
    region = env.region
    raw = ctx.read(region.table_start, region.table_end - region.table_start)
    entries = []
    for index in range(len(raw) // ENTRY.size):
        va = region.table_start + index * ENTRY.size
        site_off, repl_off, cap, site_len, repl_len = ENTRY.unpack_from(raw, index * ENTRY.size)
        entries.append(Entry(index, va + site_off, va + 4 + repl_off, cap & ~CALLBACK_BIT,
                             bool(cap & CALLBACK_BIT), site_len, repl_len))
    return entries


class MinimalPatcher:
    """``linux-6.1`` alternatives, one pass; a class, so the plugin instantiates it."""

    name = "minimal-template"
    version = "1.0"
    dialect = "linux-6.1"
    features = frozenset({
        "boot-alternatives", "branch-reloc", "adrp-reloc", "literal-refusal", "length-check",
        "callbacks", "cap-callbacks", "write-alias", "smp-rendezvous", "late-alternatives",
        "hotplug",
    })

    def apply_boot_alternatives(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Not called: the patcher does not declare ``two-pass``."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """stop_machine: CPU0 patches and then releases the others, which ISB."""
        if ctx.cpu != 0:
            # Spin on a plain word: the fancier primitives may be the code being patched.
            while ctx.read32(env.sync_va) == 0:
                ctx.relax()
            ctx.isb()  # drop anything fetched before the new code became visible
            return
        self._patch(ctx, env)
        ctx.write32(env.sync_va, 1)

    def apply_alternatives_region(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """A payload that is not live yet: patch in place; its loader does maintenance."""
        self._patch(ctx, env)

    # ------------------------------------------------------------------ the loop

    def _patch(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        region = env.region
        alias_va = None
        if region.live and region.alias_offset is None:  # no linear map: map our own alias
            alias_va = ctx.vmap(region.text_phys, region.text_end - region.text_start)
            alias = alias_va - region.text_start
        else:
            alias = region.alias_offset or 0  # a payload is still writable where it lies
        try:
            for entry in read_table(ctx, env):
                if entry.cap >= env.ncaps or entry.cap not in env.caps:
                    continue  # capability off: the site stays as it is
                self._apply(ctx, env, entry, alias)
                if region.live:
                    # Clean the site to the point of unification, by the smallest line.
                    line = env.dcache_line
                    for va in range(entry.site & -line, entry.site + entry.site_len, line):
                        ctx.dc("civac", va)
            if region.live:
                ctx.dsb("ish")
                ctx.ic("ialluis")  # invalidate every CPU's I-cache
                ctx.dsb("ish")
                ctx.isb()
        finally:
            if alias_va is not None:
                ctx.vunmap(alias_va)

    def _apply(self, ctx: CpuContext, env: PatchEnvironment, entry: Entry, alias: int) -> None:
        where = Location(site=entry.index, address=entry.site)
        nr_inst = entry.site_len // 4
        if entry.is_callback:
            if entry.repl_len:
                raise PatchError("CALLBACK_LENGTH", "a callback entry has a replacement",
                                 location=where)
            # env.callbacks maps the callback's address to its registered name; the
            # Python implementation writes the site itself, through the alias.
            callback = CALLBACKS.get(env.callbacks.get(entry.replacement, ""))
            if callback is None:
                raise PatchError("PATCHER_UNSUPPORTED", "unknown callback", location=where)
            callback(ctx, env, 0, entry.site, entry.site + alias, nr_inst)
            return
        if entry.site_len != entry.repl_len:
            raise PatchError("LENGTH_MISMATCH", "site and replacement lengths differ",
                             location=where)
        for slot in range(nr_inst):
            word = ctx.read32(entry.replacement + 4 * slot)
            new = self._moved(word, entry, slot, where)
            ctx.write32(entry.site + alias + 4 * slot, new)  # text itself is read-only

    @staticmethod
    def _moved(word: int, entry: Entry, slot: int, where: Location) -> int:
        """``word`` as it must read at the site, so it still means the same thing."""
        cls = pc_relative_class(word)
        if cls is None:
            return word  # not PC-relative: copied as it is
        old_pc, new_pc = entry.replacement + 4 * slot, entry.site + 4 * slot
        target = decode_target(word, old_pc)
        if is_branch_imm(word):
            if entry.replacement <= target <= entry.replacement + entry.repl_len:
                return word  # internal (the end is inclusive): moves with the code
            return retarget(word, new_pc, target)
        if cls.is_page:
            return retarget(word, new_pc, target)  # ADRP: same page from the site
        if uses_literal(word) and not is_simd_fp_literal(word):
            raise PatchError("LITERAL_IN_REPLACEMENT", f"{cls.name} cannot be moved",
                             location=where)
        return word  # LDR (literal, SIMD&FP): Linux copies it unchanged


__all__ = ["ENTRY", "Entry", "MinimalPatcher", "read_table"]
