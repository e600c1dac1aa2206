"""A warm worker server's spare engines are the size its children's machines ask for,
so each child's CPUs start on them instead of initialising engines of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
from pytest_altpatch.machine import engines
from pytest_altpatch.scenarios.session import SPARE_CODE_BUFFER
from pytest_altpatch.supervisor import server
server._warm_up(cases=True)
before = engines.spare_engines(SPARE_CODE_BUFFER)
from pytest_altpatch.cases.case import read_case
from pytest_altpatch.cases.catalog import read_catalog
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.runner import run_case
root = bundled_corpus()
catalog, _ = read_catalog(root)
case, _ = read_case(root / "cases" / "{case}", catalog, corpus_root=root)
outcome = run_case(case, catalog, mode="boot", patcher=ReferencePatcher(case.dialects[0]))
print(server._SPARE_ENGINES, before, engines.spare_engines(SPARE_CODE_BUFFER), len(case.platform),
      outcome.error)
"""


def test_a_warm_servers_child_runs_its_cpus_on_spare_engines(tmp_path: Path) -> None:
    case = sorted(p.relative_to(ROOT / "corpus" / "cases")
                  for p in (ROOT / "corpus" / "cases").rglob("*.yaml"))[0]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(case=case)], capture_output=True, text=True,
        timeout=300, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ALTPATCH_CACHE": str(tmp_path)})
    made, before, after, cpus, error = done.stdout.split()
    assert error == "None" and int(cpus) >= 2
    assert int(before) == int(made) > 0 and int(after) == int(before) - int(cpus)
