"""Mutants that only the harness's newer observations catch.

Each is the reference patcher with one historical bug put back, in the parts the
patcher decides itself since the ``cpu-detection`` and ``late-cpu-check`` entries
(capability detection, the hot-plug check) and in what the harness watches besides
the text (aliases left mapped, writes to memory the harness owns, the state between
the boot passes).  ``tests/mutants`` requires a bundled case to fail each under the
default options.  Use them as ``--altpatch-patcher conformance.mutants_harness:NAME``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final, cast

from conformance.mutants import Mutant, _as
from pytest_altpatch.cases.model import MIDR_RV_MASK, MidrRange
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import LateCpuEnvironment, PatchEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher

# --------------------------------------------------------------------------- detection


class BootCpuOnlyDetection(ReferencePatcher):
    """Xen before 2018: errata checked on the boot CPU only, secondaries never read."""

    def _should_detect(self, boot_cpu: bool) -> bool:
        return boot_cpu


class FeatureOnAnyCpu(ReferencePatcher):
    """A system feature turned on when any CPU has it (not lower-safe over all CPUs)."""

    def _fold(self, scope: str, before: bool, here: bool, boot_cpu: bool) -> bool:
        if scope == "system-feature" and not boot_cpu:
            return before or here
        return super()._fold(scope, before, here, boot_cpu)


class BootCpuFeatureOnEveryCpu(ReferencePatcher):
    """A boot-CPU-scope feature (BTI) required of every CPU, as if a system feature."""

    def _fold(self, scope: str, before: bool, here: bool, boot_cpu: bool) -> bool:
        if scope == "boot-cpu" and not boot_cpu:
            return before and here
        return super()._fold(scope, before, here, boot_cpu)


class ErratumOnEveryCpu(ReferencePatcher):
    """An erratum workaround enabled only when every CPU needs it."""

    def _fold(self, scope: str, before: bool, here: bool, boot_cpu: bool) -> bool:
        if scope == "local-cpu-erratum" and not boot_cpu:
            return before and here
        return super()._fold(scope, before, here, boot_cpu)


class RevidrIgnored(ReferencePatcher):
    """MIDR_FIXED ignored: a revision REVIDR marks as fixed still gets the workaround."""

    def _in_range(self, entry: MidrRange, midr: int, revidr: int) -> bool:
        return super()._in_range(entry, midr, 0)


class MidrRangeEndExclusive(ReferencePatcher):
    """The last affected revision treated as fixed (``rv < rv_max``)."""

    def _in_range(self, entry: MidrRange, midr: int, revidr: int) -> bool:
        if (midr & MIDR_RV_MASK) == entry.rv_max:
            return False
        return super()._in_range(entry, midr, revidr)


class MidrRangeEndOnePast(ReferencePatcher):
    """The revision after the last affected one matched too (``rv <= rv_max + 1``)."""

    def _in_range(self, entry: MidrRange, midr: int, revidr: int) -> bool:
        rv = midr & MIDR_RV_MASK
        if rv == entry.rv_max + 1 and entry.rv_max != MIDR_RV_MASK:
            return super()._in_range(entry, midr - 1, revidr)
        return super()._in_range(entry, midr, revidr)


# --------------------------------------------------------------------------- hot-plug


class XenLateCpuLineSizeUnchecked(ReferencePatcher):
    """Xen: a hot-plugged CPU with another D-cache line size is not parked."""

    def verify_late_cpu(self, ctx: CpuContext, env: LateCpuEnvironment) -> str | None:
        code = super().verify_late_cpu(ctx, env)
        return None if code == "LATE_CPU_CACHE_LINE" else code


class LateCpuErrataUnchecked(ReferencePatcher):
    """Linux before 6a6efbb45b7d: a hot-plugged CPU's errata were never verified."""

    def verify_late_cpu(self, ctx: CpuContext, env: LateCpuEnvironment) -> str | None:
        code = super().verify_late_cpu(ctx, env)
        return None if code == "LATE_CPU_ERRATUM" else code


# ----------------------------------------------------------- harness observations


class _KeepsAliases:
    """A context whose ``vunmap`` does nothing (every other operation passes through)."""

    def __init__(self, ctx: CpuContext) -> None:
        self._ctx = ctx

    def __getattr__(self, name: str) -> object:
        return getattr(self._ctx, name)

    def vunmap(self, va: int) -> None:
        """Forget to unmap."""


class VmapNeverUnmapped(ReferencePatcher):
    """Xen: the writable vmap alias of text is never unmapped after patching."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        super().apply_alternatives_all(cast(CpuContext, _KeepsAliases(ctx)), env)


class RendezvousArray(ReferencePatcher):
    """Treats the one rendezvous word as a per-CPU array of arrival flags."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        ctx.write32(env.sync_va - 4 * ctx.cpu, 1)  # "my slot", below the word for cpu > 0
        if ctx.cpu == 0:
            ctx.write32(env.sync_va, 0)
        super().apply_alternatives_all(ctx, env)


# --------------------------------------------------------------------------- two passes


class NoBootCpuPass(ReferencePatcher):
    """Skips the boot-CPU pass and patches every capability under stop_machine: the end
    state is right, but the boot CPU ran unpatched boot-scope code (BTI) meanwhile."""

    def apply_boot_alternatives(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        return

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        super().apply_alternatives_all(ctx, replace(env, boot_caps=frozenset()))


class EverythingInBootCpuPass(ReferencePatcher):
    """Patches every capability CPU0 has in the boot-CPU pass, before the secondaries
    could veto a system feature."""

    def apply_boot_alternatives(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        super().apply_boot_alternatives(ctx, replace(env, boot_caps=env.caps))


# --------------------------------------------------------------------------- modules


class ModuleBootCpuCapsOnly(ReferencePatcher):
    """Module alternatives patched with the boot-CPU pass's capabilities only, so an
    erratum that only a LITTLE core has is missed in every module."""

    def apply_alternatives_region(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        super().apply_alternatives_region(ctx, replace(env, caps=env.boot_caps))


HARNESS_MUTANTS: Final[Mapping[str, Mutant]] = {
    m.name: m for m in (
        Mutant("xen-boot-cpu-only-detection", _as(BootCpuOnlyDetection, "xen-4.17"),
               "Xen before 2018: capabilities detected from the boot CPU's registers only"),
        Mutant("boot-cpu-only-detection", _as(BootCpuOnlyDetection, "linux-6.1"),
               "secondary CPUs' errata and features never detected"),
        Mutant("feature-on-any-cpu", _as(FeatureOnAnyCpu, "linux-6.1"),
               "a system feature enabled although one boot CPU lacks it"),
        Mutant("boot-cpu-feature-on-every-cpu", _as(BootCpuFeatureOnEveryCpu, "linux-6.1"),
               "a boot-CPU-scope feature (BTI) required of the secondaries too"),
        Mutant("erratum-on-every-cpu", _as(ErratumOnEveryCpu, "linux-6.1"),
               "an erratum workaround enabled only if every CPU is affected"),
        Mutant("revidr-ignored", _as(RevidrIgnored, "linux-6.1"),
               "REVIDR fix bits ignored (workaround on a fixed Cortex-A53 r0p4)"),
        Mutant("midr-range-end-exclusive", _as(MidrRangeEndExclusive, "linux-6.1"),
               "the last affected revision of an erratum range not matched"),
        Mutant("xen-midr-range-end-exclusive", _as(MidrRangeEndExclusive, "xen-4.17"),
               "Xen: the last affected revision of an erratum range not matched"),
        Mutant("midr-range-end-one-past", _as(MidrRangeEndOnePast, "linux-6.1"),
               "the first fixed revision after an erratum range matched"),
        Mutant("xen-late-cpu-line-size-unchecked",
               _as(XenLateCpuLineSizeUnchecked, "xen-4.17"),
               "Xen: a late CPU with a different D-cache line size not parked"),
        Mutant("late-cpu-errata-unchecked", _as(LateCpuErrataUnchecked, "linux-6.1"),
               "Linux before 6a6efbb45b7d: hot-plugged CPUs' errata not verified"),
        Mutant("no-boot-cpu-pass", _as(NoBootCpuPass, "linux-6.1"),
               "two-pass kernel without the boot-CPU pass (all patched in stop_machine)"),
        Mutant("everything-in-boot-cpu-pass", _as(EverythingInBootCpuPass, "linux-6.1"),
               "every capability of CPU0 patched in the boot-CPU pass"),
        Mutant("module-boot-cpu-caps-only", _as(ModuleBootCpuCapsOnly, "linux-6.1"),
               "module alternatives applied with the boot-CPU capabilities only"),
        Mutant("vmap-never-unmapped", _as(VmapNeverUnmapped, "xen-4.17"),
               "the writable vmap alias of text left mapped after boot patching"),
        Mutant("rendezvous-array", _as(RendezvousArray, "linux-6.1"),
               "per-CPU arrival flags written below the one rendezvous word"),
    )
}


def __getattr__(name: str) -> ReferencePatcher:
    """``conformance.mutants_harness:revidr_ignored`` style access."""
    key = name.replace("_", "-")
    if key in HARNESS_MUTANTS:
        return HARNESS_MUTANTS[key].make()
    raise AttributeError(name)


__all__ = ["HARNESS_MUTANTS"]
