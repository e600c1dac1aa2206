"""The schedule study: which schedules kill which mutants, and what they cost.

Run: ``python tests/benchmarks/bench_schedules.py [--rendezvous-only] [SCHEDULES ...]``
(default: the options the study compared).  ``--rendezvous-only`` tries just the
rendezvous-ordering family (the other mutants fail under every schedule: their killing
cases do not depend on the interleaving).  For every option it prints the kill rate over
the mutants tried and over the rendezvous-ordering family, the survivors, and the host
wall and CPU seconds of one reference-patcher run of the bundled corpus per dialect under
that option (the cost a user pays).  A mutant counts as killed when one applicable
case x mode x schedule fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from conformance.mutants import MUTANTS, RENDEZVOUS_MUTANTS
from pytest_altpatch.cases import load_corpus
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.judge import judge
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.pipeline import not_applicable, parse_schedules
from pytest_altpatch.scenarios.runner import run_case

OPTIONS = ("rr:100", "random:1-3", "adversarial", "rr:100,random:1-3,adversarial", "pct:0",
           "pct:1", "pct:2-4", "rr:100,pct:0")
CORPUS = load_corpus()


def killer(name: str, schedules: str) -> str | None:
    """The first ``case::mode[schedule]`` that fails mutant ``name``, or None."""
    for choice in parse_schedules(schedules):
        for case in CORPUS.cases:
            for mode in ("boot", "late"):
                patcher = MUTANTS[name].make()
                if not has_mode(case, mode) or not_applicable(case, patcher, mode):
                    continue
                outcome = run_case(case, CORPUS.catalog, mode=mode, patcher=patcher,
                                   schedule=choice.name, seed=choice.seed)
                if not judge(case, outcome).passed:
                    return f"{case.id}::{mode}[{choice.label}]"
    return None


def corpus_seconds(schedules: str, dialect: str) -> tuple[float, float]:
    """Host wall and CPU seconds of the reference patcher over the bundled corpus."""
    start, cpu = time.perf_counter(), time.process_time()
    for choice in parse_schedules(schedules):
        for case in CORPUS.cases:
            for mode in ("boot", "late"):
                patcher = ReferencePatcher(dialect)
                if not has_mode(case, mode) or not_applicable(case, patcher, mode):
                    continue
                judge(case, run_case(case, CORPUS.catalog, mode=mode, patcher=patcher,
                                     schedule=choice.name, seed=choice.seed))
    return time.perf_counter() - start, time.process_time() - cpu


def main(options: tuple[str, ...], names: frozenset[str]) -> None:
    """Print one block per schedule option."""
    for option in options:
        survivors = [name for name in sorted(names) if killer(name, option) is None]
        family = [name for name in survivors if name in RENDEZVOUS_MUTANTS]
        killed = len(names) - len(survivors)
        seconds = {d: corpus_seconds(option, d) for d in ("linux-6.1", "xen-4.17")}
        print(f"{option}: killed {killed}/{len(names)}, rendezvous "
              f"{len(RENDEZVOUS_MUTANTS) - len(family)}/{len(RENDEZVOUS_MUTANTS)}; corpus "
              + ", ".join(f"{d} {wall:.2f}s wall {cpu:.2f}s cpu"
                          for d, (wall, cpu) in seconds.items()), flush=True)
        if survivors:
            print("  survivors: " + ", ".join(survivors))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    only_family = "--rendezvous-only" in arguments
    chosen = tuple(a for a in arguments if a != "--rendezvous-only") or OPTIONS
    main(chosen, RENDEZVOUS_MUTANTS if only_family else frozenset(MUTANTS))
