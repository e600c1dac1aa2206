"""Hot-plugged CPUs: the Linux and Xen late-CPU policies, and accepted CPUs running
the text patched at boot.

Verdicts are taken from full runs (``run_case`` in boot mode, where the platform's
``late_cpus`` come online after stop_machine) and judged against the case.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Final

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Case, Catalog, HotplugExpectation
from pytest_altpatch.errors import SpecError
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.capabilities import cpu_capabilities
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.pipeline import not_applicable
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.outcome import Outcome
from pytest_altpatch.scenarios.runner import boot, run_case

HOTPLUG: Final = bundled_corpus() / "cases" / "hotplug"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


def _run(case: Case, catalog: Catalog, dialect: str, seed: int = 0) -> Outcome:
    schedule = f"random:{seed}" if seed else "rr:100"
    return run_case(case, catalog, mode="boot", patcher=resolve_patcher("reference",
                                                                          dialect=dialect),
                    schedule=schedule, seed=seed)


def _verdicts(outcome: Outcome) -> list[tuple[int, bool, str | None]]:
    """(machine CPU, accepted, code) per late CPU, in bring-up order."""
    return [(h.machine_cpu, h.accepted, h.code) for h in outcome.hotplug]


def _probe_cpus(outcome: Outcome) -> set[int]:
    boot = outcome.phase("boot")
    assert boot is not None
    return {p.cpu for p in boot.probes}


def _hotplug_runs() -> list[tuple[Path, str]]:
    catalog = load_catalog()
    return [(path, dialect) for path in sorted(HOTPLUG.glob("*.yaml"))
            for dialect in load_case(path, catalog).dialects]


@pytest.mark.parametrize(("path", "dialect"), _hotplug_runs(),
                         ids=lambda v: v.stem if isinstance(v, Path) else str(v))
def test_hotplug_corpus_case_passes_with_the_reference_patcher(path: Path, dialect: str,
                                                               catalog: Catalog) -> None:
    case = load_case(path, catalog)
    assert not_applicable(case, resolve_patcher("reference", dialect=dialect), "boot") is None
    verdict = judge(case, _run(case, catalog, dialect))
    assert verdict.passed, [d.message for d in verdict.discrepancies]


# --------------------------------------------------------------------------- Linux


@pytest.mark.parametrize("dialect", ["linux-4.6", "linux-6.1", "strict"])
def test_linux_refuses_a_late_cpu_lacking_lse_and_accepts_one_lacking_hw_dbm(
        dialect: str, catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "linux-late-cpu-missing-feature.yaml", catalog)
    outcome = _run(case, catalog, dialect)
    # Machine CPUs 0-1 boot; late CPUs 0, 1, 2 are machine CPUs 2, 3, 4.
    assert _verdicts(outcome) == [(2, False, "LATE_CPU_MISSING_FEATURE"), (3, True, None),
                                  (4, True, None)]
    boot = outcome.phase("boot")
    assert boot is not None
    # Both capabilities were on at boot, so each verdict is about lacking one.
    assert {"ARM64_HAS_LSE_ATOMICS", "ARM64_HW_DBM"} <= set(boot.caps)
    # The refused CPU never runs kernel text; the accepted ones run the patched LDADD.
    assert _probe_cpus(outcome) == {0, 1, 3, 4}
    assert all(p.completed and p.registers[0] == 42 for p in boot.probes)


def test_the_optional_late_cpu_really_lacks_the_capability(catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "linux-late-cpu-missing-feature.yaml", catalog)
    _, booted = boot(case, catalog, resolve_patcher("reference", dialect="linux-6.1"),
                     hotplug=True)
    assert booted is not None
    session = booted.session
    # What each late CPU's detection stub read, not what the case says.
    lacking_lse = cpu_capabilities(session.readings[2], catalog, "linux")
    lacking_dbm = cpu_capabilities(session.readings[3], catalog, "linux")
    assert "ARM64_HAS_LSE_ATOMICS" not in lacking_lse and "ARM64_HW_DBM" in lacking_lse
    assert "ARM64_HW_DBM" not in lacking_dbm and "ARM64_HAS_LSE_ATOMICS" in lacking_dbm


OPTIONAL_ERRATUM_CASE: Final = """\
format: 1
id: hotplug/test-optional-erratum
title: "a late CPU may lack an erratum workaround the system enabled"
refs: ["Linux ARM64_CPUCAP_LOCAL_CPU_ERRATUM = LOCAL_CPU | OPTIONAL_FOR_LATE_CPU"]
requires: [boot-alternatives, hotplug]
dialects: [linux-6.1]
# A57 r1p2 is inside 832075 (r0p0-r1p2): DEVICE_LOAD_ACQUIRE on.  r1p3 is outside.
platform: "2x cortex-a57/r1p2"
late_cpus: ["cortex-a57/r1p3", "cortex-a57/r1p2"]
image:
  text: |
    device_load:
    site: ALTERNATIVE("ldar x0, [x1]; nop", "ldr x0, [x1]; dmb ishld", \
ARM64_WORKAROUND_DEVICE_LOAD_ACQUIRE)
        ret
expect:
  hotplug:
    - {cpu: 2, verdict: accepted}
    - {cpu: "cortex-a57/r1p2", verdict: accepted}
"""


def test_linux_accepts_a_late_cpu_lacking_an_enabled_erratum(tmp_path: Path,
                                                            catalog: Catalog) -> None:
    path = tmp_path / "optional.yaml"
    path.write_text(OPTIONAL_ERRATUM_CASE)
    case = load_case(path, catalog)
    outcome = _run(case, catalog, "linux-6.1")
    assert _verdicts(outcome) == [(2, True, None), (3, True, None)]
    assert judge(case, outcome).passed


def test_linux_refuses_a_late_cpu_needing_an_erratum_the_system_lacks(
        catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "linux-late-cpu-erratum.yaml", catalog)
    outcome = _run(case, catalog, "linux-6.1")
    assert _verdicts(outcome) == [(2, False, "LATE_CPU_ERRATUM"), (3, True, None)]


# --------------------------------------------------------------------------- Xen


def test_xen_parks_a_different_midr_unless_hmp_unsafe(catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "xen-park-mismatch.yaml", catalog)
    parked = _run(case, catalog, "xen-4.17")
    assert _verdicts(parked) == [(2, False, "LATE_CPU_MIDR_MISMATCH"),
                                 (3, False, "LATE_CPU_CACHE_LINE"), (4, True, None)]
    unsafe = replace(case, options=replace(case.options, hmp_unsafe=True))
    # The A53 now joins; the 128-byte-line A57 is still parked.
    assert _verdicts(_run(unsafe, catalog, "xen-4.17")) == [
        (2, True, None), (3, False, "LATE_CPU_CACHE_LINE"), (4, True, None)]
    lenient = replace(case, options=replace(case.options, park_dcache_mismatch=False))
    assert _verdicts(_run(lenient, catalog, "xen-4.17")) == [
        (2, False, "LATE_CPU_MIDR_MISMATCH"), (3, True, None), (4, True, None)]


def test_xen_late_little_cpu_runs_the_text_patched_for_the_boot_caps(
        catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "xen-hmp-unsafe-accepts.yaml", catalog)
    outcome = _run(case, catalog, "xen-4.17")
    assert _verdicts(outcome) == [(2, True, None)]
    boot = outcome.phase("boot")
    assert boot is not None
    late = [p for p in boot.probes if p.cpu == 2]
    # hardened() returns 1 (patched), clean_cache() 0 (never patched: no boot CPU
    # needed it, and Xen does not re-run alternatives for a late CPU).
    assert [(p.call, p.registers[0]) for p in late] == [("hardened", 1), ("clean_cache", 0)]
    assert not [f for p in late for f in p.findings]


# --------------------------------------------------------------------------- judge


def test_the_judge_fails_a_wrong_hotplug_verdict(catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "linux-late-cpu-missing-feature.yaml", catalog)
    outcome = _run(case, catalog, "linux-6.1")
    wrong = replace(case, expect=replace(case.expect, hotplug=(
        HotplugExpectation(2, "refused", "LATE_CPU_ERRATUM"),  # right verdict, wrong code
        HotplugExpectation(3, "refused", "LATE_CPU_MISSING_FEATURE"),  # wrong verdict
        HotplugExpectation(4, "accepted"),
    )))
    verdict = judge(wrong, outcome)
    # The harness's verdict and the reference patcher's own check both disagree.
    assert verdict.codes == ("hotplug-mismatch", "patcher-hotplug-mismatch") * 2


def test_hotplug_outcome_is_deterministic_for_a_seed(catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "xen-hmp-unsafe-accepts.yaml", catalog)
    first, second = (_run(case, catalog, "xen-4.17", seed=9) for _ in range(2))
    assert first.trace == second.trace
    assert first.hotplug == second.hotplug
    assert first.phases == second.phases


# --------------------------------------------------------------------------- numbering


def test_hotplug_cpu_is_a_cpu_number_not_a_late_cpus_index(tmp_path: Path,
                                                           catalog: Catalog) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(OPTIONAL_ERRATUM_CASE.replace("{cpu: 2,", "{cpu: 0,"))
    with pytest.raises(SpecError) as caught:
        load_case(path, catalog)
    assert caught.value.code == "SPEC_BAD_REFERENCE"
    assert "late CPUs are 2..3" in caught.value.message
    assert caught.value.location.line == 17  # the first hotplug entry


def test_refused_late_a53_leaves_dc_cvau_enough_for_the_boot_cpus(catalog: Catalog) -> None:
    case = load_case(HOTPLUG / "refused-late-a53-keeps-boot-clean-rule.yaml", catalog)
    outcome = _run(case, catalog, "linux-4.9")
    assert _verdicts(outcome) == [(2, False, "LATE_CPU_ERRATUM")]
    assert not outcome.findings
    assert judge(case, outcome).passed
