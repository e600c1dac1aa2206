"""No source line can kill the process: a 12,000-line campaign in one child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("fuzz_assembler.py")


def test_twelve_thousand_generated_and_mutated_lines_never_kill_the_process() -> None:
    child = subprocess.run(
        [sys.executable, str(SCRIPT), "--seed", "20261125", "--count", "12000"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    # A keystone abort would end the child with a non-zero status and no summary.
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-2000:]
    summary = json.loads(child.stdout.strip().splitlines()[-1])
    assert summary["lines"] >= 10_000
    assert summary["problems"] == []
    outcomes = summary["outcomes"]
    assert "CRASH" not in outcomes
    # The campaign exercises both paths: lines that assemble and each kind of coded error.
    assert outcomes["ok"] > 1000
    for code in ("ASM_SYNTAX", "ASM_UNDEFINED_SYMBOL", "ASM_OUT_OF_RANGE", "ASM_UNSUPPORTED"):
        assert outcomes.get(code, 0) > 10, code
