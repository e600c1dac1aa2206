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
from typing import TYPE_CHECKING, Final

from pytest_altpatch.findings import Finding
from pytest_altpatch.machine.config import PAGE_SIZE, Perms

if TYPE_CHECKING:
    from pytest_altpatch.machine.core import Machine

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

    def __init__(self, machine: Machine, cpu: int) -> None:
        self._machine = machine
        self._cpu = cpu

    @property
    def cpu(self) -> int:
        """This CPU's index."""
        return self._cpu

    @property
    def machine(self) -> Machine:
        """The machine (for harness-side adapters such as the native executor)."""
        return self._machine

    def call_guest(self, pc: int, args: Sequence[int] = (), *, sp: int, tpidr: int = 0) -> int:
        """Run the guest function at ``pc`` on this CPU until it returns; its x0.

        The guest code runs under the schedule like any other guest code (its own
        maintenance, barriers and atomics are judged by the fetch model); a fault in it
        raises :class:`GuestFault`.
        """
        return self._machine.call_guest(self._cpu, pc, args, sp=sp, tpidr=tpidr)

    # --- memory ------------------------------------------------------------------------
    def read(self, va: int, size: int) -> bytes:
        """``size`` bytes at ``va`` (every page must be mapped)."""
        self._machine._python_step(self._cpu)
        return self._load(va, size)

    def write(self, va: int, data: bytes) -> None:
        """Store ``data`` at ``va`` (every page must be mapped writable)."""
        self._machine._python_step(self._cpu)
        self._store(va, bytes(data), "store")

    def read32(self, va: int) -> int:
        """The little-endian word at ``va``."""
        return int.from_bytes(self.read(va, 4), "little")

    def write32(self, va: int, word: int) -> None:
        """Store the little-endian word ``word`` at ``va``."""
        self.write(va, (word & _MASK32).to_bytes(4, "little"))

    def load_acquire32(self, va: int) -> int:
        """LDAR of the word at ``va`` (operations are sequentially consistent here)."""
        self._machine._python_step(self._cpu)
        return int.from_bytes(self._load(va, 4), "little")

    def store_release32(self, va: int, value: int) -> None:
        """STLR of ``value`` to the word at ``va``."""
        self._machine._python_step(self._cpu)
        self._store(va, (value & _MASK32).to_bytes(4, "little"), "store-release")

    def xchg32(self, va: int, value: int) -> int:
        """Atomically swap the word at ``va`` with ``value``; returns the old word."""
        self._machine._python_step(self._cpu)
        old = int.from_bytes(self._load(va, 4), "little")
        self._store(va, (value & _MASK32).to_bytes(4, "little"), "xchg")
        return old

    def cas32(self, va: int, expected: int, new: int) -> int:
        """Atomic compare-and-swap of the word at ``va``; returns the old word."""
        self._machine._python_step(self._cpu)
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
        self._machine._python_step(self._cpu)
        self._maintain(name, va)

    def ic(self, op: str, va: int | None = None) -> None:
        """``IC <op>[, va]`` for op in ivau (needs ``va``), iallu, ialluis."""
        name = _IC_OPS.get(op)
        if name is None or (op == "ivau") != (va is not None):
            raise ValueError(f"ic {op!r}: ivau takes a VA, iallu and ialluis do not")
        self._machine._python_step(self._cpu)
        self._maintain(name, va)

    def dsb(self, option: str = "ish") -> None:
        """``DSB <option>``: completes this CPU's earlier cache maintenance."""
        self._check_option(option)
        machine = self._machine
        machine._python_step(self._cpu)
        step = machine._event(self._cpu, "dsb", 0, option)
        machine._fetch.dsb(self._cpu, step)

    def dmb(self, option: str = "ish") -> None:
        """``DMB <option>`` (ordering only; context operations are already ordered)."""
        self._check_option(option)
        self._machine._python_step(self._cpu)

    def isb(self) -> None:
        """``ISB``: context synchronisation of this CPU."""
        machine = self._machine
        machine._python_step(self._cpu)
        step = machine._event(self._cpu, "isb", 0, "sy")
        machine._context_sync(self._cpu, step)

    def relax(self) -> None:
        """A spin-loop hint: one step in which nothing happens."""
        self._machine._python_step(self._cpu).relaxed = True

    # --- aliases, identity, log ------------------------------------------------------------
    def vmap(self, pa: int, size: int) -> int:
        """Map physical [pa, pa+size) RW at a free alias VA; returns the VA of ``pa``."""
        target = self._machine._python_step(self._cpu)
        target.progress += 1
        va = self._machine.vmap(pa, size)
        self._machine._event(self._cpu, "service", va, f"vmap pa={pa:#x} size={size:#x}")
        return va

    def vunmap(self, va: int) -> None:
        """Remove the vmap alias containing ``va``."""
        target = self._machine._python_step(self._cpu)
        target.progress += 1
        self._machine.vunmap(va)
        self._machine._event(self._cpu, "service", va, "vunmap")

    def sysreg(self, name: str) -> int:
        """This CPU's system register ``name`` (``"midr_el1"``, ``"ctr_el0"``, ...)."""
        self._machine._python_step(self._cpu)
        return self._machine.sysreg(self._cpu, name)

    def log(self, message: str) -> None:
        """Put ``message`` in the trace."""
        target = self._machine._python_step(self._cpu)
        target.progress += 1
        self._machine._event(self._cpu, "log", 0, message)

    # --- internals ------------------------------------------------------------------------
    @staticmethod
    def _check_option(option: str) -> None:
        if option not in _BARRIER_OPTIONS:
            raise ValueError(f"barrier option {option!r} is not one of {sorted(_BARRIER_OPTIONS)}")

    def _chunks(self, va: int, size: int, write: bool) -> list[tuple[int, int, int]]:
        """(va, pa, length) per page of the access, or a GuestFault (nothing accessed)."""
        machine = self._machine
        chunks: list[tuple[int, int, int]] = []
        cursor = va
        end = va + size
        while cursor < end:
            length = min(end, (cursor & ~(PAGE_SIZE - 1)) + PAGE_SIZE) - cursor
            found = machine.translate(cursor)
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
        machine = self._machine
        finding = machine._fault(machine._cpus[self._cpu], code, message, pc=None,
                                 address=address, detail={"python": True})
        raise GuestFault(finding)

    def _load(self, va: int, size: int) -> bytes:
        buffer = self._machine._buffer
        return b"".join(buffer[pa:pa + n] for _, pa, n in self._chunks(va, size, write=False))

    def _store(self, va: int, data: bytes, kind: str) -> None:
        machine = self._machine
        offset = 0
        for chunk_va, pa, length in self._chunks(va, len(data), write=True):
            new = data[offset:offset + length]
            old = machine._buffer[pa:pa + length]
            if (pa >> 12) in machine._code_pages:
                machine._store(self._cpu, chunk_va, pa, old, new)
            else:
                machine._event(self._cpu, kind, chunk_va, f"{old.hex()}->{new.hex()}")
            machine._buffer[pa:pa + length] = new
            if old != new:
                machine._cpus[self._cpu].progress += 1
            offset += length

    def _maintain(self, name: str, va: int | None) -> None:
        machine = self._machine
        if not machine._maintenance(self._cpu, name, va, 0):
            fault = machine._cpus[self._cpu].fault
            if fault is not None:
                raise GuestFault(fault)


__all__ = ["CpuContext", "GuestFault"]
