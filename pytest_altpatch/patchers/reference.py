"""The reference patcher: Linux and Xen semantics, one table row per dialect.

Dialects differ exactly where the real code differs: which PC-relative forms are
re-targeted, whether literals are refused, how callbacks are marked and whether they
depend on their capability, whether boot-CPU capabilities are patched in a first
pass, which cache-maintenance sequence follows the writes, and what happens when a
re-targeted field overflows (Linux masks the field silently; ``strict`` refuses).

All relocation is computed from the *executable* address of the site; all writes go
through a writable alias (Linux's linear map, or an alias the patcher maps itself as
Xen does).  The waiting CPUs spin on a plain flag, because the fancier primitives a
real kernel would use may be among the code being patched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

from pytest_altpatch import __version__
from pytest_altpatch.a64.classify import is_branch_imm, is_simd_fp_literal, uses_literal
from pytest_altpatch.a64.granule import page_base
from pytest_altpatch.a64.pcrel import PcRelClass, decode_target, pc_relative_class, retarget
from pytest_altpatch.cases.model import ctr_dminline_bytes, ctr_iminline_bytes
from pytest_altpatch.dialects import CB_BIT, DIALECTS, Dialect, is_dialect, traits
from pytest_altpatch.errors import EncodingError, Location, PatchError
from pytest_altpatch.image.alt_table import decode_alt_table
from pytest_altpatch.image.model import AltEntry
from pytest_altpatch.patchers.callbacks import CALLBACKS
from pytest_altpatch.patchers.detection import ReferenceDetection

if TYPE_CHECKING:
    from pytest_altpatch.machine.context import CpuContext
    from pytest_altpatch.patchers.contract import (
        LivepatchEnvironment,
        LivepatchFunction,
        PatchEnvironment,
    )

NOP: Final = 0xD503201F
B_OPCODE: Final = 0x14000000
#: Capability whose errata make DC CVAU insufficient (Cortex-A53 826319 and friends).
CLEAN_CACHE_CAP: Final = "ARM64_WORKAROUND_CLEAN_CACHE"


def read_entries(ctx: CpuContext, env: PatchEnvironment) -> tuple[AltEntry, ...]:
    """Read the region's table through ``ctx`` and resolve its self-relative entries.

    Only the layout is taken from the decoder; whether an entry is a callback, and
    whether it applies, is each dialect's own reading of ``cap_field``.
    """
    region = env.region
    raw = ctx.read(region.table_start, region.table_end - region.table_start)
    return decode_alt_table(raw, region.table_start, cast(Dialect, env.dialect), env.ncaps)


def _wrapped(cls: PcRelClass, offset: int) -> int:
    """``offset`` reduced into the field the way a masking encoder truncates it."""
    span = 1 << (cls.bits + cls.scale)
    return ((offset + span // 2) % span) - span // 2


class ReferencePatcher(ReferenceDetection):
    """The reference patcher for one dialect (detection and late-CPU check included)."""

    def __init__(self, dialect: str) -> None:
        if not is_dialect(dialect):
            raise PatchError("PATCHER_UNKNOWN", f"no reference dialect {dialect!r}",
                             hint=f"known: {', '.join(DIALECTS)}")
        #: The dialect's row of the dialect table: every rule this patcher follows.
        self.rules = traits(dialect)
        self.name = f"reference:{dialect}"
        self.version = __version__
        self.dialect = dialect
        self.features = self.rules.features
        #: Original words of each function a livepatch payload replaced, for revert.
        self._saved: dict[str, dict[str, bytes]] = {}

    # ------------------------------------------------------------------ entries

    def apply_boot_alternatives(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """First pass (two-pass dialects): boot-CPU-scope capabilities, on CPU0 only."""
        if self.rules.two_pass and ctx.cpu == 0:
            self._patch_region(ctx, env, env.boot_caps, maintain=True)

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """stop_machine body: CPU0 patches, the others spin on a plain flag then ISB."""
        if ctx.cpu != 0:
            while ctx.read32(env.sync_va) == 0:
                ctx.relax()
            ctx.isb()  # discard anything fetched before the patch became visible
            return
        mask = frozenset(range(env.ncaps + 1))
        if self.rules.two_pass:
            mask -= env.boot_caps  # no site is patched twice
        self._patch_region(ctx, env, mask, maintain=True)
        ctx.write32(env.sync_va, 1)

    def apply_alternatives_region(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Patch a payload's alternatives in place; the payload is not live yet."""
        maintain = self.rules.maintenance == "xen"  # Linux leaves it to the module loader
        self._patch_region(ctx, env, frozenset(range(env.ncaps + 1)), maintain=maintain)

    # ------------------------------------------------------------------ the loop

    def _patch_region(
        self, ctx: CpuContext, env: PatchEnvironment, mask: frozenset[int], *, maintain: bool
    ) -> None:
        region = env.region
        alias_va: int | None = None
        if not region.live:
            alias_offset = region.alias_offset or 0  # still writable where it lies
        elif region.alias_offset is None:
            alias_va = ctx.vmap(region.text_phys, region.text_end - region.text_start)
            alias_offset = alias_va - region.text_start
        else:
            alias_offset = region.alias_offset
        try:
            for entry in read_entries(ctx, env):
                if self._apply_entry(ctx, env, entry, mask, alias_offset) and maintain:
                    self._clean_site(ctx, env, entry)
            if maintain:
                self._finish_maintenance(ctx)
        finally:
            if alias_va is not None:
                ctx.vunmap(alias_va)

    def _decode_cap(self, cap_field: int, ncaps: int) -> tuple[int, bool]:
        marking = self.rules.callbacks
        if marking == "bit15":
            return cap_field & ~CB_BIT, bool(cap_field & CB_BIT)
        if marking == "ncaps":
            return cap_field, cap_field == ncaps
        return cap_field, False

    def _selected(self, cap: int, is_callback: bool, mask: frozenset[int],
                  env: PatchEnvironment) -> bool:
        if is_callback and not self.rules.conditional_callbacks:
            return cap in mask  # Xen, Linux 4.17-6.0: unconditional callbacks
        return cap < env.ncaps and cap in mask and cap in env.caps

    def _apply_entry(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry,
                     mask: frozenset[int], alias_offset: int) -> bool:
        cap, is_callback = self._decode_cap(entry.cap_field, env.ncaps)
        if not self._selected(cap, is_callback, mask, env):
            return False
        where = Location(site=entry.index, address=entry.site)
        nr_inst = entry.site_len // 4
        if is_callback:
            if entry.repl_len != 0:
                raise PatchError("CALLBACK_LENGTH",
                                 f"callback entry has replacement length {entry.repl_len}",
                                 location=where)
            name = env.callbacks.get(entry.target)
            callback = CALLBACKS.get(name) if name is not None else None
            if callback is None:
                raise PatchError("PATCHER_UNSUPPORTED",
                                 f"callback at {entry.target:#x} is not a registered callback",
                                 location=where)
            callback(ctx, env, entry.entry_address, entry.site, entry.site + alias_offset, nr_inst)
            return True
        if entry.site_len != entry.repl_len:
            raise PatchError("LENGTH_MISMATCH",
                             f"site is {entry.site_len} bytes, replacement {entry.repl_len}",
                             location=where)
        for slot in range(nr_inst):
            word = ctx.read32(entry.target + 4 * slot)
            new = self._relocated(word, entry, slot)
            ctx.write32(entry.site + alias_offset + 4 * slot, new)
        return True

    def _relocated(self, word: int, entry: AltEntry, slot: int) -> int:
        """The replacement word ``slot`` as it must read at the site."""
        repl_pc = entry.target + 4 * slot
        site_pc = entry.site + 4 * slot
        cls = pc_relative_class(word)
        if cls is None:
            return word
        where = Location(site=entry.index, address=site_pc)
        if is_branch_imm(word):
            target = decode_target(word, repl_pc)
            # The end is inclusive: a branch to just past the replacement lands just past
            # the site after copying, so it is internal and copied unchanged.
            if entry.target <= target <= entry.target + entry.repl_len:
                return word
            return self._encode(cls, word, site_pc, target, where)
        if cls.is_page and self.rules.adrp_reloc:
            return self._encode(cls, word, site_pc, decode_target(word, repl_pc), where)
        if self.rules.refuse_literals and uses_literal(word) and (
                self.rules.refuse_simd_fp_literals or not is_simd_fp_literal(word)):
            raise PatchError("LITERAL_IN_REPLACEMENT",
                             f"{cls.name} in a replacement cannot be relocated",
                             location=where)
        return word

    def _encode(self, cls: PcRelClass, word: int, site_pc: int, target: int,
                where: Location) -> int:
        if self.rules.out_of_range == "error":
            try:
                return retarget(word, site_pc, target)
            except EncodingError as exc:  # same code, located at the site
                raise PatchError(exc.code, exc.message, location=where) from None
        base = page_base(site_pc) if cls.is_page else site_pc
        goal = page_base(target) if cls.is_page else target
        return cls.encode_offset(word, _wrapped(cls, (goal - base) & ((1 << 64) - 1)))

    # ------------------------------------------------------------------ livepatch

    def apply_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        """Xen ``arch_livepatch_apply``: B new (or NOPs) at each old function, via an alias."""
        if self._wait_for_master(ctx, env):
            return
        planned = [(f, self._trampoline(f)) for f in env.functions]
        for function, _ in planned:  # every check before any write: nothing half-applied
            if function.expect is not None and \
                    ctx.read(function.old_addr, len(function.expect)) != function.expect:
                raise PatchError("EXPECTATION_FAILED",
                                 f"{function.name}: old bytes differ from the payload's "
                                 "expectation", location=Location(address=function.old_addr),
                                 phase="late")
        saved = {f.name: ctx.read(f.old_addr, len(words) * 4) for f, words in planned}
        self._write_functions(ctx, env, [(f, words) for f, words in planned])
        self._saved[env.payload] = saved
        ctx.write32(env.sync_va, 1)

    def revert_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        """Xen ``arch_livepatch_revert``: put the saved words back, via an alias."""
        if self._wait_for_master(ctx, env):
            return
        saved = self._saved.pop(env.payload, {})
        planned = [(f, [int.from_bytes(saved[f.name][i:i + 4], "little")
                        for i in range(0, len(saved[f.name]), 4)])
                   for f in env.functions if f.name in saved]
        self._write_functions(ctx, env, planned)
        ctx.write32(env.sync_va, 1)

    @staticmethod
    def _wait_for_master(ctx: CpuContext, env: LivepatchEnvironment) -> bool:
        """Non-master CPUs spin until released, then ISB (Xen 84c3ae30aa). True if waited."""
        if ctx.cpu == 0:
            return False
        while ctx.read32(env.sync_va) == 0:
            ctx.relax()
        ctx.isb()
        return True

    @staticmethod
    def _trampoline(function: LivepatchFunction) -> list[int]:
        """The words written over the old function, range-checked before any write."""
        where = Location(address=function.old_addr)
        if function.new_addr is None:
            if function.new_size % 4 or function.new_size > function.old_size:
                raise PatchError("PATCHER_UNSUPPORTED",
                                 f"{function.name}: cannot NOP {function.new_size} bytes",
                                 location=where, phase="late")
            return [NOP] * (function.new_size // 4)
        try:
            return [retarget(B_OPCODE, function.old_addr, function.new_addr)]
        except EncodingError as exc:
            raise PatchError(exc.code, f"{function.name}: {exc.message}", location=where,
                             phase="late") from None

    def _write_functions(self, ctx: CpuContext, env: LivepatchEnvironment,
                         planned: list[tuple[LivepatchFunction, list[int]]]) -> None:
        alias_va: int | None = None
        offset = env.alias_offset
        if offset is None:
            alias_va = ctx.vmap(env.text_phys, env.text_end - env.text_start)
            offset = alias_va - env.text_start
        try:
            for function, words in planned:
                for index, word in enumerate(words):
                    ctx.write32(function.old_addr + offset + 4 * index, word)
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

    # ------------------------------------------------------------------ caches

    def _line_sizes(self, ctx: CpuContext, env: PatchEnvironment) -> tuple[int, int]:
        if self.rules.line_source == "own":
            ctr = ctx.sysreg("ctr_el0")
            return ctr_dminline_bytes(ctr), ctr_iminline_bytes(ctr)
        return env.dcache_line, env.icache_line

    def _clean_site(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry) -> None:
        dline, iline = self._line_sizes(ctx, env)
        start, end = entry.site, entry.site + entry.site_len
        if self.rules.maintenance == "flush-icache-range":
            # flush_icache_range(): clean to PoU (clean+invalidate to PoC on CPUs with
            # the Cortex-A53 cache errata), then invalidate the I-side by VA.
            clean_cache = any(env.cap_names.get(n) == CLEAN_CACHE_CAP for n in env.caps)
            for va in range(start & -dline, end, dline):
                ctx.dc("civac" if clean_cache else "cvau", va)
            ctx.dsb("ish")
            for va in range(start & -iline, end, iline):
                ctx.ic("ivau", va)
            ctx.dsb("ish")
            ctx.isb()
            return
        if self.rules.maintenance == "xen":
            ctx.dsb("sy")
        for va in range(start & -dline, end, dline):
            ctx.dc("civac", va)
        if self.rules.maintenance == "xen":
            ctx.dsb("sy")

    def _finish_maintenance(self, ctx: CpuContext) -> None:
        if self.rules.maintenance == "flush-icache-range":
            return  # done per site
        if self.rules.maintenance == "civac-then-ialluis":
            ctx.dsb("ish")
        ctx.ic("ialluis")
        ctx.dsb("ish")
        ctx.isb()


__all__ = ["ReferencePatcher", "read_entries"]
