"""The emulated SMP AArch64 machine of pytest-altpatch.

A :class:`Machine` runs 1-256 unicorn CPUs over one physical memory with a shared
mapping table (text R-X, tables R--, data and stacks RW-, ``vmap`` RW aliases),
serves each CPU its own ID registers, enforces the architecture's rules for modified
code (:mod:`.ifetch`) and records every rule broken as a Finding.  Guest code reaches
the harness through ``svc #imm`` (:mod:`.services`); Python patchers act through a
:class:`CpuContext`.  It knows nothing of YAML or cases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_altpatch.lazy import submodule_exports

if TYPE_CHECKING:  # the same names, imported on first use (pytest_altpatch.lazy)
    from pytest_altpatch.machine.config import (
        Budget,
        CpuConfig,
        MachineError,
        Perms,
        Schedule,
    )
    from pytest_altpatch.machine.context import CpuContext, GuestFault
    from pytest_altpatch.machine.core import (
        HARNESS_VA,
        PROBE_STACK_TOP,
        PROBE_TRAP_VA,
        VMAP_BASE,
        VMAP_LIMIT,
        Machine,
        MappingEntry,
    )
    from pytest_altpatch.machine.ifetch import MAINTENANCE_STEPS
    from pytest_altpatch.machine.results import (
        CpuOutcome,
        CpuState,
        ProbeResult,
        PythonException,
        RunReason,
        RunResult,
    )
    from pytest_altpatch.machine.services import HostService, svc_word
    from pytest_altpatch.machine.trace import Trace, TraceEvent, TraceEvents, render_timeline
    from pytest_altpatch.machine.traps import TrapCall, TrapHandler

_EXPORTS = {
    "config": ("Budget", "CpuConfig", "MachineError", "Perms", "Schedule"),
    "context": ("CpuContext", "GuestFault"),
    "core": (
        "HARNESS_VA",
        "PROBE_STACK_TOP",
        "PROBE_TRAP_VA",
        "VMAP_BASE",
        "VMAP_LIMIT",
        "Machine",
        "MappingEntry",
    ),
    "ifetch": ("MAINTENANCE_STEPS",),
    "results": (
        "CpuOutcome",
        "CpuState",
        "ProbeResult",
        "PythonException",
        "RunReason",
        "RunResult",
    ),
    "services": ("HostService", "svc_word"),
    "trace": ("Trace", "TraceEvent", "TraceEvents", "render_timeline"),
    "traps": ("TrapCall", "TrapHandler"),
}
__getattr__, __dir__ = submodule_exports(__name__, _EXPORTS)

__all__ = [
    "HARNESS_VA",
    "MAINTENANCE_STEPS",
    "PROBE_STACK_TOP",
    "PROBE_TRAP_VA",
    "VMAP_BASE",
    "VMAP_LIMIT",
    "Budget",
    "CpuConfig",
    "CpuContext",
    "CpuOutcome",
    "CpuState",
    "GuestFault",
    "HostService",
    "Machine",
    "MachineError",
    "MappingEntry",
    "Perms",
    "ProbeResult",
    "PythonException",
    "RunReason",
    "RunResult",
    "Schedule",
    "Trace",
    "TraceEvent",
    "TraceEvents",
    "TrapCall",
    "TrapHandler",
    "render_timeline",
    "svc_word",
]
