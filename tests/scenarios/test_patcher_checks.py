"""The optional detection and late-CPU entries: what they are told, how answers are judged."""

from __future__ import annotations

from typing import Final

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.judge import judge
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import DetectionEnvironment, LateCpuEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.runner import run_case

CASES: Final = bundled_corpus() / "cases"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


class Recording(ReferencePatcher):
    """The reference, recording what each detection call saw."""

    def __init__(self, dialect: str) -> None:
        super().__init__(dialect)
        self.calls: list[tuple[int, int, frozenset[int]]] = []

    def detect_capabilities(self, ctx: CpuContext, env: DetectionEnvironment) -> frozenset[int]:
        self.calls.append((ctx.cpu, ctx.sysreg("midr_el1"), env.decided))
        return super().detect_capabilities(ctx, env)


class Garbage(ReferencePatcher):
    def detect_capabilities(self, ctx: CpuContext, env: DetectionEnvironment) -> frozenset[int]:
        return "CLEAN_CACHE"  # type: ignore[return-value]


class WrongVerdict(ReferencePatcher):
    def verify_late_cpu(self, ctx: CpuContext, env: LateCpuEnvironment) -> str | None:
        return "LATE_CPU_MIDR_MISMATCH"


class Undeclared(ReferencePatcher):
    """Detects wrongly, but does not declare cpu-detection: never asked."""

    def __init__(self, dialect: str) -> None:
        super().__init__(dialect)
        self.features = self.features - {"cpu-detection", "late-cpu-check"}

    def detect_capabilities(self, ctx: CpuContext, env: DetectionEnvironment
                            ) -> frozenset[int]:
        raise AssertionError("detection must not run without the feature")


def test_detection_runs_on_each_cpu_in_order_reading_its_own_registers(
        catalog: Catalog) -> None:
    case = load_case(CASES / "detection" / "xen-erratum-on-secondary-only.yaml", catalog)
    patcher = Recording("xen-4.17")
    outcome = run_case(case, catalog, mode="boot", patcher=patcher)
    assert judge(case, outcome).passed
    (cpu0, midr0, before0), (cpu1, midr1, before1) = patcher.calls
    # MIDRs from §3: 0x41 << 24 | V << 20 | 0xF << 16 | part << 4 | R.
    assert (cpu0, midr0, before0) == (0, 0x411FD073, frozenset())  # A57 r1p3
    assert (cpu1, midr1) == (1, 0x410FD032)  # A53 r0p2
    # CPU1 is told what the patcher answered after CPU0 (A57 only: no CLEAN_CACHE).
    numbering = catalog.numberings["xen-4.17"]
    assert numbering.number("ARM64_WORKAROUND_CLEAN_CACHE") not in before1
    assert numbering.number("ARM_HARDEN_BRANCH_PREDICTOR") in before1


def test_a_detection_answer_that_is_not_numbers_is_a_coded_boot_error(
        catalog: Catalog) -> None:
    case = load_case(CASES / "detection" / "xen-erratum-on-secondary-only.yaml", catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=Garbage("xen-4.17"))
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.phase) == ("PATCHER_BAD_RESULT", "boot")
    assert not judge(case, outcome).passed


def test_a_wrong_own_late_cpu_verdict_fails_only_that_expectation(catalog: Catalog) -> None:
    case = load_case(CASES / "hotplug" / "linux-late-cpu-erratum.yaml", catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=WrongVerdict("linux-6.1"))
    # The harness's own verdicts still decide who joins, so the CPUs are as expected...
    assert [(h.accepted, h.code) for h in outcome.hotplug] == [
        (False, "LATE_CPU_ERRATUM"), (True, None)]
    # ... and both of the patcher's answers are judged wrong (wrong code, wrong verdict).
    assert judge(case, outcome).codes == ("patcher-hotplug-mismatch",) * 2


def test_a_patcher_without_the_features_is_judged_as_before(catalog: Catalog) -> None:
    case = load_case(CASES / "detection" / "linux-erratum-on-secondary-only.yaml", catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=Undeclared("linux-6.1"))
    boot = outcome.phase("boot")
    assert boot is not None and boot.patcher_caps is None
    assert all(h.patcher_accepted is None for h in outcome.hotplug)
    assert judge(case, outcome).passed
