"""The machine's record: trace events, findings, the symbolizers that name code, and
the progress signal the hang detector watches."""

from __future__ import annotations

from collections.abc import Mapping

from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.guest_services import Symbolizer
from pytest_altpatch.machine.trace import Trace


class EventLog:
    """Trace steps and findings in order; every part of one machine appends here."""

    def __init__(self, trace_capacity: int) -> None:
        self.trace = Trace(trace_capacity)
        #: The step the next event gets (events are numbered from 0).
        self.step = 0
        self.findings: list[Finding] = []
        self.symbolizers: list[Symbolizer] = []
        #: Trace step of a write to code -> the PC of its store instruction.
        self.writers: dict[int, int] = {}
        #: None after any progress event; the hang detector restarts from there.
        self.hang_seen: bool | None = None

    def event(self, cpu: int, kind: str, address: int, detail: str = "") -> int:
        """Append an event to the trace; returns its step."""
        step = self.step
        self.step += 1
        self.trace.record(step, cpu, kind, address, detail)
        return step

    def progress(self) -> None:
        """Something changed that spinning CPUs may wait for (restarts hang detection)."""
        self.hang_seen = None

    def where(self, pc: int) -> str | None:
        """What a symbolizer says about ``pc``, or None."""
        for symbolizer in self.symbolizers:
            found = symbolizer(pc)
            if found is not None:
                return found
        return None

    def report(self, code: str, message: str, cpu: int, *, pc: int | None = None,
               address: int | None = None, detail: Mapping[str, object] | None = None,
               kind: str | None = None) -> Finding:
        """Record finding ``code`` (and its trace event, of ``kind`` or the code)."""
        details = dict(detail or {})
        where = self.where(pc) if pc is not None else None
        if where is not None:
            message = f"{message} (at {where})"
            details["where"] = where
        step = self.event(cpu, kind or code, address if address is not None else (pc or 0),
                          message)
        finding = Finding(code, message, cpu=cpu, pc=pc, address=address, step=step,
                          detail=details)
        self.findings.append(finding)
        return finding


__all__ = ["EventLog"]
