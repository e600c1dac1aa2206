"""What the harness watches when a patcher entry returns: aliases and its own memory."""

from __future__ import annotations

from typing import Final

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.judge import judge
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import PatchEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.harness import RECORD_SIZE, RECORDS_SIZE
from pytest_altpatch.scenarios.runner import run_case

CASES: Final = bundled_corpus() / "cases"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


class WritesBelowItsWord(ReferencePatcher):
    """Writes into the last detection record, just below its rendezvous word."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 1:
            # sync_va lies just past the records: this is the last record's second slot.
            ctx.write32(env.sync_va - RECORD_SIZE + 8, 0xDEAD)
        super().apply_alternatives_all(ctx, env)


class LeavesAnExtraAlias(ReferencePatcher):
    """Maps an extra alias of its text during boot patching and never unmaps it."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            ctx.vmap(env.region.text_phys, 4096)
        super().apply_alternatives_all(ctx, env)


def test_a_write_to_a_detection_record_is_harness_write(catalog: Catalog) -> None:
    case = load_case(CASES / "harness" / "rendezvous-eight-cpus.yaml", catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=WritesBelowItsWord("linux-6.1"))
    found = [f for f in outcome.findings if f.code == "harness-write"]
    assert len(found) == 1
    # The last record (cpu255's) starts RECORD_SIZE below the rendezvous word.
    assert f"cpu{RECORDS_SIZE // RECORD_SIZE - 1}'s detection record" in found[0].message
    assert judge(case, outcome).codes == ("unexpected-finding",)


def test_an_alias_left_mapped_is_reported_once(catalog: Catalog) -> None:
    case = load_case(CASES / "harness" / "rendezvous-eight-cpus.yaml", catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=LeavesAnExtraAlias("linux-6.1"))
    found = [f for f in outcome.findings if f.code == "alias-left-mapped"]
    assert len(found) == 1 and found[0].detail == {"size": 4096}


def test_the_reference_leaves_nothing_behind_on_xen(catalog: Catalog) -> None:
    case = load_case(CASES / "harness" / "xen-alias-unmapped-after-boot.yaml", catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=ReferencePatcher("xen-4.17"))
    assert not outcome.findings
    assert judge(case, outcome).passed
