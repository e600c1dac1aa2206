"""The machine's trace: ordered, bounded events that findings and reports quote.

``step`` is the event's position in the machine's single global order (0, 1, 2, ...):
every traced operation of every CPU takes the next step, so steps are unique and the
same inputs, schedule and seed give the same steps.  The ring keeps the most recent
``capacity`` events and counts the ones it dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

DEFAULT_CAPACITY: Final = 8192


@dataclass(frozen=True)
class TraceEvent:
    """One event: ``kind`` is write, dc, ic, dsb, isb, fetch-stale, cmodx, service,
    fault, start, done, park, log, ...; ``address`` a VA (0 when none)."""

    step: int
    cpu: int
    kind: str
    address: int
    detail: str

    def render(self) -> str:
        """One line: ``step cpu kind address detail``."""
        return f"{self.step} cpu{self.cpu} {self.kind} {self.address:#x} {self.detail}".rstrip()


class Trace:
    """A bounded ring of TraceEvents with a count of dropped events."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[TraceEvent] = deque(maxlen=max(1, capacity))
        self.dropped = 0

    def append(self, event: TraceEvent) -> None:
        """Record ``event``, dropping the oldest one when full."""
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(tuple(self._events))

    def __len__(self) -> int:
        return len(self._events)

    @property
    def events(self) -> tuple[TraceEvent, ...]:
        """The kept events, oldest first."""
        return tuple(self._events)

    def to_bytes(self) -> bytes:
        """A canonical serialisation (used to compare runs byte for byte)."""
        lines = [f"dropped {self.dropped}"] + [event.render() for event in self._events]
        return ("\n".join(lines) + "\n").encode()


def render_timeline(
    trace: Trace | Iterable[TraceEvent],
    around_step: int,
    *,
    radius: int = 8,
    width: int = 30,
) -> str:
    """Per-CPU columns of the events within ``radius`` events of ``around_step``.

    Each row is one event: its step, then its text in the column of its CPU; the row
    of the event nearest ``around_step`` is marked with ``>``.
    """
    events: Sequence[TraceEvent] = trace.events if isinstance(trace, Trace) else tuple(trace)
    if not events:
        return "(no trace events)"
    centre = min(range(len(events)), key=lambda i: (abs(events[i].step - around_step), i))
    window = events[max(0, centre - radius): centre + radius + 1]
    cpus = sorted({event.cpu for event in window})
    column = {cpu: index for index, cpu in enumerate(cpus)}
    header = "  step  " + " ".join(f"cpu{cpu}".ljust(width) for cpu in cpus)
    rows = [header.rstrip(), ("-" * len(header)).rstrip()]
    for event in window:
        cells = [""] * len(cpus)
        text = f"{event.kind} {event.address:#x} {event.detail}".strip()
        cells[column[event.cpu]] = text[:width]
        mark = ">" if event is events[centre] else " "
        rows.append(f"{mark}{event.step:6d} " + " ".join(cell.ljust(width) for cell in cells))
        rows[-1] = rows[-1].rstrip()
    return "\n".join(rows)


__all__ = ["DEFAULT_CAPACITY", "Trace", "TraceEvent", "render_timeline"]
