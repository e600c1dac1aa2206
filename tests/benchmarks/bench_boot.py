"""Boot-scenario timings: the 200-site big.LITTLE boot and every bundled case.

Run: ``python tests/benchmarks/bench_boot.py``.  Prints best-of-3 host seconds.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scenarios"))

from sitegen import case_yaml

from pytest_altpatch.cases import load_case, load_corpus
from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.pipeline import not_applicable
from pytest_altpatch.scenarios.runner import run_case


def best_of(runs: int, case: Case, catalog: Catalog, dialect: str, mode: str,
            schedule: str) -> float:
    """Best host time of ``runs`` judged runs (asserting each passes)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        outcome = run_case(case, catalog, mode=mode, patcher=ReferencePatcher(dialect),
                           schedule=schedule)
        times.append(time.perf_counter() - start)
        assert judge(case, outcome).passed, case.id
    return min(times)


def main() -> None:
    """Print the timings."""
    corpus = load_corpus()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sites.yaml"
        path.write_text(case_yaml(200, '["2x cortex-a57/r1p0", "2x cortex-a53/r0p4"]'))
        big = load_case(path, corpus.catalog)
        for schedule in ("rr:100", "random:1", "adversarial"):
            seconds = best_of(3, big, corpus.catalog, "linux-6.1", "boot", schedule)
            print(f"200-site boot, 4 CPUs, {schedule:12s} {seconds * 1000:8.1f} ms")
    for case in corpus.cases:
        for mode in ("boot", "late"):
            dialect = case.dialects[0]
            if not has_mode(case, mode) or not_applicable(case, ReferencePatcher(dialect), mode):
                continue
            seconds = best_of(3, case, corpus.catalog, dialect, mode, "rr:100")
            print(f"{case.id:45s} {mode:4s} {dialect:9s} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
