"""The collector's pauses and freezes: what a run freezes, where, and what still goes.

The one-run cases run in a fresh interpreter, since a freeze is for good there.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

from pytest_altpatch import collector

ROOT = Path(__file__).resolve().parents[1]


def _in_fresh_process(body: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(body)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_paused_turns_the_collector_off_and_back_on_only_if_it_was_on() -> None:
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause does not end the outer one
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_run_freezes_nothing_in_a_process_that_runs_many() -> None:
    # A freeze here would keep earlier runs' cyclic garbage (machines, engines) for good.
    before = gc.get_freeze_count()
    with collector.settled():
        collector.settle()
        with collector.paused():
            kept = [object() for _ in range(100)]
    assert gc.get_freeze_count() == before
    assert kept


def test_a_one_run_process_freezes_what_it_keeps_and_still_collects_new_cycles() -> None:
    out = _in_fresh_process("""
        import gc
        from pytest_altpatch import collector

        class Node:
            def __init__(self):
                self.me = self

        collector.one_run_process()
        long_lived = [[i] for i in range(1000)]
        with collector.settled():
            frozen_at_start = gc.get_freeze_count()
            with collector.paused():
                image = [[i] for i in range(1000)]
            frozen_after_build = gc.get_freeze_count()
            for _ in range(100):
                Node()  # cyclic garbage made during the run
            collected = gc.collect()
        print(frozen_at_start >= 1000, frozen_after_build - frozen_at_start >= 1000,
              collected >= 100, len(long_lived) + len(image))
    """)
    assert out == "True True True 2000"


def test_a_run_in_process_does_not_keep_its_machines() -> None:
    # Runs in one process (``--inprocess``, the host tests): each one's machine, with
    # its unicorn engines, is cyclic garbage the collector must still reach.
    out = _in_fresh_process("""
        import gc, weakref
        from pytest_altpatch.cases import load_case, load_catalog
        from pytest_altpatch.patchers.reference import ReferencePatcher
        from pytest_altpatch.resources import bundled_corpus
        from pytest_altpatch.scenarios import session
        from pytest_altpatch.scenarios.runner import run_case

        machines = []
        make = session._make_machine

        def noting(*args, **kwargs):
            made = make(*args, **kwargs)
            machines.append(weakref.ref(made[0]))
            return made

        session._make_machine = noting
        catalog = load_catalog()
        path = sorted((bundled_corpus() / "cases").rglob("*.yaml"))[0]
        case = load_case(path, catalog)
        for _ in range(5):
            run_case(case, catalog, mode="boot", patcher=ReferencePatcher(case.dialects[0]))
        gc.collect()
        print(len(machines), sum(ref() is not None for ref in machines), gc.get_freeze_count())
    """)
    assert out == "5 0 0"
