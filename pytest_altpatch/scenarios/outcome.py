"""What a scenario observed: plain, frozen data the judge and reports read.

An outcome records the machine's state after each phase (boot; or, late, after the
payload's alternatives, after apply and after revert) as section snapshots, the
capabilities chosen, probe results, findings and the error that ended the run, if
any.  It never says whether the case passed: that is the judge's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_altpatch.errors import ErrorInfo
from pytest_altpatch.findings import Finding
from pytest_altpatch.image.model import AltEntry, Image
from pytest_altpatch.machine.trace import TraceEvents


@dataclass(frozen=True)
class SectionSnapshot:
    """One section's bytes as built and as found after a phase."""

    name: str
    va: int
    before: bytes
    after: bytes
    kind: str

    def read(self, address: int, size: int) -> bytes | None:
        """``size`` bytes at ``address`` after the phase, or None if outside."""
        if self.va <= address and address + size <= self.va + len(self.after):
            offset = address - self.va
            return self.after[offset:offset + size]
        return None


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe call on one CPU."""

    probe_index: int
    call: str
    cpu: int
    args: Mapping[str, int]
    registers: tuple[int, ...]  # x0..x7 after the call
    completed: bool
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class HotplugOutcome:
    """The verdict the harness reached for one hot-plugged CPU."""

    cpu: int  # the CPU number (INTERPRETING §2: platform CPUs, then late CPUs)
    late_index: int  # index into the case's late_cpus
    accepted: bool
    code: str | None
    message: str
    #: The patcher's own verdict (``late-cpu-check``): None when it has no check.
    patcher_accepted: bool | None = None
    patcher_code: str | None = None

    @property
    def machine_cpu(self) -> int:
        """The machine's CPU number, the same as :attr:`cpu` (one numbering)."""
        return self.cpu


@dataclass(frozen=True)
class PhaseOutcome:
    """The machine after one phase."""

    phase: str  # "boot", "load", "apply", "revert", "hotplug"
    caps: tuple[str, ...] = ()
    caps_per_cpu: tuple[tuple[str, ...], ...] = ()
    sections: tuple[SectionSnapshot, ...] = ()
    probes: tuple[ProbeOutcome, ...] = ()
    findings: tuple[Finding, ...] = ()
    error: ErrorInfo | None = None
    #: Address ranges the patcher was entitled to change in this phase.
    patchable: tuple[tuple[int, int], ...] = ()
    #: The capabilities the patcher's own detection decided (``cpu-detection``), if any.
    patcher_caps: tuple[str, ...] | None = None

    def read(self, address: int, size: int) -> bytes | None:
        """Bytes after the phase at ``address``, from whichever section holds them."""
        for section in self.sections:
            found = section.read(address, size)
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Outcome:
    """Everything one run of a case under one patcher and schedule observed."""

    case_id: str
    mode: str
    schedule: str
    seed: int
    patcher: str
    dialect: str
    image: Image | None = None
    #: Every symbol a label in the case may name: the image's, plus loaded payloads'.
    symbols: Mapping[str, int] = field(default_factory=dict)
    phases: tuple[PhaseOutcome, ...] = ()
    hotplug: tuple[HotplugOutcome, ...] = ()
    #: An error that ended the run (any phase); phases before it are still recorded.
    error: ErrorInfo | None = None
    #: The machine's trace (bounded: the most recent events) and how many were dropped.
    trace: TraceEvents = field(default_factory=TraceEvents)
    trace_dropped: int = 0
    instructions: int = 0  # guest instructions and context operations, all CPUs
    #: CPUs that took no part after boot (Xen parking), by machine CPU number.
    parked: tuple[int, ...] = ()
    #: The alternatives of each loaded payload (late mode): (payload name, entry).
    payload_entries: tuple[tuple[str, AltEntry], ...] = ()

    def phase(self, name: str) -> PhaseOutcome | None:
        """The outcome of phase ``name``, or None if the run never got there."""
        for phase in self.phases:
            if phase.phase == name:
                return phase
        return None

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding of every phase, in order, with those raised while its probes ran
        (``altpatch show`` lists what the verdict judged)."""
        return tuple(f for phase in self.phases
                     for f in (*phase.findings, *(g for p in phase.probes for g in p.findings)))


__all__ = [
    "HotplugOutcome",
    "Outcome",
    "PhaseOutcome",
    "ProbeOutcome",
    "SectionSnapshot",
]
