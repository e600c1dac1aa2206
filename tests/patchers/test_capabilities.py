"""Capability resolution follows each kernel's rules, on what each CPU read."""

from __future__ import annotations

from types import MappingProxyType

from pytest_altpatch.cases.model import (
    Catalog,
    Erratum,
    ExtraCap,
    Feature,
    MidrRange,
    RevidrFix,
    midr_model,
    midr_rv,
)
from pytest_altpatch.patchers.capabilities import (
    CpuReading,
    late_cpu_verdict,
    resolve_capabilities,
)

A53 = midr_model(0x41, 0xD03)
A57 = midr_model(0x41, 0xD07)
ISAR0 = "id_aa64isar0_el1"


def _catalog() -> Catalog:
    errata = {
        "arm-843419": Erratum(
            id="arm-843419", title="adrp", capability="WA_843419", scope="local-cpu-erratum",
            matches=(MidrRange(A53, 0, midr_rv(0, 4), fixed=(RevidrFix(midr_rv(0, 4), 1 << 8),)),),
            tables=("linux",),
        ),
        "arm-832075": Erratum(
            id="arm-832075", title="dev load acquire", capability="WA_832075",
            scope="local-cpu-erratum", matches=(MidrRange(A57, 0, midr_rv(1, 2)),),
            tables=("linux", "xen"),
        ),
        "boot-only": Erratum(
            id="boot-only", title="boot scope", capability="BOOT_CAP", scope="boot-cpu",
            matches=(MidrRange(A53),), tables=("linux",),
        ),
    }
    features = {
        "lse": Feature(id="lse", title="LSE atomics", capability="HAS_LSE", register=ISAR0,
                       shift=20, min_value=2),
    }
    return Catalog(cpus=MappingProxyType({}), errata=MappingProxyType(errata),
                   features=MappingProxyType(features), numberings=MappingProxyType({}))


def _cpu(midr_base: int, var: int, rev: int, *, revidr: int = 0, atomics: int = 0) -> CpuReading:
    return CpuReading(midr=midr_base | midr_rv(var, rev), revidr=revidr, ctr=0x84448004,
                      id_regs={ISAR0: atomics << 20})


def test_local_erratum_on_if_any_early_cpu_matches() -> None:
    caps = resolve_capabilities([_cpu(A57, 1, 3), _cpu(A53, 0, 4)], _catalog(), "linux-6.1")
    assert "WA_843419" in caps.system
    assert caps.per_cpu[0] == frozenset() and "WA_843419" in caps.per_cpu[1]


def test_revidr_fixed_revision_is_not_affected() -> None:
    caps = resolve_capabilities([_cpu(A53, 0, 4, revidr=1 << 8)], _catalog(), "linux-6.1")
    assert "WA_843419" not in caps.system


def test_system_feature_needs_every_early_cpu() -> None:
    mixed = [_cpu(A57, 1, 3, atomics=2), _cpu(A53, 0, 5, atomics=0)]
    assert "HAS_LSE" not in resolve_capabilities(mixed, _catalog(), "linux-6.1").system
    both = [_cpu(A57, 1, 3, atomics=2), _cpu(A53, 0, 5, atomics=3)]
    assert "HAS_LSE" in resolve_capabilities(both, _catalog(), "linux-6.1").system


def test_xen_any_cpu_sets_features_and_only_xen_errata_count() -> None:
    mixed = [_cpu(A57, 1, 2, atomics=2), _cpu(A53, 0, 2, atomics=0)]
    caps = resolve_capabilities(mixed, _catalog(), "xen-4.17")
    assert caps.system == frozenset({"HAS_LSE", "WA_832075"})


def test_boot_cpu_scope_is_decided_on_cpu0_alone() -> None:
    catalog = _catalog()
    assert "BOOT_CAP" not in resolve_capabilities(
        [_cpu(A57, 1, 3), _cpu(A53, 0, 0)], catalog, "linux-6.1").system
    caps = resolve_capabilities([_cpu(A53, 0, 5), _cpu(A57, 1, 3)], catalog, "linux-6.1")
    assert "BOOT_CAP" in caps.system and caps.boot_cpu == frozenset({"BOOT_CAP"})


def test_resolution_uses_each_cpus_own_reading() -> None:
    # The same platform read as if every CPU were the boot CPU (Xen's 2018 bug) loses
    # the LITTLE core's erratum: resolution must be fed real per-CPU readings.
    big, little = _cpu(A57, 1, 3), _cpu(A53, 0, 4)
    assert "WA_843419" in resolve_capabilities([big, little], _catalog(), "linux-6.1").system
    assert "WA_843419" not in resolve_capabilities([big, big], _catalog(), "linux-6.1").system


def test_case_caps_force_on_off_and_follow_errata() -> None:
    extra = (ExtraCap(name="TEST_ON", when="always"), ExtraCap(name="WA_843419", when="never"),
             ExtraCap(name="TIED", erratum="arm-832075"))
    caps = resolve_capabilities([_cpu(A57, 0, 0), _cpu(A53, 0, 0)], _catalog(), "linux-6.1", extra)
    assert {"TEST_ON", "TIED", "WA_832075"} <= caps.system
    assert "WA_843419" not in caps.system


def test_linux_late_cpu_needing_unenabled_erratum_is_refused() -> None:
    catalog = _catalog()
    boot = resolve_capabilities([_cpu(A57, 1, 3)], catalog, "linux-6.1")
    verdict = late_cpu_verdict(_cpu(A53, 0, 4), _cpu(A57, 1, 3), boot, catalog, "linux-6.1")
    assert (verdict.accepted, verdict.code, verdict.capability) == (
        False, "LATE_CPU_ERRATUM", "WA_843419")


def test_linux_late_cpu_missing_enabled_feature_is_refused() -> None:
    catalog = _catalog()
    boot = resolve_capabilities([_cpu(A57, 1, 3, atomics=2)], catalog, "linux-6.1")
    verdict = late_cpu_verdict(_cpu(A57, 1, 3), _cpu(A57, 1, 3, atomics=2), boot, catalog,
                               "linux-6.1")
    assert verdict.code == "LATE_CPU_MISSING_FEATURE"


def test_linux_late_cpu_with_spare_feature_is_accepted() -> None:
    catalog = _catalog()
    boot = resolve_capabilities([_cpu(A57, 1, 3)], catalog, "linux-6.1")
    assert late_cpu_verdict(_cpu(A57, 1, 3, atomics=2), _cpu(A57, 1, 3), boot, catalog,
                            "linux-6.1").accepted


def test_xen_parks_midr_mismatch_unless_hmp_unsafe_and_cache_line_mismatch() -> None:
    catalog = _catalog()
    boot_cpu = _cpu(A57, 1, 3)
    boot = resolve_capabilities([boot_cpu], catalog, "xen-4.17")
    little = _cpu(A53, 0, 4)
    assert late_cpu_verdict(little, boot_cpu, boot, catalog, "xen-4.17",
                            hmp_unsafe=False).code == "LATE_CPU_MIDR_MISMATCH"
    assert late_cpu_verdict(little, boot_cpu, boot, catalog, "xen-4.17").accepted
    small_lines = CpuReading(midr=boot_cpu.midr, revidr=0, ctr=0x84438003)  # DminLine 3: 32 B
    assert late_cpu_verdict(small_lines, boot_cpu, boot, catalog, "xen-4.17",
                            park_dcache_mismatch=True).code == "LATE_CPU_CACHE_LINE"
