"""The corpus against the real binary: ``native:`` manifests that name an image."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.kernel.layout import KernelImage

CASES = Path(__file__).resolve().parents[2] / "corpus" / "cases"


def test_the_real_xen_passes_branch_relocation_and_shows_the_two_known_differences(
        pytester: pytest.Pytester, xen_image: KernelImage) -> None:
    manifest = pytester.path / "xen.yaml"
    manifest.write_text(f"name: debian-xen-syms\nimage: {xen_image.path}\n"
                        "profile: xen-4.17-debian\n")
    result = pytester.runpytest(
        "--altpatch-corpus", str(CASES / "branch" / "b-external.yaml"),
        str(CASES / "branch" / "bc-eq-external.yaml"),
        str(CASES / "table" / "length-mismatch.yaml"),
        f"--altpatch-patcher=native:{manifest}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    # Xen 4.17 predates BC.cond (Armv8.8) and copies it unchanged (INTERPRETING 6.1).
    assert "stream at site (0x200008) differs" in out and "bc.eq" in out
    # Its BUG_ON(repl_len != orig_len) is brk #1, where the corpus expects the refusal.
    assert "expected LENGTH_MISMATCH in phase boot, no error" in out
    assert "brk #0x1" in out and "__apply_alternatives+" in out
