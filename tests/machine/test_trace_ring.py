"""The trace ring: bounded, ordered, counting what it drops; events read back whole."""

from __future__ import annotations

from pytest_altpatch.machine.trace import Trace, TraceEvent, TraceEvents
from pytest_altpatch.plain_data import dumps, loads


def test_the_ring_keeps_the_newest_events_and_counts_the_rest() -> None:
    trace = Trace(capacity=3)
    for step in range(5):
        trace.record(step, step % 2, "dsb", 0x1000 + 4 * step, f"#{step}")
    assert len(trace) == 3 and trace.dropped == 2
    assert trace.events == tuple(TraceEvent(step, step % 2, "dsb", 0x1000 + 4 * step,
                                            f"#{step}") for step in (2, 3, 4))
    assert list(trace) == list(trace.events)
    assert trace.to_bytes() == (b"dropped 2\n2 cpu0 dsb 0x1008 #2\n3 cpu1 dsb 0x100c #3\n"
                                b"4 cpu0 dsb 0x1010 #4\n")


def test_appending_an_event_is_recording_its_fields() -> None:
    recorded, appended = Trace(capacity=2), Trace(capacity=2)
    events = [TraceEvent(0, 1, "write", 0x40, "pa=0x40 00->01"),
              TraceEvent(1, 0, "isb", 0x44, "sy"), TraceEvent(2, 1, "ic", 0, "ic iallu")]
    for event in events:
        recorded.record(event.step, event.cpu, event.kind, event.address, event.detail)
        appended.append(event)
    assert recorded.events == appended.events == tuple(events[1:])
    assert recorded.to_bytes() == appended.to_bytes()
    assert (recorded.dropped, appended.dropped) == (1, 1)


def test_a_read_is_a_snapshot() -> None:
    trace = Trace(capacity=4)
    trace.record(0, 0, "start", 0x400000, "")
    before = trace.events
    trace.record(1, 0, "done", 0x400004, "")
    assert len(before) == 1 and len(trace.events) == 2
    assert trace.events[0] == before[0] and trace.events[0].render() == "0 cpu0 start 0x400000"


def test_an_outcomes_events_read_as_the_rings_and_pickle_as_plain_fields() -> None:
    """What an outcome holds (``Trace.kept``) reads back as the ring's events, one by
    one, by slice, in order; it crosses from a worker as tuples of plain values (no
    TraceEvent objects in the pickle) and reads back equal."""
    trace = Trace(capacity=8)
    for step in range(12):
        trace.record(step, step % 3, "write", 0x2000 + 4 * step, f"pa={0x2000 + 4 * step:#x}")
    kept = trace.kept()
    assert len(kept) == 8 and bool(kept) and not TraceEvents()
    assert tuple(kept) == trace.events and kept[0] == trace.events[0]
    assert kept[-1] == TraceEvent(11, 2, "write", 0x202C, "pa=0x202c")
    assert isinstance(kept[-3:], TraceEvents) and tuple(kept[-3:]) == trace.events[-3:]
    assert [event.step for event in kept if event.cpu == 1] == [4, 7, 10]
    trace.record(12, 0, "isb", 0, "")
    assert len(kept) == 8 and kept != trace.kept()  # a snapshot, like ``events``
    data = dumps(kept)
    assert b"TraceEvent\x94" not in data and b"TraceEvents" in data
    assert loads(data) == kept
