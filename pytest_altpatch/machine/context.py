"""The per-CPU context through which Python patchers act on the machine.

A Python CPU (``Machine.start_python``) runs its function in a greenlet; every method
of :class:`CpuContext` is one step of the schedule, so the scheduler switches to the
other CPUs between operations exactly as it does between guest instruction slices.
Accesses go through the shared mapping table with the guest's rules: a store through a
read-only VA is finding ``ro-write`` (the store does not happen) and raises
:class:`GuestFault` inside the patcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pytest_altpatch.a64.granule import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.config import Perms
from pytest_altpatch.machine.port import MachinePort

_MASK32: Final = 0xFFFFFFFF
_DC_OPS: Final = {"cvau": "dc cvau", "cvac": "dc cvac", "civac": "dc civac"}
_IC_OPS: Final = {"ivau": "ic ivau", "iallu": "ic iallu", "ialluis": "ic ialluis"}
_BARRIER_OPTIONS: Final = frozenset(
    {"sy", "st", "ld", "ish", "ishst", "ishld", "nsh", "nshst", "nshld", "osh", "oshst", "oshld"}
)


class GuestFault(Exception):
    """A context operation faulted like guest code would; ``finding`` says how."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(finding.render())


class CpuContext:
    """What a Python patcher running on one CPU can do (one schedule step per call)."""

    def __init__(self, port: MachinePort, cpu: int) -> None:
        self._port = port
        self._cpu = cpu

    @property
    def cpu(self) -> int:
        """This CPU's index."""
        return self._cpu

    @property
    def machine(self) -> Any:
        """The Machine (for harness-side adapters such as the native executor; typed Any
        because the context sits below the machine that builds it)."""
        return self._port.owner

    def call_guest(self, pc: int, args: Sequence[int] = (), *, sp: int, tpidr: int = 0) -> int:
        """Run the guest function at ``pc`` on this CPU until it returns; its x0.

        The guest code runs under the schedule like any other guest code (its own
        maintenance, barriers and atomics are judged by the fetch model); a fault in it
        raises :class:`GuestFault`.
        """
        return self._port.call_guest(self._cpu, pc, args, sp=sp, tpidr=tpidr)

    # --- memory ------------------------------------------------------------------------
    def read(self, va: int, size: int) -> bytes:
        """``size`` bytes at ``va`` (every page must be mapped)."""
        self._port.python_step(self._cpu)
        return self._load(va, size)

    def write(self, va: int, data: bytes) -> None:
        """Store ``data`` at ``va`` (every page must be mapped writable)."""
        self._port.python_step(self._cpu)
        self._store(va, bytes(data), "store")

    def read32(self, va: int) -> int:
        """The little-endian word at ``va``."""
        return int.from_bytes(self.read(va, 4), "little")

    def write32(self, va: int, word: int) -> None:
        """Store the little-endian word ``word`` at ``va``."""
        self.write(va, (word & _MASK32).to_bytes(4, "little"))

    def load_acquire32(self, va: int) -> int:
        """LDAR of the word at ``va`` (operations are sequentially consistent here)."""
        self._port.python_step(self._cpu)
        return int.from_bytes(self._load(va, 4), "little")

    def store_release32(self, va: int, value: int) -> None:
        """STLR of ``value`` to the word at ``va``."""
        self._port.python_step(self._cpu)
        self._store(va, (value & _MASK32).to_bytes(4, "little"), "store-release")

    def xchg32(self, va: int, value: int) -> int:
        """Atomically swap the word at ``va`` with ``value``; returns the old word."""
        self._port.python_step(self._cpu)
        old = int.from_bytes(self._load(va, 4), "little")
        self._store(va, (value & _MASK32).to_bytes(4, "little"), "xchg")
        return old

    def cas32(self, va: int, expected: int, new: int) -> int:
        """Atomic compare-and-swap of the word at ``va``; returns the old word."""
        self._port.python_step(self._cpu)
        old = int.from_bytes(self._load(va, 4), "little")
        if old == expected & _MASK32:
            self._store(va, (new & _MASK32).to_bytes(4, "little"), "cas")
        return old

    # --- cache maintenance and barriers ----------------------------------------------
    def dc(self, op: str, va: int) -> None:
        """``DC <op>, va`` for op in cvau, cvac, civac."""
        name = _DC_OPS.get(op)
        if name is None:
            raise ValueError(f"dc op {op!r} is not one of {sorted(_DC_OPS)}")
        self._port.python_step(self._cpu)
        self._maintain(name, va)

    def ic(self, op: str, va: int | None = None) -> None:
        """``IC <op>[, va]`` for op in ivau (needs ``va``), iallu, ialluis."""
        name = _IC_OPS.get(op)
        if name is None or (op == "ivau") != (va is not None):
            raise ValueError(f"ic {op!r}: ivau takes a VA, iallu and ialluis do not")
        self._port.python_step(self._cpu)
        self._maintain(name, va)

    def dsb(self, option: str = "ish") -> None:
        """``DSB <option>``: completes this CPU's earlier cache maintenance."""
        self._check_option(option)
        port = self._port
        port.python_step(self._cpu)
        step = port.event(self._cpu, "dsb", 0, option)
        port.dsb(self._cpu, step)

    def dmb(self, option: str = "ish") -> None:
        """``DMB <option>`` (ordering only; context operations are already ordered)."""
        self._check_option(option)
        self._port.python_step(self._cpu)

    def isb(self) -> None:
        """``ISB``: context synchronisation of this CPU."""
        port = self._port
        port.python_step(self._cpu)
        step = port.event(self._cpu, "isb", 0, "sy")
        port.context_sync(self._cpu, step)

    def relax(self) -> None:
        """A spin-loop hint: one step in which nothing happens."""
        self._port.python_step(self._cpu).relaxed = True

    # --- aliases, identity, log ------------------------------------------------------------
    def vmap(self, pa: int, size: int) -> int:
        """Map physical [pa, pa+size) RW at a free alias VA; returns the VA of ``pa``."""
        port = self._port
        port.python_step(self._cpu).progress += 1
        va = port.vmap(pa, size)
        port.event(self._cpu, "service", va, f"vmap pa={pa:#x} size={size:#x}")
        return va

    def vunmap(self, va: int) -> None:
        """Remove the vmap alias containing ``va``."""
        port = self._port
        port.python_step(self._cpu).progress += 1
        port.vunmap(va)
        port.event(self._cpu, "service", va, "vunmap")

    def sysreg(self, name: str) -> int:
        """This CPU's system register ``name`` (``"midr_el1"``, ``"ctr_el0"``, ...)."""
        self._port.python_step(self._cpu)
        return self._port.sysreg(self._cpu, name)

    def log(self, message: str) -> None:
        """Put ``message`` in the trace."""
        port = self._port
        port.python_step(self._cpu).progress += 1
        port.event(self._cpu, "log", 0, message)

    # --- internals ------------------------------------------------------------------------
    @staticmethod
    def _check_option(option: str) -> None:
        if option not in _BARRIER_OPTIONS:
            raise ValueError(f"barrier option {option!r} is not one of {sorted(_BARRIER_OPTIONS)}")

    def _chunks(self, va: int, size: int, write: bool) -> list[tuple[int, int, int]]:
        """(va, pa, length) per page of the access, or a GuestFault (nothing accessed)."""
        translate = self._port.translate
        chunks: list[tuple[int, int, int]] = []
        cursor = va
        end = va + size
        while cursor < end:
            length = min(end, (cursor & ~PAGE_MASK) + PAGE_SIZE) - cursor
            found = translate(cursor)
            if found is None:
                self._raise("unmapped-access",
                            f"{'store to' if write else 'load from'} unmapped address "
                            f"{cursor:#x}", cursor)
            pa, perms = found  # type: ignore[misc]
            if write and Perms.W not in perms:
                self._raise("ro-write", f"store to a {perms.text} mapping at {cursor:#x}",
                            cursor)
            chunks.append((cursor, pa, length))
            cursor += length
        return chunks

    def _raise(self, code: str, message: str, address: int) -> None:
        port = self._port
        finding = port.fault(port.cpus[self._cpu], code, message, pc=None,
                             address=address, detail={"python": True})
        raise GuestFault(finding)

    def _load(self, va: int, size: int) -> bytes:
        port = self._port
        if (va & PAGE_MASK) + size <= PAGE_SIZE:  # within one page (a spinner's every read)
            found = port.translate(va)
            if found is not None:
                pa = found[0]
                return port.buffer[pa:pa + size]
        buffer = port.buffer
        return b"".join(buffer[pa:pa + n] for _, pa, n in self._chunks(va, size, write=False))

    def _store(self, va: int, data: bytes, kind: str) -> None:
        port = self._port
        buffer = port.buffer
        offset = 0
        for chunk_va, pa, length in self._chunks(va, len(data), write=True):
            new = data[offset:offset + length]
            old = buffer[pa:pa + length]
            if (pa >> PAGE_SHIFT) in port.code_pages:
                port.store_code(self._cpu, chunk_va, pa, old, new)
            else:
                port.event(self._cpu, kind, chunk_va, f"{old.hex()}->{new.hex()}")
            buffer[pa:pa + length] = new
            if old != new:
                port.cpus[self._cpu].progress += 1
            offset += length

    def _maintain(self, name: str, va: int | None) -> None:
        port = self._port
        if not port.maintenance(self._cpu, name, va, 0):
            fault = port.cpus[self._cpu].fault
            if fault is not None:
                raise GuestFault(fault)


__all__ = ["CpuContext", "GuestFault"]
