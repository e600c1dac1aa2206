"""The observation point between the two boot passes (``expect.boot_cpu``)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from conformance.mutants_harness import HARNESS_MUTANTS
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.errors import SpecError
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.runner import run_case

BOOT_PASS: Final = bundled_corpus() / "cases" / "boot-pass"
BTI: Final = BOOT_PASS / "bti-patched-before-secondaries.yaml"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


def test_the_boot_cpu_phase_sees_only_the_first_pass(catalog: Catalog) -> None:
    case = load_case(BTI, catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=ReferencePatcher("linux-6.1"))
    early, boot = outcome.phases
    assert (early.phase, boot.phase) == ("boot-cpu", "boot")
    assert early.caps == ("ARM64_BTI",)
    assert {p.cpu for p in early.probes} == {0}  # CPU1 has not started
    assert judge(case, outcome).passed


@pytest.mark.parametrize("name", ["no-boot-cpu-pass", "everything-in-boot-cpu-pass"])
def test_a_wrong_first_pass_fails_only_at_the_observation_point(catalog: Catalog,
                                                                name: str) -> None:
    case = load_case(BTI, catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=HARNESS_MUTANTS[name].make())
    verdict = judge(case, outcome)
    assert verdict.codes == ("stream-mismatch", "probe-mismatch")
    assert {d.phase for d in verdict.discrepancies} == {"boot-cpu"}


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = BTI.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "case.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_observing_the_boot_cpu_pass_requires_two_pass(tmp_path: Path,
                                                       catalog: Catalog) -> None:
    path = _edited(tmp_path, "requires: [boot-alternatives, two-pass]",
                   "requires: [boot-alternatives]")
    with pytest.raises(SpecError) as caught:
        load_case(path, catalog)
    assert caught.value.code == "SPEC_SCHEMA"
    assert "two-pass" in caught.value.message


def test_a_probe_on_a_secondary_before_it_starts_is_refused(tmp_path: Path,
                                                            catalog: Catalog) -> None:
    path = _edited(tmp_path, "{call: bti_on, cpus: [0], result: {x0: 1}}",
                   "{call: bti_on, cpus: [1], result: {x0: 1}}")
    with pytest.raises(SpecError) as caught:
        load_case(path, catalog)
    assert caught.value.code == "SPEC_BAD_REFERENCE"
