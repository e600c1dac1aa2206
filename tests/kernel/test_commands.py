"""``altpatch image run`` on the real xen-syms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_altpatch.cli import main
from pytest_altpatch.kernel.layout import KernelImage
from pytest_altpatch.kernel.profile import PROFILES_DIR


def test_json_lists_every_entry_with_hex_bytes_and_no_findings(
        xen_image: KernelImage, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["image", "run", str(xen_image.path), "--profile", "xen-4.17-debian",
                   "--caps", "6,9,11,16", "--cpus", "2", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert status == 0 and document["findings"] == []
    entries = document["entries"]
    assert len(entries) == len(xen_image.elf.alt_table) // 12
    first_sb = next(e for e in entries if e["cap"] == 16)
    assert set(first_sb) >= {"index", "site", "cap", "applied", "before", "after"}
    # dsb nsh; isb (d503379f d5033fdf) becomes sb; nop (d50330ff d503201f), little-endian.
    assert (first_sb["before"], first_sb["after"]) == ("9f3703d5df3f03d5", "ff3003d51f2003d5")
    assert first_sb["applied"] is True
    assert [c["cap"] for c in document["caps"]] == [6, 9, 11, 16]


def test_text_report_names_sites_caps_and_the_timeline(
        xen_image: KernelImage, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["image", "run", str(xen_image.path), "--profile", "xen-4.17-debian",
                   "--platform", "cortex-a57/r0p1, cortex-a53/r0p2", "--changed-only"])
    out = capsys.readouterr().out
    assert status == 0
    assert "caps on: 0 ARM64_WORKAROUND_CLEAN_CACHE" in out
    assert "dc cvac, x0  ->  dc civac, x0" in out  # Cortex-A53 clean-cache workaround
    assert "stop_machine_run(" in out and "findings: none" in out


def test_a_profile_naming_a_missing_symbol_fails_with_its_code(
        xen_image: KernelImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "bad.yaml"
    text = (PROFILES_DIR / "xen-4.17-debian.yaml").read_text()
    profile.write_text(text.replace("entry: apply_alternatives_all",
                                    "entry: apply_alternatives_everything"))
    status = main(["image", "run", str(xen_image.path), "--profile", str(profile),
                   "--caps", "6"])
    assert status == 1
    assert "IMAGE_MISSING_SYMBOL" in capsys.readouterr().err


def test_a_cap_number_at_or_above_ncaps_is_a_usage_error(
        xen_image: KernelImage, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["image", "run", str(xen_image.path), "--profile", "xen-4.17-debian",
                   "--caps", "6,18"])
    assert status == 2
    err = capsys.readouterr().err
    assert "SPEC_BAD_RANGE" in err and "not below NCAPS 18" in err
