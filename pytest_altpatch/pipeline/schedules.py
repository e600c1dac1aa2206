"""The schedules a session asks for: ``rr:100,random:1-3,adversarial`` -> one choice each."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.machine import Schedule


@dataclass(frozen=True)
class ScheduleChoice:
    """One schedule to run a case under; ``label`` goes into item ids.

    ``schedule`` is the parsed schedule, handed on as it is; ``seed`` is the machine's
    seed (the schedule's own, unless a face overrides it with ``--seed``).
    """

    name: str
    seed: int
    label: str
    schedule: Schedule

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleChoice:
        """The choice for one parsed schedule: named, labelled and seeded by it."""
        return cls(str(schedule), schedule.seed, str(schedule), schedule)


def parse_schedules(text: str | Schedule) -> tuple[ScheduleChoice, ...]:
    """``rr:100,random:1-3,pct:0-2,adversarial`` -> one choice per schedule (ranges
    expanded); a :class:`Schedule` object is one choice, not parsed again."""
    if isinstance(text, Schedule):
        return (ScheduleChoice.of(text),)
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
            choices += [ScheduleChoice(f"{kind}:{n}", n, f"{kind}:{n}",
                                       Schedule.parse(f"{kind}:{n}"))
                        for n in range(low, high + 1)]
            continue
        try:
            schedule = Schedule.parse(item)
        except AltpatchError as exc:
            raise exc.with_phase("load") from None
        choices.append(ScheduleChoice.of(schedule))
    if not choices:
        raise AltpatchError("MACHINE_SCHEDULE", f"no schedule in {text!r}", phase="load")
    return tuple(dict.fromkeys(choices))


__all__ = ["ScheduleChoice", "parse_schedules"]
