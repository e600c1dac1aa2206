"""One item through the pipeline: run it, judge its outcome, say how to reproduce it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_altpatch.supervisor import (
    ItemRequest,
    collect_item,
    item_request,
    parallel_items,
    run_item,
    started,
    submit_item,
)

if TYPE_CHECKING:  # the judge and the runner load when an item is judged or run here
    from pytest_altpatch.cases.model import Case, Catalog
    from pytest_altpatch.judge import Verdict
    from pytest_altpatch.patchers.contract import Patcher
    from pytest_altpatch.pipeline.loading import PatcherUnderTest
    from pytest_altpatch.pipeline.schedules import ScheduleChoice
    from pytest_altpatch.scenarios.outcome import Outcome


@dataclass(frozen=True)
class Checked:
    """An item's outcome, the judge's verdict on it, and the command that replays it."""

    outcome: Outcome
    verdict: Verdict
    reproduce: str

    @property
    def passed(self) -> bool:
        """Whether every expectation held."""
        return self.verdict.passed


def _request(case: Case, catalog: Catalog, patcher: PatcherUnderTest, mode: str,
             schedule: ScheduleChoice, timeout: float | None) -> ItemRequest:
    return item_request(case, catalog, mode=mode, patcher=patcher.spec,
                        dialect=patcher.facts.asked_dialect, schedule=schedule.schedule,
                        seed=schedule.seed, timeout=timeout, facts=patcher.facts)


def start(case: Case, catalog: Catalog, patcher: PatcherUnderTest, mode: str,
          schedule: ScheduleChoice, *, key: object, timeout: float | None = None,
          alone: bool = False) -> None:
    """Start a supervised item ahead of its turn (when more than one item may run at
    once, or ``alone``: the caller has work of its own meanwhile, not another item);
    :func:`run` or :func:`check` with the same ``key`` collects its outcome."""
    if patcher.instance is None and (alone or parallel_items() > 1) and not started(key):
        submit_item(key, _request(case, catalog, patcher, mode, schedule, timeout),
                    alone=alone)


def run(case: Case, catalog: Catalog, patcher: PatcherUnderTest, mode: str,
        schedule: ScheduleChoice, *, timeout: float | None = None,
        key: object = None) -> Outcome:
    """Run one item: in a supervised worker, or in this process when the patcher object
    is at hand (``--inprocess``); a worker that ends badly is the outcome's error.  An
    item :func:`start`-ed under ``key`` is collected instead of run again."""
    if key is not None and patcher.instance is None and started(key):
        return collect_item(key)
    request = _request(case, catalog, patcher, mode, schedule, timeout)
    return run_item(request, patcher=patcher.instance)


def run_in_process(case: Case, catalog: Catalog, patcher: Patcher, mode: str,
                   schedule: ScheduleChoice, *, timeout: float | None = None) -> Outcome:
    """Run one item in this process against a patcher object (the fixtures' and
    :func:`run_corpus`'s way: no worker, no kill, the machine's cooperative budget)."""
    from pytest_altpatch.scenarios.runner import run_case  # noqa: PLC0415

    return run_case(case, catalog, mode=mode, patcher=patcher,
                    schedule=schedule.schedule, seed=schedule.seed, timeout=timeout)


def judged(case: Case, outcome: Outcome, *, mode: str, patcher: str, schedule: str,
           seed: int, dialect: str | None = None, cwd: Path | None = None) -> Checked:
    """The verdict on ``outcome``, with the ``altpatch show`` line that replays it
    (paths relative to ``cwd``)."""
    from pytest_altpatch.judge import judge  # noqa: PLC0415
    from pytest_altpatch.report import reproduce_command  # noqa: PLC0415

    command = reproduce_command(case.path, mode=mode, patcher=patcher,
                                dialect=dialect, schedule=schedule, seed=seed, cwd=cwd)
    return Checked(outcome, judge(case, outcome), command)


def check(case: Case, catalog: Catalog, patcher: PatcherUnderTest, mode: str,
          schedule: ScheduleChoice, *, timeout: float | None = None,
          cwd: Path | None = None, key: object = None) -> Checked:
    """Run one item (or collect the one started under ``key``) and judge it."""
    outcome = run(case, catalog, patcher, mode, schedule, timeout=timeout, key=key)
    return judged(case, outcome, mode=mode, patcher=patcher.spec, dialect=patcher.dialect,
                  schedule=schedule.label, seed=schedule.seed, cwd=cwd)


__all__ = ["Checked", "check", "judged", "run", "run_in_process", "start"]
