"""The machine's trace: ordered, bounded events that findings and reports quote.

``step`` is the event's position in the machine's single global order (0, 1, 2, ...):
every traced operation of every CPU takes the next step, so steps are unique and the
same inputs, schedule and seed give the same steps.  The ring keeps the most recent
``capacity`` events and counts the ones it dropped.
"""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, overload

DEFAULT_CAPACITY: Final = 8192

#: One event's fields: step, cpu, kind, address, detail.
EventFields = tuple[int, int, str, int, str]


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


@dataclass(frozen=True)
class TraceEvents(Sequence[TraceEvent]):
    """Trace events as an outcome holds them: the fields of each, each made into a
    :class:`TraceEvent` when it is read.

    An outcome crosses from its worker to the session, and a run's trace is thousands
    of events of which a report reads a few dozen: as tuples of plain values they
    pickle and unpickle about ten times faster than as objects."""

    fields: tuple[EventFields, ...] = ()

    def __len__(self) -> int:
        return len(self.fields)

    @overload
    def __getitem__(self, index: int) -> TraceEvent: ...

    @overload
    def __getitem__(self, index: slice) -> TraceEvents: ...

    def __getitem__(self, index: int | slice) -> TraceEvent | TraceEvents:
        if isinstance(index, slice):
            return TraceEvents(self.fields[index])
        return TraceEvent(*self.fields[index])

    def __iter__(self) -> Iterator[TraceEvent]:
        return (TraceEvent(*fields) for fields in self.fields)


class Trace:
    """A bounded ring of TraceEvents with a count of dropped events.

    The ring keeps each event as a plain tuple of its fields and makes the
    :class:`TraceEvent` when it is read: a machine records many more events than
    anything reads (and a long run drops most of them).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[EventFields] = deque(maxlen=max(1, capacity))
        self.dropped = 0

    def record(self, step: int, cpu: int, kind: str, address: int, detail: str) -> None:
        """Record one event by its fields, dropping the oldest one when full."""
        events = self._events
        if len(events) == events.maxlen:
            self.dropped += 1
        events.append((step, cpu, kind, address, detail))

    def append(self, event: TraceEvent) -> None:
        """Record ``event``, dropping the oldest one when full."""
        self.record(event.step, event.cpu, event.kind, event.address, event.detail)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def events(self) -> tuple[TraceEvent, ...]:
        """The kept events, oldest first."""
        return tuple(self.kept())

    def kept(self) -> TraceEvents:
        """The kept events, oldest first, as an outcome holds them."""
        return TraceEvents(tuple(self._events))

    def to_bytes(self) -> bytes:
        """A canonical serialisation (used to compare runs byte for byte)."""
        lines = [f"dropped {self.dropped}"] + [event.render() for event in self.events]
        return ("\n".join(lines) + "\n").encode()


def render_timeline(
    trace: Trace | Iterable[TraceEvent],
    around_step: int,
    *,
    radius: int = 8,
    missing: tuple[int, str] | None = None,
    wrap: int = 40,
) -> str:
    """Per-CPU columns of the events within ``radius`` events of ``around_step``.

    Each event is one row: its step, then its text in the column of its CPU, wrapped
    onto continuation lines at ``wrap`` characters rather than cut; the row of the
    event nearest ``around_step`` is marked with ``>``.  ``missing`` (CPU, text) adds
    a row marked ``+`` just before it: the step that CPU should have taken and did not.
    """
    events: Sequence[TraceEvent] = trace.events if isinstance(trace, Trace) else tuple(trace)
    if not events:
        return "(no trace events)"
    centre = min(range(len(events)), key=lambda i: (abs(events[i].step - around_step), i))
    window = events[max(0, centre - radius): centre + radius + 1]
    cpus = sorted({event.cpu for event in window} | ({missing[0]} if missing else set()))
    column = {cpu: index for index, cpu in enumerate(cpus)}
    rows: list[tuple[str, str, int, list[str]]] = []  # mark, step, column, text lines
    for event in window:
        if missing is not None and event is events[centre]:
            rows.append(("+", "", column[missing[0]], [missing[1]]))
        text = f"{event.kind} {event.address:#x} {event.detail}".strip()
        lines = textwrap.wrap(text, wrap, break_long_words=False) or [""]
        rows.append((">" if event is events[centre] else " ", str(event.step),
                     column[event.cpu], lines))
    widths = [max([len(f"cpu{cpu}"), *(len(line) for _, _, col, lines in rows
                                       if col == column[cpu] for line in lines)])
              for cpu in cpus]
    header = "  step  " + "  ".join(f"cpu{cpu}".ljust(widths[column[cpu]]) for cpu in cpus)
    out = [header.rstrip(), "-" * len(header.rstrip())]
    for mark, step, col, lines in rows:
        for index, line in enumerate(lines):
            cells = [""] * len(cpus)
            cells[col] = line
            head = f"{mark}{step:>6} " if index == 0 else " " * 8
            out.append((head + "  ".join(cell.ljust(width) for cell, width
                                         in zip(cells, widths, strict=True))).rstrip())
    return "\n".join(out)


__all__ = ["DEFAULT_CAPACITY", "EventFields", "Trace", "TraceEvent", "TraceEvents",
           "render_timeline"]
