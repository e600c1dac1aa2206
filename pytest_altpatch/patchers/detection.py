"""The reference patcher's own capability detection and late-CPU check.

These are the patcher-side counterparts of :mod:`.capabilities` (the harness's
oracle), written the way a kernel does it: each CPU, as it comes up, reads its own
MIDR_EL1/REVIDR_EL1/ID registers and folds what it finds into the system's set, one
CPU at a time.  The harness judges the result against the case and never uses it to
patch, so a bug here shows as exactly one discrepancy.

Every question is one method, so a mutant changes exactly one answer (matches an
erratum on the boot CPU only, ignores REVIDR, treats a range end as exclusive...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pytest_altpatch.cases.model import (
    MIDR_RV_MASK,
    Erratum,
    ExtraCap,
    Feature,
    MidrRange,
    ctr_dminline_bytes,
)
from pytest_altpatch.dialects import traits
from pytest_altpatch.machine.sysregs import ID_REGISTERS

if TYPE_CHECKING:
    from pytest_altpatch.machine.context import CpuContext
    from pytest_altpatch.patchers.contract import (
        DetectionEnvironment,
        DetectionTables,
        LateCpuEnvironment,
    )

#: What a reading of an ID register the catalog names but the machine has no key for
#: gives (registers the CPU does not implement read as zero).
_UNREAD: Final = 0


class ReferenceDetection:
    """Mixin: ``detect_capabilities`` and ``verify_late_cpu`` for Linux and Xen rules."""

    dialect: str

    @property
    def _xen(self) -> bool:
        return traits(self.dialect).is_xen

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _register(ctx: CpuContext, name: str) -> int:
        if name == "ctr_el0" or name in ID_REGISTERS:
            return ctx.sysreg(name)
        return _UNREAD

    def _in_range(self, entry: MidrRange, midr: int, revidr: int) -> bool:
        """One MIDR range entry: model under its mask, both ends inclusive, REVIDR fixes."""
        if midr & entry.model_mask != entry.model & entry.model_mask:
            return False
        rv = midr & MIDR_RV_MASK
        if not entry.rv_min <= rv <= entry.rv_max:
            return False
        return not any(fix.rv == rv and revidr & fix.revidr_mask for fix in entry.fixed)

    def _erratum_matches(self, erratum: Erratum, midr: int, revidr: int) -> bool:
        return any(self._in_range(entry, midr, revidr) for entry in erratum.matches)

    def _feature_present(self, ctx: CpuContext, feature: Feature) -> bool:
        return feature.present(self._register(ctx, feature.register))

    # ------------------------------------------------------------------ deciding

    def _fold(self, scope: str, before: bool, here: bool, boot_cpu: bool) -> bool:
        """Whether a capability is on after this CPU, given it was ``before``."""
        if boot_cpu:
            return here
        if self._xen:
            return before or here  # Xen: any CPU sets a capability
        if scope == "boot-cpu":
            return before  # decided on the boot CPU alone
        if scope == "system-feature":
            return before and here  # every CPU must have it
        return before or here  # errata and weak-local features: any CPU

    def _should_detect(self, boot_cpu: bool) -> bool:
        """Whether this CPU's registers are consulted at all (every CPU's are)."""
        return True

    def detect_capabilities(self, ctx: CpuContext, env: DetectionEnvironment) -> frozenset[int]:
        """Fold this CPU's errata and features into the capabilities decided so far."""
        tables = env.tables
        boot_cpu = ctx.cpu == 0
        if not self._should_detect(boot_cpu):
            return env.decided
        midr, revidr = ctx.sysreg("midr_el1"), ctx.sysreg("revidr_el1")
        decided: set[int] = set()

        def fold(name: str, scope: str, here: bool) -> None:
            number = tables.numbers.get(name)
            if number is not None and self._fold(scope, number in env.decided, here, boot_cpu):
                decided.add(number)

        for erratum in tables.errata:
            fold(erratum.capability, erratum.scope,
                 self._erratum_matches(erratum, midr, revidr))
        for feature in tables.features:
            fold(feature.capability, feature.scope, self._feature_present(ctx, feature))
        for cap in tables.extra:
            decided.discard(tables.numbers.get(cap.name, -1))
            fold(cap.name, *self._extra_state(ctx, cap, tables, midr, revidr))
        return frozenset(decided)

    def _extra_state(self, ctx: CpuContext, cap: ExtraCap, tables: DetectionTables,
                     midr: int, revidr: int) -> tuple[str, bool]:
        """(scope, on for this CPU) of a case capability."""
        if cap.when is not None:
            return "boot-cpu", cap.when == "always"
        for erratum in tables.errata:
            if erratum.id == cap.erratum:
                return erratum.scope, self._erratum_matches(erratum, midr, revidr)
        for feature in tables.features:
            if feature.id == cap.feature:
                return feature.scope, self._feature_present(ctx, feature)
        return "boot-cpu", False

    # ------------------------------------------------------------------ hot-plug

    def verify_late_cpu(self, ctx: CpuContext, env: LateCpuEnvironment) -> str | None:
        """Linux: refuse a missing workaround or feature.  Xen: park on MIDR/line mismatch."""
        tables = env.tables
        if self._xen:
            if not env.hmp_unsafe and ctx.sysreg("midr_el1") != env.boot_midr:
                return "LATE_CPU_MIDR_MISMATCH"
            own = ctr_dminline_bytes(ctx.sysreg("ctr_el0"))
            if env.park_dcache_mismatch and own != ctr_dminline_bytes(env.boot_ctr):
                return "LATE_CPU_CACHE_LINE"
            return None
        midr, revidr = ctx.sysreg("midr_el1"), ctx.sysreg("revidr_el1")
        for erratum in tables.errata:
            number = tables.numbers.get(erratum.capability)
            if (number is not None and number not in env.caps
                    and not erratum.permitted_for_late_cpu
                    and self._erratum_matches(erratum, midr, revidr)):
                return "LATE_CPU_ERRATUM"
        for feature in tables.features:
            number = tables.numbers.get(feature.capability)
            if (number is not None and number in env.caps and not feature.optional_for_late_cpu
                    and not self._feature_present(ctx, feature)):
                return "LATE_CPU_MISSING_FEATURE"
        return None


__all__ = ["ReferenceDetection"]
