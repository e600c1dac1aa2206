"""The narrow port through which CPU-side objects act on the machine.

:class:`~.context.CpuContext` (Python patchers), :class:`~.guest_services.ServiceCall`
(native services) and :class:`~.traps.TrapCall` (code traps) never see the machine's
parts; the machine hands them one :class:`MachinePort`, whose fields are the parts'
own bound methods (no extra call layer on the hot path).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.config import Perms
from pytest_altpatch.machine.cpu import CpuRuntime


class EventFn(Protocol):
    """Append a trace event; returns its step."""

    def __call__(self, cpu: int, kind: str, address: int, detail: str = "") -> int:
        """(see the class)"""


class FaultFn(Protocol):
    """Record a fault: the CPU stops (a Python CPU gets a GuestFault instead)."""

    def __call__(self, cpu: CpuRuntime, code: str, message: str, *, pc: int | None,
                 address: int | None = None,
                 detail: Mapping[str, object] | None = None) -> Finding:
        """(see the class)"""


class CallGuestFn(Protocol):
    """Run a guest function from a Python CPU; its x0."""

    def __call__(self, cpu: int, pc: int, args: Sequence[int] = (), *, sp: int,
                 tpidr: int = 0) -> int:
        """(see the class)"""


@dataclass(frozen=True)
class MachinePort:
    """What CPU-side objects may use of one machine."""

    #: Every CPU's runtime state, by index.
    cpus: Sequence[CpuRuntime]
    #: Physical memory (raw: no permissions, no fetch model).
    buffer: mmap.mmap
    #: Physical pages whose stores feed the fetch model.
    code_pages: Set[int]
    #: The machine's one VA -> (PA, permissions) step.
    translate: Callable[[int], tuple[int, Perms] | None]
    read_phys: Callable[[int, int], bytes]
    read_virtual: Callable[[int, int], bytes | None]
    event: EventFn
    fault: FaultFn
    #: One schedule step of a Python CPU (its gate); returns the CPU's state.
    python_step: Callable[[int], CpuRuntime]
    call_guest: CallGuestFn
    #: A store by ``cpu`` over code pages: (cpu, va, pa, old, new).
    store_code: Callable[[int, int, int, bytes, bytes], None]
    #: DC/IC by ``cpu``: (cpu, name, va or None, pc) -> False when it faulted.
    maintenance: Callable[[int, str, int | None, int], bool]
    dsb: Callable[[int, int], None]
    context_sync: Callable[[int, int], None]
    vmap: Callable[[int, int], int]
    vunmap: Callable[[int], None]
    sysreg: Callable[[int, str], int]
    #: The Machine itself, for harness-side adapters (typed Any: the port sits below it).
    owner: Any


__all__ = ["CallGuestFn", "EventFn", "FaultFn", "MachinePort"]
