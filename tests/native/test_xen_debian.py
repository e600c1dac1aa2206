"""Xen 4.17's own alternative.c + arm64/insn.c, from Debian's source, unchanged, as a
native patcher: the xen-4.17 corpus passes (one analysed difference), and three
one-line bugs in the real source are each caught, located at the guilty code.

Needs aarch64-linux-gnu-gcc and Debian's xen source package (cached in
~/.cache/pytest-altpatch/debian/, else fetched with apt-get source); skipped otherwise.
Command-line equivalent: see conformance/native-abi.md ("Real Xen").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.native.patcher import load_native_patcher
from pytest_altpatch.native.xen_source import (
    MUTATIONS,
    build_xen_patcher,
    extract_sources,
    fetch_orig_tarball,
)
from pytest_altpatch.pipeline import CaseResult, run_corpus

pytestmark = pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                                reason="aarch64-linux-gnu-gcc is not installed")

#: Cases real Xen fails, each analysed in INTERPRETING.md §6.1: a capability number
#: above NCAPS is dispatched by Xen as a callback to the replacement; the corpus makes
#: it "never applies" (a deliberate harness rule, rule 1).
#: Xen 4.17 predates BC.cond (Armv8.8): its branch relocation copies a BC.cond unchanged,
#: where the xen-4.17 dialect re-targets it like B.cond (INTERPRETING 6.1; the shipped
#: xen-syms does the same, tests/kernel/test_image_patcher.py).
KNOWN_DIFFERENCES = frozenset({
    "table/cap-beyond-ncaps",
    *(f"branch/bc-{cond}-external" for cond in ("eq", "ne", "hs", "lt", "gt")),
    "range/bc-gt-at-range-end",
})


@pytest.fixture(scope="module")
def xen_sources() -> Path:
    try:
        return extract_sources(fetch_orig_tarball())
    except AltpatchError as exc:
        pytest.skip(f"Debian's xen 4.17 source is not available: {exc.message}")


def _run(sources: Path, tmp: Path, mutation: str | None,
         schedules: str = "rr:100") -> list[CaseResult]:
    manifest = build_xen_patcher(sources, tmp / (mutation or "unchanged"), mutation=mutation)
    results, _ = run_corpus(load_native_patcher(manifest), schedules)
    return results


def _failed(results: list[CaseResult]) -> dict[str, str]:
    return {r.item.split("::")[0]: r.report for r in results if not r.passed}


def test_real_xen_passes_the_xen_corpus(xen_sources: Path, tmp_path: Path) -> None:
    results = _run(xen_sources, tmp_path, None, "rr:100,random:1,adversarial")
    assert len(results) >= 60
    assert set(_failed(results)) == KNOWN_DIFFERENCES


def test_waiters_without_isb_are_caught(xen_sources: Path, tmp_path: Path) -> None:
    failed = _failed(_run(xen_sources, tmp_path, "waiter-no-isb"))
    reports = [r for case, r in failed.items() if case not in KNOWN_DIFFERENCES]
    assert reports, MUTATIONS["waiter-no-isb"].summary
    # A waiting CPU (not cpu0) ran a patched word without a context synchronisation.
    assert any("stale-fetch: [cpu1" in r and "missing context-synchronization" in r
               and "alternative.c:" in r for r in reports)


def test_a_short_dcache_clean_is_caught(xen_sources: Path, tmp_path: Path) -> None:
    failed = _failed(_run(xen_sources, tmp_path, "dcache-short"))
    reports = [r for case, r in failed.items() if case not in KNOWN_DIFFERENCES]
    assert reports, MUTATIONS["dcache-short"].summary
    # The finding names the store whose line was never cleaned, in patch_alternative.
    assert any("missing clean" in r and "alternative.o:patch_alternative+" in r
               for r in reports)


def test_exclusive_end_in_the_branch_check_is_caught(xen_sources: Path,
                                                     tmp_path: Path) -> None:
    failed = _failed(_run(xen_sources, tmp_path, "branch-inside-lt"))
    assert "branch/end-of-block" in failed, MUTATIONS["branch-inside-lt"].summary
    # Xen BUG()s in branch_insn_requires_update; the finding is located at that call.
    report = failed["branch/end-of-block"]
    assert "bug:" in report and "BUG() at alternative.c:" in report
