"""Late patching: livepatch payloads loaded after boot, switched in and out.

These tests drive a booted session (:func:`.runner.boot`) and the late flow's pieces directly
(``load_payload``, ``switch``) where a corpus case cannot express the scenario
(cycles, stacking, a deliberately wrong patcher), and run every late corpus case
under every dialect it lists.  Every expected word is derived by hand in a comment.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path
from typing import Final

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Case, Catalog, ProbeSpec
from pytest_altpatch.judge import judge
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.machine.config import Perms
from pytest_altpatch.patchers.contract import LivepatchEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.pipeline import not_applicable
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.late import LoadedPayload, load_payload, run_late, switch
from pytest_altpatch.scenarios.outcome import Outcome
from pytest_altpatch.scenarios.runner import boot, run_case
from pytest_altpatch.scenarios.session import Booted, RunSettings, Session

CASES: Final = bundled_corpus() / "cases"
LATE_CASES: Final = sorted([*(CASES / "late").glob("*.yaml"), *(CASES / "payload").glob("*.yaml")])
XEN: Final = "xen-4.17"
#: Xen's base text starts at 0x200000 (image layout); payloads default to 8 MiB away.
TEXT: Final = 0x20_0000
WINDOW: Final = TEXT + 0x80_0000
STACKED_WINDOW: Final = WINDOW + 0x10_0000  # the second payload, 1 MiB further


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


def _case(name: str, catalog: Catalog) -> Case:
    return load_case(CASES / name, catalog)


def _word(session: Session, va: int) -> int:
    """The word at ``va`` of the base text as memory holds it now."""
    assert session.machine is not None and session.image is not None
    pa = session.section_pa[".text"] + (va - session.image.text_start)
    (word,) = struct.unpack("<I", session.machine.read_phys(pa, 4))
    return int(word)


def _booted(case: Case, catalog: Catalog, patcher: ReferencePatcher | None = None,
            schedule: str = "rr:100", seed: int = 0) -> tuple[Booted, Outcome]:
    outcome, booted = boot(case, catalog, patcher or ReferencePatcher(XEN),
                           RunSettings(schedule=schedule, seed=seed), hotplug=False)
    assert outcome.error is None, outcome.error
    assert booted is not None
    booted.session.new_findings()  # boot is judged elsewhere
    return booted, outcome


def _probe_all(session: Session, call: str, expected: int) -> None:
    """Run ``call`` on every online CPU: each returns ``expected`` without findings."""
    probe = ProbeSpec(call=call, cpus="all", args={}, result={"x0": expected})
    runs = session.run_probes([probe], session.online)
    assert [r.cpu for r in runs] == session.online
    for run in runs:
        assert run.completed and not run.findings, run
        assert run.registers[0] == expected, (run.cpu, run.registers[0])
    assert session.new_findings() == ()


# --------------------------------------------------------------------------- corpus


def _late_runs() -> list[tuple[Path, str]]:
    catalog = load_catalog()
    return [(path, dialect) for path in LATE_CASES
            for dialect in load_case(path, catalog).dialects]


@pytest.mark.parametrize(("path", "dialect"), _late_runs(),
                         ids=lambda v: v.stem if isinstance(v, Path) else str(v))
def test_late_corpus_case_passes_with_the_reference_patcher(path: Path, dialect: str,
                                                            catalog: Catalog) -> None:
    case = load_case(path, catalog)
    patcher = resolve_patcher("reference", dialect=dialect)
    ran = 0
    for mode in ("boot", "late"):
        if not_applicable(case, patcher, mode):
            continue
        verdict = judge(case, run_case(case, catalog, mode=mode, patcher=patcher))
        assert verdict.passed, [d.message for d in verdict.discrepancies]
        ran += 1
    assert ran  # every case under corpus/cases/late runs in at least one mode


# --------------------------------------------------------------------------- cycles


def test_apply_revert_cycles_leave_every_cpu_running_the_right_function(
        catalog: Catalog) -> None:
    case = _case("late/payload-biglittle-boot-caps.yaml", catalog)
    booted, _ = _booted(case, catalog)
    session = booted.session
    assert len(session.online) == 4  # two big, two LITTLE
    payload = load_payload(booted, case.payloads[0], 0)
    compute = session.image.symbols["compute"] if session.image else 0
    assert compute == TEXT
    # compute = 0x200000 -> new_compute = 0x200000 + 0x800000: imm26 = 0x800000 / 4
    # = 0x200000, B = 0x14000000 | 0x200000.  mov x0, #0 = MOVZ 0xd2800000.
    for _ in range(3):
        assert switch(booted, [payload], revert=False) is None
        assert _word(session, compute) == 0x14200000
        _probe_all(session, "compute", 38)  # 0 + 2 (CLEAN_CACHE) + 4 + 32 (LIVEPATCH)
        assert switch(booted, [payload], revert=True) is None
        assert _word(session, compute) == 0xD2800000
        _probe_all(session, "compute", 0)


def test_cycles_stay_clean_under_adversarial_and_random_schedules(catalog: Catalog) -> None:
    case = _case("late/payload-branch-to-base.yaml", catalog)
    for schedule, seed in (("adversarial", 0), ("random:3", 3), ("random:11", 11)):
        booted, _ = _booted(case, catalog, schedule=schedule, seed=seed)
        session = booted.session
        payload = load_payload(booted, case.payloads[0], 0)
        for _ in range(2):
            assert switch(booted, [payload], revert=False) is None
            _probe_all(session, "greet", 15)
            assert switch(booted, [payload], revert=True) is None
            _probe_all(session, "greet", 5)


STACKED_CASE: Final = """\
format: 1
id: late/test-stacked
title: "two payloads replace the same function one over the other"
refs: ["Xen livepatch: a payload may depend on (stack on) another"]
requires: [livepatch]
dialects: [xen-4.17]
platform: ["cortex-a57/r1p3", "cortex-a53/r0p4"]
image:
  text: |
    greet:
        mov     x0, #0
        ret
payloads:
  - name: first
    text: |
      greet_v1:
          mov     x0, #1
          ret
    replaces:
      - {old: greet, new: greet_v1}
  - name: second
    text: |
      greet_v2:
          mov     x0, #2
          ret
    replaces:
      - {old: greet, new: greet_v2}
expect:
  late:
    apply:
      probes:
        - {call: greet, cpus: all, result: {x0: 2}}
    revert:
      probes:
        - {call: greet, cpus: all, result: {x0: 0}}
"""


def _stacked(tmp_path: Path, catalog: Catalog) -> Case:
    path = tmp_path / "stacked.yaml"
    path.write_text(STACKED_CASE)
    return load_case(path, catalog)


def test_stacked_payloads_apply_in_order_and_revert_in_reverse(tmp_path: Path,
                                                               catalog: Catalog) -> None:
    case = _stacked(tmp_path, catalog)
    booted, _ = _booted(case, catalog)
    session = booted.session
    first = load_payload(booted, case.payloads[0], 0)
    second = load_payload(booted, case.payloads[1], 1)
    assert first.loaded.symbols["greet_v1"] == WINDOW
    assert second.loaded.symbols["greet_v2"] == STACKED_WINDOW
    # greet = 0x200000.  B to 0xa00000: imm26 = 0x800000 / 4 = 0x200000 -> 0x14200000.
    # B to 0xb00000: imm26 = 0x900000 / 4 = 0x240000 -> 0x14240000.
    steps: list[tuple[list[LoadedPayload], bool, int, int]] = [
        ([first], False, 0x14200000, 1),
        ([second], False, 0x14240000, 2),
        ([second], True, 0x14200000, 1),  # the second's saved word is the first's B
        ([first], True, 0xD2800000, 0),  # mov x0, #0
    ]
    for payloads, revert, word, value in steps:
        assert switch(booted, payloads, revert=revert) is None
        assert _word(session, TEXT) == word
        _probe_all(session, "greet", value)


def test_stacked_payloads_through_the_whole_late_flow(tmp_path: Path, catalog: Catalog) -> None:
    case = _stacked(tmp_path, catalog)
    outcome = run_case(case, catalog, mode="late", patcher=ReferencePatcher(XEN))
    assert [p.phase for p in outcome.phases] == ["boot", "load", "apply", "revert"]
    verdict = judge(case, outcome)
    assert verdict.passed, verdict.discrepancies


# --------------------------------------------------------------------------- mutants


class _NoIsbOnWaiters(ReferencePatcher):
    """Xen before 84c3ae30aa: the CPUs waiting out a livepatch do no ISB when released."""

    @staticmethod
    def _wait_for_master(ctx: CpuContext, env: LivepatchEnvironment) -> bool:
        if ctx.cpu == 0:
            return False
        while ctx.read32(env.sync_va) == 0:
            ctx.relax()
        return True  # released, but nothing discards what this CPU fetched before


def test_missing_isb_on_waiting_cpus_is_a_stale_fetch_and_fails_the_case(
        catalog: Catalog) -> None:
    case = _case("payload/late-alternatives-apply-revert.yaml", catalog)
    outcome = run_case(case, catalog, mode="late", patcher=_NoIsbOnWaiters(XEN))
    verdict = judge(case, outcome)
    assert not verdict.passed
    stale = [d for d in verdict.discrepancies if d.code == "unexpected-finding"
             and d.finding is not None and d.finding.code == "stale-fetch"]
    assert {d.phase for d in stale} == {"apply", "revert"}
    # The master CPU synchronised itself; only waiting CPUs run stale words.
    assert all(d.finding is not None and d.finding.cpu != 0 for d in stale)
    # greet, whose first word was rewritten, is what they ran.
    greet = outcome.symbols["greet"]
    assert all(d.finding is not None and d.finding.address == greet for d in stale)


def test_the_reference_patcher_passes_the_case_the_isb_mutant_fails(catalog: Catalog) -> None:
    case = _case("payload/late-alternatives-apply-revert.yaml", catalog)
    outcome = run_case(case, catalog, mode="late", patcher=ReferencePatcher(XEN))
    assert judge(case, outcome).passed


@pytest.mark.parametrize("buggy", [False, True])
def test_alternatives_before_relocations_is_caught(buggy: bool, catalog: Catalog) -> None:
    case = _case("late/payload-relocate-then-patch.yaml", catalog)
    booted, boot = _booted(case, catalog)
    outcome = run_late(booted, boot, alternatives_before_relocations=buggy)
    verdict = judge(case, outcome)
    assert verdict.passed is not buggy
    site = outcome.symbols["site_reloc"]
    load = outcome.phase("load")
    assert load is not None
    # Right order: NOP (0xd503201f).  Buggy order: relocation rewrites the site into
    # BL base_helper: base_helper = 0x200008, site = 0xa00008, offset -0x800000,
    # imm26 = -0x200000 = 0x3e00000 (26 bits): 0x94000000 | 0x3e00000 = 0x97e00000.
    assert load.read(site, 4) == struct.pack("<I", 0x97E00000 if buggy else 0xD503201F)
    if buggy:
        assert "stream-mismatch" in verdict.codes and "probe-mismatch" in verdict.codes


def test_payload_caps_come_from_boot_not_from_the_loading_cpu(catalog: Catalog) -> None:
    # CPU0 (a Cortex-A57) loads the payload; only the LITTLE cores need CLEAN_CACHE.
    case = _case("late/payload-biglittle-boot-caps.yaml", catalog)
    booted, _ = _booted(case, catalog)
    session = booted.session
    assert booted.capabilities is not None and session.image is not None
    assert "ARM64_WORKAROUND_CLEAN_CACHE" in booted.capabilities.system
    assert "ARM64_WORKAROUND_CLEAN_CACHE" not in booted.capabilities.per_cpu[0]
    payload = load_payload(booted, case.payloads[0], 0)
    site = payload.loaded.symbols["site_little"]
    text_pa = payload.section_pa[".text"] + site - WINDOW
    assert session.machine is not None
    # add x0, x0, #2 = 0x91000000 | 2 << 10 = 0x91000800.
    assert session.machine.read_phys(text_pa, 4) == struct.pack("<I", 0x91000800)


# --------------------------------------------------------------------------- errors


def test_out_of_range_branch_writes_nothing_and_releases_no_cpu_into_patched_text(
        catalog: Catalog) -> None:
    case = _case("late/livepatch-branch-out-of-range.yaml", catalog)
    outcome = run_case(case, catalog, mode="late", patcher=ReferencePatcher(XEN))
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.phase) == ("BRANCH_OUT_OF_RANGE", "late")
    apply = outcome.phase("apply")
    assert apply is not None
    text = next(s for s in apply.sections if s.name == ".text")
    assert text.before == text.after  # not one byte of the base text changed
    assert judge(case, outcome).passed


def test_a_load_error_case_fails_when_the_rule_is_not_enforced(catalog: Catalog) -> None:
    # The table-size case with a whole table loads fine: the judge reports the
    # missing error, so the case really depends on the rule.
    case = _case("late/payload-alt-table-size.yaml", catalog)
    whole = replace(case, payloads=(replace(case.payloads[0], alt_table_trailing_bytes=0),))
    verdict = judge(whole, run_case(whole, catalog, mode="late",
                                    patcher=ReferencePatcher(XEN)))
    assert "missing-error" in verdict.codes


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", ["late/payload-biglittle-boot-caps.yaml",
                                  "late/livepatch-expectation-mismatch.yaml"])
def test_same_seed_gives_the_same_late_outcome(name: str, catalog: Catalog) -> None:
    case = _case(name, catalog)

    def once() -> Outcome:
        return run_case(case, catalog, mode="late", patcher=ReferencePatcher(XEN),
                        schedule="random:5", seed=5)

    first, second = once(), once()
    assert first.trace == second.trace
    assert first.phases == second.phases
    assert first.error == second.error
    assert first.instructions == second.instructions


# --------------------------------------------------------------------------- window

RODATA_CASE: Final = """\
format: 1
id: late/test-window
title: "a payload window over the base image's rodata"
refs: ["Xen image layout: rodata 8 MiB past text, as the default payload window"]
requires: [livepatch]
dialects: [xen-4.17]
platform: ["cortex-a57/r1p3"]
options: {OPTIONS}
image:
  text: |
    greet:
        mov     x0, #0
        ret
  rodata: |
    answer:
        .word   42
payloads:
  - name: over_rodata
    text: |
      new_greet:
          mov     x0, #1
          ret
    replaces:
      - {old: greet, new: new_greet}
expect:
  late:
    apply:
      probes:
        - {call: greet, cpus: all, result: {x0: 1}}
"""


@pytest.mark.parametrize(("options", "error"), [
    ("{}", "BUILD_LAYOUT"),  # default 8 MiB: the payload .text would sit on .rodata
    ("{payload_offset: 0x1000000}", None),  # 16 MiB: between rodata and data
])
def test_a_payload_window_over_the_base_image_is_a_located_error(
        options: str, error: str | None, tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "window.yaml"
    path.write_text(RODATA_CASE.replace("{OPTIONS}", options))
    case = load_case(path, catalog)
    outcome = run_case(case, catalog, mode="late", patcher=ReferencePatcher(XEN))
    assert (outcome.error.code if outcome.error else None) == error
    if outcome.error is not None:
        assert outcome.error.phase == "late" and outcome.error.location.section == ".text"
    else:
        assert judge(case, outcome).passed


# --------------------------------------------------------------------------- load rules


def test_a_loaded_payload_is_secured_text_rx_table_read_only(catalog: Catalog) -> None:
    case = _case("late/payload-branch-to-base.yaml", catalog)
    booted, _ = _booted(case, catalog)
    session = booted.session
    payload = load_payload(booted, case.payloads[0], 0)
    assert session.machine is not None
    mappings = session.machine.mappings()
    # Runs of pages are coalesced: find the run holding each section's first byte.
    perms = {s.va: next(m.perms for m in mappings if m.va <= s.va < m.va + m.size)
             for s in payload.loaded.sections}
    homes = {s.name: s.va for s in payload.loaded.sections}
    # Xen arch_livepatch_secure(): text (and replacements) R-X once patched.
    assert perms[homes[".text"]] == Perms.parse("r-x")
    assert perms[homes[".altinstr_replacement"]] == Perms.parse("r-x")
    # The table is allocated, neither writable nor executable: Xen's ro region, R--.
    assert perms[homes[".altinstructions"]] == Perms.parse("r--")


@pytest.mark.parametrize(("replacement", "repl_len", "cap", "error"), [
    ("repl_two", 4, "LIVEPATCH_FEATURE", None),  # exactly [start, end): fits
    ("repl_two+4", 0, "ARM64_WORKAROUND_DEVICE_LOAD_ACQUIRE", None),  # empty, at the end
    ("repl_two+4", 4, "LIVEPATCH_FEATURE", "REPL_OUT_OF_REGION"),  # [end, end+4)
    ("repl_two+2", 4, "LIVEPATCH_FEATURE", "REPL_OUT_OF_REGION"),  # straddles the end
])
def test_replacement_bounds_are_checked_at_the_section_end(
        replacement: str, repl_len: int, cap: str, error: str | None,
        catalog: Catalog) -> None:
    # .altinstr_replacement is the 4 bytes at repl_two (see the case's comment).  The
    # empty replacement entry uses a capability that is off (A57 r1p3 is outside 832075),
    # so its length difference never reaches the patcher.
    case = _case("late/payload-repl-outside.yaml", catalog)
    payload = case.payloads[0]
    assert payload.alt_table is not None
    entry = replace(payload.alt_table[0], replacement=replacement, repl_len=repl_len, cap=cap)
    moved = replace(case, payloads=(replace(payload, alt_table=(entry,)),))
    outcome = run_case(moved, catalog, mode="late", patcher=ReferencePatcher(XEN))
    assert (outcome.error.code if outcome.error else None) == error
