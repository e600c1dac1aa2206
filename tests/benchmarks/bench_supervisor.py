"""Per-item cost of the supervised worker path against in-process runs.

Run: ``python tests/benchmarks/bench_supervisor.py``.  For every bundled case x mode
(reference patcher, rr:100) and for a 200-site boot, prints the best-of-3 host
milliseconds in-process and through :func:`pytest_altpatch.supervisor.run_item`
(fork of the warm worker server, request and outcome pickled across), and the
difference.  The first worker request (starting the server) is timed separately.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scenarios"))

from sitegen import case_yaml

from pytest_altpatch import supervisor
from pytest_altpatch.cases import load_case, load_corpus
from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.pipeline import not_applicable


def best_of(runs: int, case: Case, catalog: Catalog, dialect: str, mode: str,
            *, inprocess: bool) -> float:
    """Best host seconds of ``runs`` judged runs (asserting each passes)."""
    request = supervisor.item_request(case, catalog, mode=mode, patcher=f"reference:{dialect}",
                                      dialect=None, schedule="rr:100", seed=0, timeout=None)
    patcher = ReferencePatcher(dialect) if inprocess else None
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        outcome = supervisor.run_item(request, patcher=patcher)
        times.append(time.perf_counter() - start)
        assert judge(case, outcome).passed, (case.id, outcome.error)
    return min(times)


def main() -> None:
    """Print the timings."""
    corpus = load_corpus()
    start = time.perf_counter()
    supervisor.patchers_facts("reference")
    print(f"worker server start + first request: {(time.perf_counter() - start) * 1000:.0f} ms")
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sites.yaml"
        path.write_text(case_yaml(200, '["2x cortex-a57/r1p0", "2x cortex-a53/r0p4"]'))
        big = load_case(path, corpus.catalog)
        rows.append(("200-site boot, 4 CPUs",
                     best_of(3, big, corpus.catalog, "linux-6.1", "boot", inprocess=True),
                     best_of(3, big, corpus.catalog, "linux-6.1", "boot", inprocess=False)))
    for case in corpus.cases:
        for mode in ("boot", "late"):
            dialect = case.dialects[0]
            if not has_mode(case, mode) or not_applicable(case, ReferencePatcher(dialect), mode):
                continue
            rows.append((f"{case.id} {mode}",
                         best_of(3, case, corpus.catalog, dialect, mode, inprocess=True),
                         best_of(3, case, corpus.catalog, dialect, mode, inprocess=False)))
    print(f"{'item':55s} {'in-process':>10s} {'worker':>8s} {'overhead':>8s}  (ms)")
    for name, inside, worker in rows:
        print(f"{name:55s} {inside * 1000:10.1f} {worker * 1000:8.1f} "
              f"{(worker - inside) * 1000:8.1f}")
    corpus_rows = rows[1:]
    overheads = [(worker - inside) * 1000 for _, inside, worker in corpus_rows]
    print(f"bundled corpus: {len(corpus_rows)} items, in-process total "
          f"{sum(r[1] for r in corpus_rows) * 1000:.0f} ms, worker total "
          f"{sum(r[2] for r in corpus_rows) * 1000:.0f} ms, overhead per item median "
          f"{statistics.median(overheads):.1f} ms, mean {statistics.mean(overheads):.1f} ms")


if __name__ == "__main__":
    main()
