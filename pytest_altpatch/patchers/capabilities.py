"""Capability resolution: which capabilities a platform has, the way each kernel decides.

Resolution works on what each CPU's guest detection stub *read* (its own MIDR_EL1,
REVIDR_EL1, CTR_EL0 and ID registers), never on the platform description, so a
detector that reads the boot CPU's registers for every CPU (Xen before 2018) produces
observably wrong capabilities.

Linux: an erratum (local-CPU scope) is on if any early CPU matches; a system feature
needs every early CPU (lower-safe over the ID field); a boot-CPU-scope capability is
decided on CPU0 alone.  Xen: any CPU sets a capability, erratum or feature alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pytest_altpatch.cases.model import (
    Catalog,
    Erratum,
    ExtraCap,
    Feature,
    ctr_dminline_bytes,
    ctr_iminline_bytes,
)
from pytest_altpatch.dialects import Dialect, Semantics, traits


@dataclass(frozen=True)
class CpuReading:
    """The registers one CPU's detection stub read, as it read them."""

    midr: int
    revidr: int
    ctr: int
    id_regs: Mapping[str, int] = field(default_factory=dict)

    @property
    def dcache_line(self) -> int:
        """This CPU's smallest D-cache line in bytes."""
        return ctr_dminline_bytes(self.ctr)

    @property
    def icache_line(self) -> int:
        """This CPU's smallest I-cache line in bytes."""
        return ctr_iminline_bytes(self.ctr)

    def register(self, name: str) -> int:
        """Value of a named ID register (``ctr_el0`` included); unread registers are 0."""
        if name == "ctr_el0":
            return self.ctr
        return self.id_regs.get(name, 0)


@dataclass(frozen=True)
class CapabilitySource:
    """Why a capability is on or off: the erratum/feature/case entry that decided it."""

    capability: str
    kind: Literal["erratum", "feature", "case"]
    source_id: str
    cpus: tuple[int, ...]  # CPUs that match (errata) or have the feature


@dataclass(frozen=True)
class Capabilities:
    """The outcome of detection for the early (boot-time) CPUs."""

    system: frozenset[str]  # every capability the system has
    boot_cpu: frozenset[str]  # those of boot-CPU scope (patched in Linux's first pass)
    per_cpu: tuple[frozenset[str], ...]  # what each CPU would have on its own
    sources: tuple[CapabilitySource, ...]

    def restricted_to(self, numbered: Callable[[str], bool]) -> Capabilities:
        """Only the capabilities a dialect can express (``numbered(name)`` is true).

        A dialect never turns on a capability it has no number for (Xen has no LSE
        capability, for instance), however the CPUs' registers read.
        """
        return Capabilities(
            system=frozenset(filter(numbered, self.system)),
            boot_cpu=frozenset(filter(numbered, self.boot_cpu)),
            per_cpu=tuple(frozenset(filter(numbered, caps)) for caps in self.per_cpu),
            sources=tuple(s for s in self.sources if numbered(s.capability)),
        )


def _feature_field_floor(feature: Feature, readings: Sequence[CpuReading]) -> int:
    """The lower-safe (minimum) field value over ``readings``."""
    return min(feature.field_value(r.register(feature.register)) for r in readings)


def _erratum_applies(erratum: Erratum, semantics: Semantics) -> bool:
    return semantics in erratum.tables


def cpu_capabilities(
    reading: CpuReading, catalog: Catalog, semantics: Semantics
) -> frozenset[str]:
    """Capabilities one CPU would have by itself (errata it matches, features it has)."""
    caps = {
        e.capability
        for e in catalog.errata.values()
        if _erratum_applies(e, semantics) and e.affects(reading.midr, reading.revidr)
    }
    caps |= {
        f.capability for f in catalog.features.values() if f.present(reading.register(f.register))
    }
    return frozenset(caps)


def resolve_capabilities(
    readings: Sequence[CpuReading],
    catalog: Catalog,
    dialect: Dialect,
    extra: Iterable[ExtraCap] = (),
) -> Capabilities:
    """Decide the system's capabilities from the early CPUs' readings (CPU0 first)."""
    if not readings:
        raise ValueError("capability resolution needs at least the boot CPU")
    semantics = traits(dialect).semantics
    # (source, whether the capability is decided on the boot CPU alone), errata first.
    found = [*_errata_found(readings, catalog, semantics),
             *_features_found(readings, catalog, semantics)]
    system = {source.capability for source, _ in found}
    boot_cpu = {source.capability for source, on_boot_cpu in found if on_boot_cpu}
    sources = [source for source, _ in found]

    for cap in extra:
        on, cpus = _extra_cap_state(cap, readings, catalog, semantics)
        if on:
            system.add(cap.name)
            sources.append(CapabilitySource(cap.name, "case", cap.when or "derived", cpus))
        else:
            system.discard(cap.name)

    per_cpu = tuple(cpu_capabilities(r, catalog, semantics) for r in readings)
    return Capabilities(
        system=frozenset(system),
        boot_cpu=frozenset(boot_cpu & system),
        per_cpu=per_cpu,
        sources=tuple(sources),
    )


def _errata_found(readings: Sequence[CpuReading], catalog: Catalog, semantics: Semantics
                  ) -> list[tuple[CapabilitySource, bool]]:
    """The errata that are on, in id order, each with whether it is boot-CPU scoped."""
    found: list[tuple[CapabilitySource, bool]] = []
    for erratum in sorted(catalog.errata.values(), key=lambda e: e.id):
        if not _erratum_applies(erratum, semantics):
            continue
        matching = tuple(
            i for i, r in enumerate(readings) if erratum.affects(r.midr, r.revidr)
        )
        if _decide(erratum.scope, matching, len(readings), semantics):
            found.append((CapabilitySource(erratum.capability, "erratum", erratum.id, matching),
                          erratum.scope == "boot-cpu"))
    return found


def _features_found(readings: Sequence[CpuReading], catalog: Catalog, semantics: Semantics
                    ) -> list[tuple[CapabilitySource, bool]]:
    """The features that are on, in id order, each with whether it is boot-CPU scoped."""
    found: list[tuple[CapabilitySource, bool]] = []
    for feature in sorted(catalog.features.values(), key=lambda f: f.id):
        having = tuple(
            i for i, r in enumerate(readings) if feature.present(r.register(feature.register))
        )
        if semantics == "linux" and feature.scope == "system-feature":
            # Lower-safe: the sanitised field is the minimum over the early CPUs.
            on = _feature_field_floor(feature, readings) >= feature.min_value
        else:
            on = _decide(feature.scope, having, len(readings), semantics)
        if on:
            found.append((CapabilitySource(feature.capability, "feature", feature.id, having),
                          feature.scope == "boot-cpu"))
    return found


def _decide(scope: str, matching: tuple[int, ...], ncpus: int, semantics: Semantics) -> bool:
    if semantics == "xen":
        return bool(matching)  # Xen: any CPU sets a capability
    if scope == "boot-cpu":
        return 0 in matching
    if scope == "system-feature":
        return len(matching) == ncpus
    return bool(matching)  # local-cpu-erratum, weak-local: any early CPU


def _extra_cap_state(
    cap: ExtraCap, readings: Sequence[CpuReading], catalog: Catalog, semantics: Semantics
) -> tuple[bool, tuple[int, ...]]:
    if cap.when == "always":
        return True, tuple(range(len(readings)))
    if cap.when == "never":
        return False, ()
    if cap.erratum is not None:
        erratum = catalog.errata[cap.erratum]
        matching = tuple(i for i, r in enumerate(readings) if erratum.affects(r.midr, r.revidr))
        return _decide(erratum.scope, matching, len(readings), semantics), matching
    if cap.feature is not None:
        feature = catalog.features[cap.feature]
        having = tuple(
            i for i, r in enumerate(readings) if feature.present(r.register(feature.register))
        )
        if semantics == "linux" and feature.scope == "system-feature":
            return _feature_field_floor(feature, readings) >= feature.min_value, having
        return _decide(feature.scope, having, len(readings), semantics), having
    return False, ()


@dataclass(frozen=True)
class LateCpuVerdict:
    """Whether a hot-plugged CPU may join, and if not, why (an error code)."""

    accepted: bool
    code: str | None = None
    capability: str | None = None
    message: str = ""


def late_cpu_verdict(
    reading: CpuReading,
    boot_reading: CpuReading,
    system: Capabilities,
    catalog: Catalog,
    dialect: Dialect,
    *,
    hmp_unsafe: bool = True,
    park_dcache_mismatch: bool = True,
) -> LateCpuVerdict:
    """Decide whether a CPU brought up after boot is accepted (Linux or Xen policy)."""
    if traits(dialect).is_xen:
        if not hmp_unsafe and reading.midr != boot_reading.midr:
            return LateCpuVerdict(
                False, "LATE_CPU_MIDR_MISMATCH", None,
                f"MIDR {reading.midr:#x} differs from the boot CPU's {boot_reading.midr:#x}",
            )
        own, boot = reading.dcache_line, boot_reading.dcache_line
        if park_dcache_mismatch and own != boot:
            return LateCpuVerdict(
                False, "LATE_CPU_CACHE_LINE", None,
                f"D-cache line {own} bytes differs from the boot CPU's {boot} bytes",
            )
        return LateCpuVerdict(True)

    own_caps = cpu_capabilities(reading, catalog, "linux")
    for erratum in sorted(catalog.errata.values(), key=lambda e: e.id):
        if not _erratum_applies(erratum, "linux"):
            continue
        needs = erratum.affects(reading.midr, reading.revidr)
        if needs and erratum.capability not in system.system and not erratum.permitted_for_late_cpu:
            return LateCpuVerdict(
                False, "LATE_CPU_ERRATUM", erratum.capability,
                f"needs {erratum.capability} ({erratum.id}), not enabled at boot",
            )
    for feature in sorted(catalog.features.values(), key=lambda f: f.id):
        lacking = feature.capability in system.system and feature.capability not in own_caps
        if lacking and not feature.optional_for_late_cpu:
            return LateCpuVerdict(
                False, "LATE_CPU_MISSING_FEATURE", feature.capability,
                f"lacks {feature.capability} ({feature.id}), which the system enabled",
            )
    return LateCpuVerdict(True)


__all__ = [
    "Capabilities",
    "CapabilitySource",
    "CpuReading",
    "LateCpuVerdict",
    "Semantics",
    "cpu_capabilities",
    "late_cpu_verdict",
    "resolve_capabilities",
]
