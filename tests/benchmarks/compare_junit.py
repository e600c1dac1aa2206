"""Compare the verdicts of two corpus runs' JUnit XML files (a plain script).

Run: ``python tests/benchmarks/compare_junit.py BEFORE.xml AFTER.xml [...pairs]``.
Each test case is keyed by (classname, name) and compared by outcome (passed, failure,
error, skipped) and message; times are ignored.  Exit 1 when any pair differs.

Used to show that a performance change leaves every verdict alone, e.g. for each
dialect D: ``pytest --altpatch-corpus bundled --altpatch-dialect=D
--altpatch-schedules=rr:100,random:1-3,adversarial --junitxml=D.xml`` on both trees.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

_OUTCOMES = ("failure", "error", "skipped")


def verdicts(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(classname, name) -> (outcome, message) of every test case in ``path``."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in _OUTCOMES:
                outcome, message = child.tag, child.get("message", "")
        found[(case.get("classname", ""), case.get("name", ""))] = (outcome, message)
    return found


def main(argv: list[str]) -> int:
    """Print one line per pair and every differing case; 1 if any differ."""
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__)
        return 2
    differing = 0
    for before_path, after_path in zip(argv[::2], argv[1::2], strict=True):
        before, after = verdicts(Path(before_path)), verdicts(Path(after_path))
        keys = sorted(set(before) | set(after))
        changed = [key for key in keys if before.get(key) != after.get(key)]
        counts: dict[str, int] = {}
        for outcome, _ in before.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        print(f"{after_path}: {len(keys)} cases ({summary}), {len(changed)} differ")
        for key in changed:
            print(f"  {key[0]}::{key[1]}: {before.get(key)} -> {after.get(key)}")
        differing += len(changed)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
