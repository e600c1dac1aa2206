"""Issue-6 acceptance: 200 generated sites booted on big.LITTLE under several schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
from sitegen import case_yaml

from conformance.mutants import NoBranchRetarget, WaitersSkipIsb
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.scenarios.runner import run_case

BIG_LITTLE = '["2x cortex-a57/r1p0", "2x cortex-a53/r0p4"]'
# The same cores with CTR_EL0.IDC (bit 28) and DIC (bit 29) set on top of their
# catalog values (A57 0x8444c004, A53 0x84448004: 64-byte lines): | 0x30000000.
COHERENT = '["2x cortex-a57/r1p0 ctr=0xb444c004", "2x cortex-a53/r0p4 ctr=0xb4448004"]'
SCHEDULES = ["rr:100", *(f"random:{n}" for n in range(1, 6)), "adversarial"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _case(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog, platform: str) -> Case:
    path = tmp_path_factory.mktemp("gen") / "sites.yaml"
    path.write_text(case_yaml(200, platform))
    return load_case(Path(path), catalog)


@pytest.fixture(scope="module")
def big_little_case(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Case:
    return _case(tmp_path_factory, catalog, BIG_LITTLE)


@pytest.fixture(scope="module")
def coherent_case(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Case:
    return _case(tmp_path_factory, catalog, COHERENT)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_200_sites_patch_cleanly_on_big_little(big_little_case: Case, catalog: Catalog,
                                               schedule: str) -> None:
    outcome = run_case(big_little_case, catalog, mode="boot",
                       patcher=ReferencePatcher("linux-6.1"), schedule=schedule)
    verdict = judge(big_little_case, outcome)
    assert verdict.passed, [d.message for d in verdict.discrepancies[:5]]
    boot = outcome.phase("boot")
    assert boot is not None and boot.findings == ()
    # 200 probes, each on all four CPUs.
    assert len(boot.probes) == 800 and {p.cpu for p in boot.probes} == {0, 1, 2, 3}


@pytest.mark.parametrize("schedule", ["rr:100", "random:3", "adversarial"])
def test_200_sites_patch_cleanly_with_idc_and_dic(coherent_case: Case, catalog: Catalog,
                                                  schedule: str) -> None:
    outcome = run_case(coherent_case, catalog, mode="boot",
                       patcher=ReferencePatcher("linux-6.1"), schedule=schedule)
    assert judge(coherent_case, outcome).passed


def test_same_schedule_and_seed_give_identical_outcomes(big_little_case: Case,
                                                        catalog: Catalog) -> None:
    runs = [run_case(big_little_case, catalog, mode="boot",
                     patcher=ReferencePatcher("linux-6.1"), schedule="random:4")
            for _ in range(2)]
    assert runs[0].trace == runs[1].trace
    assert runs[0].phases == runs[1].phases


def test_unrelocated_branches_fail_the_generated_case(big_little_case: Case,
                                                      catalog: Catalog) -> None:
    outcome = run_case(big_little_case, catalog, mode="boot",
                       patcher=NoBranchRetarget("linux-6.1"), schedule="rr:100")
    codes = set(judge(big_little_case, outcome).codes)
    assert {"stream-mismatch", "probe-mismatch"} <= codes


def test_waiters_without_isb_fail_the_generated_case(big_little_case: Case,
                                                     catalog: Catalog) -> None:
    outcome = run_case(big_little_case, catalog, mode="boot",
                       patcher=WaitersSkipIsb("linux-6.1"), schedule="rr:100")
    verdict = judge(big_little_case, outcome)
    stale = [d for d in verdict.discrepancies if d.finding and d.finding.code == "stale-fetch"]
    assert stale and stale[0].finding is not None and stale[0].finding.cpu != 0
