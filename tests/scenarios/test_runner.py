"""The boot flow turns every patcher misbehaviour into an error or finding, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.cases import load_case, load_catalog, load_corpus
from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.judge import judge
from pytest_altpatch.machine import CpuContext, Schedule
from pytest_altpatch.patchers.contract import PatchEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.pipeline import not_applicable, parse_schedules
from pytest_altpatch.scenarios.runner import boot, run_case
from pytest_altpatch.scenarios.session import RunSettings

CASE = """\
format: 1
id: t/one-site
title: "one site"
refs: ["test"]
requires: [boot-alternatives]
platform: ["cortex-a57/r1p3", "cortex-a53/r0p4"]
caps:
  - {name: ALT_TEST_ON, when: always}
image:
  text: |
    fn:
        mov x0, #1
    site: ALTERNATIVE("nop", "add x0, x0, #1", ALT_TEST_ON)
        ret
    other:
        ret
expect:
  boot:
    text:
      site: "add x0, x0, #1"
    probes:
      - {call: fn, cpus: all, result: {x0: 2}}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def case(tmp_path: Path, catalog: Catalog) -> Case:
    path = tmp_path / "one.yaml"
    path.write_text(CASE)
    return load_case(path, catalog)


class _Raises(ReferencePatcher):
    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            raise ZeroDivisionError("boom")
        super().apply_alternatives_all(ctx, env)


class _Loops(ReferencePatcher):
    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        while True:
            ctx.relax()


class _WritesText(ReferencePatcher):
    """Writes the site through its read-only text VA."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            ctx.write32(env.region.text_start, 0xD503201F)
        super().apply_alternatives_all(ctx, env)


class _Scribbles(ReferencePatcher):
    """Patches correctly, then also changes a word outside every site."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        if ctx.cpu == 0:
            assert env.region.alias_offset is not None
            ctx.write32(env.region.text_start + 12 + env.region.alias_offset, 0xD503201F)
        super().apply_alternatives_all(ctx, env)


def test_reference_passes_the_one_site_case(case: Case, catalog: Catalog) -> None:
    outcome = run_case(case, catalog, mode="boot", patcher=ReferencePatcher("linux-6.1"))
    assert judge(case, outcome).passed


def test_a_patcher_that_raises_is_patcher_raised(case: Case, catalog: Catalog) -> None:
    outcome = run_case(case, catalog, mode="boot", patcher=_Raises("linux-6.1"))
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.phase) == ("PATCHER_RAISED", "boot")
    assert "ZeroDivisionError" in outcome.error.message
    assert "unexpected-error" in judge(case, outcome).codes


def test_a_patcher_that_loops_ends_with_a_budget_or_hang_finding(case: Case,
                                                                 catalog: Catalog) -> None:
    outcome = run_case(case, catalog, mode="boot", patcher=_Loops("linux-6.1"),
                       instruction_budget=20_000)
    codes = {f.code for f in outcome.findings}
    assert codes & {"budget", "hang"}
    assert not judge(case, outcome).passed


def test_a_write_through_the_text_va_is_ro_write_and_does_not_happen(
        case: Case, catalog: Catalog) -> None:
    outcome = run_case(case, catalog, mode="boot", patcher=_WritesText("linux-6.1"))
    boot = outcome.phase("boot")
    assert boot is not None
    assert [f.code for f in boot.findings] == ["ro-write"]
    text = next(s for s in boot.sections if s.name == ".text")
    assert text.after[:4] == text.before[:4]  # the store did not happen


def test_a_write_outside_the_sites_is_unexpected_write(case: Case, catalog: Catalog) -> None:
    outcome = run_case(case, catalog, mode="boot", patcher=_Scribbles("linux-6.1"))
    verdict = judge(case, outcome)
    assert "unexpected-write" in verdict.codes


def test_a_dialect_only_turns_on_capabilities_it_numbers(case: Case,
                                                        catalog: Catalog) -> None:
    # A57 r1p3 and A53 r0p4 read ID_AA64ISAR0.CRC32 = 1 (catalog); linux-6.1 numbers
    # ARM64_HAS_CRC32, Xen's cpufeature.h has no such capability.
    linux = run_case(case, catalog, mode="boot", patcher=ReferencePatcher("linux-6.1"))
    xen = run_case(case, catalog, mode="boot", patcher=ReferencePatcher("xen-4.17"))
    linux_boot, xen_boot = linux.phase("boot"), xen.phase("boot")
    assert linux_boot is not None and xen_boot is not None
    assert "ARM64_HAS_CRC32" in linux_boot.caps
    assert "ARM64_HAS_CRC32" not in xen_boot.caps
    assert "ALT_TEST_ON" in xen_boot.caps  # the case's own capability is always numbered


@pytest.mark.parametrize("schedule", [Schedule.parse("random:7"), "random:7"])
def test_a_schedule_object_reaches_the_machine_as_given(schedule: Schedule | str, case: Case,
                                                        catalog: Catalog) -> None:
    outcome, booted = boot(case, catalog, ReferencePatcher("linux-6.1"),
                           RunSettings(schedule=schedule), hotplug=True)
    assert booted is not None and judge(case, outcome).passed
    assert outcome.schedule == "random:7"
    machine_schedule = booted.session.machine.schedule
    assert machine_schedule == Schedule.parse("random:7")
    if isinstance(schedule, Schedule):
        assert machine_schedule is schedule  # kept, not re-parsed from its text
    assert run_case(case, catalog, mode="boot", patcher=ReferencePatcher("linux-6.1"),
                    schedule=schedule) == outcome


def test_parse_schedules_expands_random_ranges() -> None:
    labels = [c.label for c in parse_schedules("rr:100, random:1-3,adversarial")]
    assert labels == ["rr:100", "random:1", "random:2", "random:3", "adversarial"]


@pytest.mark.parametrize("text", ["", "rr:", "random:5-1", "fifo"])
def test_bad_schedules_are_coded_load_errors(text: str) -> None:
    with pytest.raises(AltpatchError) as exc:
        parse_schedules(text)
    assert exc.value.code == "MACHINE_SCHEDULE" and exc.value.phase == "load"


def test_cases_needing_undeclared_features_are_not_applicable(case: Case) -> None:
    assert not_applicable(case, ReferencePatcher("linux-6.1"), "boot") is None
    reason = not_applicable(case, ReferencePatcher("linux-6.1"), "late")
    assert reason is not None and "no late" in reason


CORPUS = load_corpus()
DIALECTS = ("linux-4.6", "linux-4.9", "linux-6.1", "xen-4.17", "strict")
RUNS = [
    pytest.param(case, dialect, mode, id=f"{case.id}-{dialect}-{mode}")
    for case in CORPUS.cases for dialect in DIALECTS for mode in ("boot", "late")
    if dialect in case.dialects and has_mode(case, mode)
    and not_applicable(case, ReferencePatcher(dialect), mode) is None
]


@pytest.mark.parametrize(("case", "dialect", "mode"), RUNS)
def test_bundled_corpus_passes_with_the_reference_patcher(case: Case, dialect: str,
                                                          mode: str) -> None:
    outcome = run_case(case, CORPUS.catalog, mode=mode, patcher=ReferencePatcher(dialect))
    verdict = judge(case, outcome)
    assert verdict.passed, [d.message for d in verdict.discrepancies]
