"""Findings: rule violations observed while a patcher runs, or by the judge afterwards.

A finding is data, not an exception: the machine records it and (usually) carries on,
and a case may expect some findings.  Codes are stable and lower-case-with-dashes so
they read differently from error codes (``LENGTH_MISMATCH``), which are refusals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

#: Every finding code, with its one-line meaning.
FINDING_CODES: Final[Mapping[str, str]] = {
    # --- the machine ---
    "ro-write": "a store to a mapping without write permission (the store did not happen)",
    "unmapped-access": "a load, store or fetch at a virtual address with no mapping",
    "undefined-instruction": "a CPU executed an undefined or unsupported instruction",
    "fetch-fault": "a CPU fetched an instruction from a mapping without execute permission",
    "stale-fetch": "a CPU executed a modified line before the maintenance sequence completed",
    "cmodx": "a CPU executed a word while another CPU's modification was unsynchronised",
    "budget": "the run exceeded its instruction or host-time budget",
    "hang": "every CPU spun without shared-memory progress",
    "bug": "guest code called the bug() host service",
    "unknown-service": "guest code called a host service number that does not exist",
    "guest-exception": "a CPU took an exception the harness does not model (e.g. HVC, SMC)",
    "probe-fault": "a probe function faulted or did not return",
    "patcher-fault": "a Python patcher's context operation faulted",
    # --- the judge ---
    "unexpected-write": "a byte outside every patched site changed",
    "stream-mismatch": "the instruction stream at a label differs from the expectation",
    "caps-mismatch": "the capabilities chosen differ from the expectation",
    "probe-mismatch": "a probe returned registers that differ from the expectation",
    "missing-finding": "a finding the case expects did not occur",
    "unexpected-finding": "a finding occurred that the case does not allow",
    "error-mismatch": "the error (code or phase) differs from the expectation",
    "unexpected-error": "the run ended with an error the case does not expect",
    "missing-error": "the case expects an error that did not happen",
    "hotplug-mismatch": "a hot-plugged CPU's verdict differs from the expectation",
    "patcher-caps-mismatch": "the patcher's own capability detection differs from the expectation",
    "patcher-hotplug-mismatch": "the patcher's own late-CPU check differs from the expectation",
    # --- the harness, when a patcher entry returns ---
    "alias-left-mapped": "a vmap alias the patcher made was still mapped when it returned",
    "harness-write": "the patcher changed memory the harness owns (detection records, ...)",
}


@dataclass(frozen=True)
class Finding:
    """One observed violation; ``cpu``/``pc``/``address``/``step`` say where and when."""

    code: str
    message: str
    cpu: int | None = None
    pc: int | None = None
    address: int | None = None
    step: int | None = None
    detail: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in FINDING_CODES:
            raise ValueError(f"unregistered finding code {self.code!r}")

    def render(self) -> str:
        """One line for people."""
        where: list[str] = []
        if self.cpu is not None:
            where.append(f"cpu{self.cpu}")
        if self.pc is not None:
            where.append(f"pc={self.pc:#x}")
        if self.address is not None:
            where.append(f"addr={self.address:#x}")
        if self.step is not None:
            where.append(f"step {self.step}")
        prefix = f"[{' '.join(where)}] " if where else ""
        return f"{self.code}: {prefix}{self.message}"


__all__ = ["FINDING_CODES", "Finding"]
