"""Debian's Xen 4.17 xen-syms runs its own boot-time patcher in the machine."""

from __future__ import annotations

import struct

import pytest

from pytest_altpatch.a64.classify import is_branch_imm
from pytest_altpatch.a64.pcrel import decode_target
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.kernel.layout import KernelImage
from pytest_altpatch.kernel.profile import PROFILES_DIR, TargetProfile, parse_profile_text
from pytest_altpatch.kernel.runner import ImageRun, RunRequest, platform_cpus, run_image

NOP = 0xD503201F
CALLBACK = 18  # Xen: ARM_CB_PATCH == ARM_NCAPS == 18 (cmp w0, #0x11; b.hi in the binary)
SOME_CAPS = frozenset({6, 9, 11, 16})
ALL_CAPS = frozenset(range(18))


def raw_table(image: KernelImage) -> list[tuple[int, int, int, int, int, int]]:
    """(entry address, site, replacement, cap field, site len, repl len), read with struct."""
    start, end = image.symbols["__alt_instructions"], image.symbols["__alt_instructions_end"]
    data = image.elf.read(start, end - start)
    assert data is not None
    rows = []
    for offset in range(0, len(data), 12):
        site_off, repl_off, cap, site_len, repl_len = struct.unpack_from("<iiHBB", data, offset)
        entry = start + offset
        rows.append((entry, entry + site_off, entry + 4 + repl_off, cap, site_len, repl_len))
    return rows


def run(image: KernelImage, profile: TargetProfile, catalog: Catalog, caps: frozenset[int],
        *, cpus: int = 4, schedule: str = "rr:100", seed: int = 0) -> ImageRun:
    return run_image(image, profile, catalog,
                     RunRequest(platform_cpus(catalog, None, cpus), caps, schedule=schedule,
                                seed=seed))


@pytest.fixture(scope="module")
def some_caps_run(xen_image: KernelImage, xen_profile: TargetProfile,
                  catalog: Catalog) -> ImageRun:
    return run(xen_image, xen_profile, catalog, SOME_CAPS)


@pytest.fixture(scope="module")
def all_caps_run(xen_image: KernelImage, xen_profile: TargetProfile,
                 catalog: Catalog) -> ImageRun:
    return run(xen_image, xen_profile, catalog, ALL_CAPS, cpus=2)


def test_every_cpu_returns_from_stop_machine_and_nothing_is_found(
        some_caps_run: ImageRun) -> None:
    assert some_caps_run.reason == "stopped"
    assert some_caps_run.cpu_states == ("done",) * 4
    assert some_caps_run.findings == ()
    assert some_caps_run.stray_writes == ()
    kinds = [(e.cpu, e.kind) for e in some_caps_run.trace if e.kind in ("start", "done")]
    # CPU0 enters apply_alternatives_all; stop_machine_run starts 1-3; all return.
    assert kinds[:4] == [(0, "start"), (1, "start"), (2, "start"), (3, "start")]
    assert sorted(kinds[4:]) == [(0, "done"), (1, "done"), (2, "done"), (3, "done")]


def test_the_image_applies_exactly_the_entries_of_the_caps_on_and_its_callback(
        xen_image: KernelImage, some_caps_run: ImageRun) -> None:
    expected = {index for index, row in enumerate(raw_table(xen_image))
                if row[3] in SOME_CAPS or row[3] == CALLBACK}
    applied = {e.index for e in some_caps_run.entries if e.applied}
    assert applied == expected and len(expected) > 1  # (60 in 4.17.5+72, 56 in 4.17.7+13)
    for entry in some_caps_run.entries:
        if not entry.applied:
            assert entry.after == entry.before
        elif not entry.entry.is_callback:
            # None of these replacements holds a branch, so the words are copied as-is.
            assert entry.after == entry.replacement


def test_xens_callback_writes_a_nop_because_ssbd_is_runtime_in_the_image(
        xen_image: KernelImage, some_caps_run: ImageRun) -> None:
    ssbd_state = xen_image.elf.read(xen_image.symbols["ssbd_state"], 4)
    assert ssbd_state == (2).to_bytes(4, "little")  # ARM_SSBD_RUNTIME
    (callback,) = [e for e in some_caps_run.entries if e.entry.is_callback]
    assert callback.applied and callback.after == NOP.to_bytes(4, "little")


def test_with_every_cap_all_entries_apply_and_out_of_line_branches_are_retargeted(
        xen_image: KernelImage, all_caps_run: ImageRun) -> None:
    assert all_caps_run.findings == () and all_caps_run.applied == len(all_caps_run.entries)
    retargeted = 0
    for entry in all_caps_run.entries:
        if entry.entry.is_callback:
            continue
        repl = entry.entry.target
        for slot in range(0, len(entry.replacement), 4):
            word = int.from_bytes(entry.replacement[slot:slot + 4], "little")
            if not is_branch_imm(word):
                continue
            target = decode_target(word, repl + slot)
            if repl <= target <= repl + entry.entry.repl_len:
                continue  # inside the replacement: copied unchanged
            retargeted += 1
            new = int.from_bytes(entry.after[slot:slot + 4], "little")
            assert decode_target(new, entry.entry.site + slot) == target
    assert retargeted == all_caps_run.retargets > 0  # (6 in 4.17.5+72-g01140da4e8-1)


def test_a_vmap_stub_returning_the_text_va_makes_the_image_fault_on_read_only_text(
        xen_image: KernelImage, catalog: Catalog) -> None:
    text = (PROFILES_DIR / "xen-4.17-debian.yaml").read_text()
    wrong = parse_profile_text(text.replace("__vmap: vmap-mfns", "__vmap: vmap-identity"))
    result = run(xen_image, wrong, catalog, SOME_CAPS, cpus=2)
    faults = [f for f in result.findings if f.code == "ro-write"]
    assert faults and faults[0].cpu == 0
    assert faults[0].address is not None
    assert any(lo <= faults[0].address < hi for lo, hi in xen_image.executable_ranges())
    assert all(e.after == e.before for e in result.entries)  # the store did not happen


def test_the_same_seed_gives_the_same_trace(xen_image: KernelImage,
                                            xen_profile: TargetProfile,
                                            catalog: Catalog) -> None:
    first = run(xen_image, xen_profile, catalog, SOME_CAPS, cpus=2, schedule="random:5")
    second = run(xen_image, xen_profile, catalog, SOME_CAPS, cpus=2, schedule="random:5")
    assert [e.render() for e in first.trace] == [e.render() for e in second.trace]
    assert [e.after for e in first.entries] == [e.after for e in second.entries]
