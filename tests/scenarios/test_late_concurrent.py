"""A CPU that runs the old function while a livepatch rewrites it is caught.

The harness's own flow quiesces every CPU before a switch; here one CPU keeps calling
the old function in guest code while CPU0 applies the payload without a rendezvous,
so the machine's concurrent-modification rule must fire (unless both the old and the
new first word are in the architecture's safe set).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.scenarios.late import livepatch_environment, load_payload
from pytest_altpatch.scenarios.runner import boot
from pytest_altpatch.scenarios.session import RunSettings

CASE = """\
format: 1
id: t/concurrent-switch
title: "a CPU keeps calling the old function during the switch"
refs: ["Arm ARM B2.2.5 concurrent modification and execution"]
requires: [livepatch]
dialects: [xen-4.17]
platform: ["2x cortex-a57/r1p3"]
image:
  text: |
    greet:
        FIRST
        mov     x0, #0
        ret
    caller:
    1:  bl      greet
        b       1b
payloads:
  - name: hello
    text: |
      new_greet:
          mov     x0, #2
          ret
    replaces:
      - {old: greet, new: new_greet}
expect:
  late:
    apply:
      text:
        greet: "b new_greet"
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _switch_under_a_running_caller(tmp_path: Path, catalog: Catalog, first: str) -> set[str]:
    path = tmp_path / "case.yaml"
    path.write_text(CASE.replace("FIRST", first))
    case = load_case(path, catalog)
    patcher = ReferencePatcher("xen-4.17")
    outcome, booted = boot(case, catalog, patcher, RunSettings(schedule="adversarial"),
                           hotplug=False)
    assert outcome.error is None and booted is not None
    session = booted.session
    payload = load_payload(booted, case.payloads[0], 0)
    session.new_findings()
    machine, image = session.machine, session.image
    assert machine is not None and image is not None
    env = livepatch_environment(booted, payload)
    machine.start_cpu(1, image.symbols["caller"], sp=image.stacks[1].top)
    # CPU0 alone applies: nobody asked CPU1 to stop calling greet.
    machine.start_python(0, lambda ctx: patcher.apply_livepatch(ctx, env))
    machine.run(until=lambda: machine.cpu_state(0) != "running")
    return {f.code for f in session.new_findings() if f.cpu == 1}


def test_rewriting_a_running_function_without_quiescing_is_cmodx(tmp_path: Path,
                                                                 catalog: Catalog) -> None:
    # mov x0, #1 -> b new_greet: MOV is not in {B, BL, BRK, HVC, ISB, NOP, SMC, SVC}.
    assert "cmodx" in _switch_under_a_running_caller(tmp_path, catalog, "mov x0, #1")


def test_nop_to_branch_is_not_cmodx(tmp_path: Path, catalog: Catalog) -> None:
    # NOP -> B: both in the safe set, so concurrent execution is architecturally fine.
    assert "cmodx" not in _switch_under_a_running_caller(tmp_path, catalog, "nop")
