"""What a run or a probe hands back (frozen data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pytest_altpatch.findings import Finding

CpuState = Literal["idle", "running", "done", "parked", "faulted"]
RunReason = Literal["stopped", "until", "budget", "hang"]


@dataclass(frozen=True)
class PythonException:
    """An exception a Python CPU's function raised (for PATCHER_RAISED)."""

    type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class CpuOutcome:
    """One CPU at the end of a run.

    ``result`` is x0 of the ``done`` service for guest CPUs and the function's return
    value for Python CPUs; ``instructions`` counts granted guest instructions plus
    Python context operations since the machine was built.
    """

    cpu: int
    state: CpuState
    pc: int
    result: object
    instructions: int
    exception: PythonException | None = None


@dataclass(frozen=True)
class RunResult:
    """Why a run ended (``stopped``: no CPU left running), each CPU, and new findings."""

    reason: RunReason
    cpus: tuple[CpuOutcome, ...]
    findings: tuple[Finding, ...]
    instructions: int


@dataclass(frozen=True)
class ProbeResult:
    """x0..x7 after a probe call, the findings it produced, and whether it returned."""

    x: tuple[int, ...]
    findings: tuple[Finding, ...]
    completed: bool


__all__ = ["CpuOutcome", "CpuState", "ProbeResult", "PythonException", "RunReason", "RunResult"]
