"""Case texts and a corpus writer shared by the plugin tests.

Each test gets the bundled catalog and schemas (copied, so the temporary corpus is a
real corpus root) and writes the two to four cases it needs.
"""
from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from pytest_altpatch.resources import bundled_corpus

#: The replacement is applied: ``mov x0, #2`` replaces ``mov x0, #1`` on every CPU.
CASE_APPLIED = """\
format: 1
id: demo/applied
title: "demo: the replacement is applied on every CPU"
refs: ["pytest-altpatch plugin tests"]
requires: [branch-reloc]
platform: "2x cortex-a53/r0p4"
caps:
  - {name: ALT_TEST_ON, when: always}
image:
  text: |
    answer:
    site: ALTERNATIVE("mov x0, #1", "mov x0, #2", ALT_TEST_ON)
        ret
expect:
  boot:
    text:
      site: "mov x0, #2"
    probes:
      - {call: answer, cpus: all, result: {x0: 2}}
"""

#: The expectation is wrong on purpose: line 17 asks for ``mov x0, #3``.
CASE_WRONG_STREAM = CASE_APPLIED.replace("demo/applied", "demo/wrong-stream").replace(
    'site: "mov x0, #2"', 'site: "mov x0, #3"').replace("{x0: 2}", "{x0: 3}")

#: Same shape, but requires a feature the reference linux-6.1 dialect does not declare.
CASE_NEEDS_LIVEPATCH = CASE_APPLIED.replace("demo/applied", "demo/needs-livepatch").replace(
    "requires: [branch-reloc]", "requires: [branch-reloc, livepatch]")

#: Requires adrp-reloc, for feature filters.
CASE_NEEDS_ADRP = CASE_APPLIED.replace("demo/applied", "demo/needs-adrp").replace(
    "requires: [branch-reloc]", "requires: [adrp-reloc]")

#: A case with an unknown key on line 4, column 1.
CASE_BROKEN = CASE_APPLIED.replace("demo/applied", "demo/broken").replace(
    "refs:", "colour: blue\nrefs:", 1)

CaseWriter = Callable[[Mapping[str, str]], Path]


def write_corpus(root: Path, cases: Mapping[str, str]) -> Path:
    """Make ``root`` a corpus (bundled catalog and schemas) holding ``cases``."""
    source = bundled_corpus()
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "VERSION", root / "VERSION")
    for part in ("catalog", "schema"):
        if not (root / part).exists():
            shutil.copytree(source / part, root / part)
    for relative, text in cases.items():
        path = root / "cases" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root



#: Expects a refusal that the (well-formed) table does not provoke.
CASE_EXPECTS_ERROR = CASE_APPLIED.replace("demo/applied", "demo/expects-error").split(
    "expect:\n")[0] + "expect:\n  boot:\n    error: {code: LENGTH_MISMATCH, phase: boot}\n"

#: A patcher module for pytester runs: the reference patcher minus cache maintenance.
MUTANT_PATCHER = '''
from pytest_altpatch.patchers.reference import ReferencePatcher


class NoMaintenance(ReferencePatcher):
    """Writes through the alias like linux-6.1 but never cleans or invalidates."""

    def __init__(self) -> None:
        super().__init__("linux-6.1")
        self.name = "mutant:no-maintenance"

    def _clean_site(self, ctx, env, entry):
        pass

    def _finish_maintenance(self, ctx):
        pass
'''

#: A patcher that never returns but keeps making progress (so no hang is detected):
#: only the host-time budget (--altpatch-timeout) can end its run.
SPINNING_PATCHER = '''
from pytest_altpatch.patchers.reference import ReferencePatcher


class Spinner(ReferencePatcher):
    def __init__(self) -> None:
        super().__init__("linux-6.1")
        self.name = "mutant:spinner"

    def apply_alternatives_all(self, ctx, env):
        count = 0
        while True:
            count += 1
            ctx.write32(env.sync_va, count)
'''
