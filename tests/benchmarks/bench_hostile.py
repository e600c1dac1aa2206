"""The hostile-patcher table: a full bundled-corpus run per attack, with --altpatch-timeout 5.

Run: ``python tests/benchmarks/bench_hostile.py [ATTACK ...]``.  Each attack (from
``tests/plugin/hostile_patchers.py``) hits the first item only (``ALTPATCH_HOSTILE_ONCE``)
and then behaves as the reference patcher, so every other item must still be reported
and pass.  Prints per attack: the attacked item's code, items reported (passed / failed /
skipped of those collected), the session's exit status and the wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugin"))

from hostile_patchers import EXPECTED_CODES, HOSTILE_PATCHERS  # noqa: E402

ATTACKS = [*sorted(EXPECTED_CODES), "RelaxLoop", "JudgeTamper"]


def run(attack: str, workdir: Path) -> str:
    """One full-corpus run under ``attack``; its table row."""
    marker = workdir / f"{attack}.attacked"
    junit = workdir / f"{attack}.xml"
    environment = {**os.environ, "ALTPATCH_HOSTILE_ONCE": str(marker),
                   "PYTHONPATH": os.pathsep.join([str(workdir), *sys.path])}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
               "--altpatch-corpus", "bundled", "--altpatch-timeout", "5",
               f"--altpatch-patcher=hostile:{attack}", f"--junitxml={junit}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=environment, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - start
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    codes: set[str] = set()
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            failure = case.find("failure")
            if failure is not None:
                counts["failed"] += 1
                text = (failure.get("message") or "") + (failure.text or "")
                codes |= {code for code in (*EXPECTED_CODES.values(), "hang", "PATCHER_")
                          if code in text}
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    total = sum(counts.values())
    return (f"{attack:15s} {','.join(sorted(codes)) or '-':28s} {total:4d} reported: "
            f"{counts['passed']:4d} passed {counts['failed']:3d} failed {counts['skipped']:3d} "
            f"skipped  exit {done.returncode}  {seconds:6.1f} s")


def main() -> None:
    """Print the table."""
    attacks = sys.argv[1:] or ATTACKS
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "hostile.py").write_text(HOSTILE_PATCHERS)
        print(f"{'attack':15s} {'codes of failed items':28s} items, exit status, wall time")
        for attack in attacks:
            print(run(attack, workdir), flush=True)


if __name__ == "__main__":
    main()
