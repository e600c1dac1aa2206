"""The pipeline every face runs: one case, one mode, one schedule, one patcher.

Resolve the schedules a session asks for, decide whether a case applies to a patcher,
run the item (in a supervised worker, or in process), judge its outcome, and say how to
reproduce a failure.  The pytest plugin, the fixtures and the ``altpatch`` command are
thin faces over :func:`check`; nothing here imports pytest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_altpatch.cases.model import Case
from pytest_altpatch.cases.modes import MODES, case_modes, has_mode
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.machine import Schedule
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.patchers.facts import PatcherFacts

# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class ScheduleChoice:
    """One schedule to run a case under; ``label`` goes into item ids."""

    name: str
    seed: int
    label: str


def parse_schedules(text: str) -> tuple[ScheduleChoice, ...]:
    """``rr:100,random:1-3,pct:0-2,adversarial`` -> one choice per schedule (ranges
    expanded)."""
    choices: list[ScheduleChoice] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        span = re.fullmatch(r"(random|pct):(\d+)-(\d+)", item)
        if span is not None:
            kind, low, high = span.group(1), int(span.group(2)), int(span.group(3))
            if high < low or high - low > 1000:
                raise AltpatchError("MACHINE_SCHEDULE", f"bad seed range in {item!r}",
                                    phase="load")
            choices += [ScheduleChoice(f"{kind}:{n}", n, f"{kind}:{n}")
                        for n in range(low, high + 1)]
            continue
        try:
            schedule = Schedule.parse(item)
        except AltpatchError as exc:
            raise exc.with_phase("load") from None
        choices.append(ScheduleChoice(str(schedule), schedule.seed, str(schedule)))
    if not choices:
        raise AltpatchError("MACHINE_SCHEDULE", f"no schedule in {text!r}", phase="load")
    return tuple(dict.fromkeys(choices))


# --------------------------------------------------------------------------- applicability


def not_applicable(case: Case, patcher: Patcher | PatcherFacts, mode: str) -> str | None:
    """Why ``case`` cannot run against ``patcher`` in ``mode``, or None if it can."""
    missing = [name for name in case.requires if name not in patcher.features]
    if missing:
        return f"{patcher.name} does not declare feature(s): {', '.join(missing)}"
    if patcher.dialect not in case.dialects:
        return (f"case is written for {', '.join(case.dialects)}; "
                f"{patcher.name} implements {patcher.dialect}")
    if not has_mode(case, mode):
        return f"case has no {mode} expectations"
    return None




__all__ = ["MODES", "ScheduleChoice", "case_modes", "has_mode", "not_applicable",
           "parse_schedules"]
