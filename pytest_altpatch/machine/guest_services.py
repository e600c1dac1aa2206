"""Services added to the machine by its users (native patcher services, symbolizers).

A handler registered with :meth:`Machine.add_service` is called when a CPU executes
``svc #imm`` for its immediate; it sees the CPU's registers through a
:class:`ServiceCall` and may set x0, end the CPU's guest call, or fault the CPU.
The SVC is an exception for the calling CPU (a context synchronisation) and ends its
slice, exactly like the built-in services.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from unicorn import arm64_const as arm64

if TYPE_CHECKING:
    from pytest_altpatch.machine.core import Machine

_X_REGS: Final = tuple(getattr(arm64, f"UC_ARM64_REG_X{i}") for i in range(31))
#: Longest string a service reads from guest memory.
MAX_GUEST_STRING: Final = 512


class ServiceCall:
    """One ``svc #imm`` being served: the calling CPU's registers and what to do next."""

    def __init__(self, machine: Machine, cpu: int, uc: Any, pc: int) -> None:
        self._machine = machine
        self._uc = uc
        self.cpu = cpu
        self.pc = pc
        #: Whether this call counts as progress for the hang detector (a poll does not).
        self.progress = True

    @property
    def machine(self) -> Machine:
        """The machine the call runs on."""
        return self._machine

    def x(self, index: int) -> int:
        """The value of register x``index``."""
        return int(self._uc.reg_read(_X_REGS[index]))

    def set_x(self, index: int, value: int) -> None:
        """Set register x``index`` (the result of a service goes in x0)."""
        self._uc.reg_write(_X_REGS[index], value & (2**64 - 1))

    def read(self, va: int, size: int) -> bytes | None:
        """``size`` bytes at ``va`` through the mappings (None when a page is unmapped)."""
        chunks: list[bytes] = []
        cursor, end = va, va + size
        while cursor < end:
            found = self._machine.translate(cursor)
            if found is None:
                return None
            length = min(end, (cursor | 0xFFF) + 1) - cursor
            chunks.append(self._machine.read_phys(found[0], length))
            cursor += length
        return b"".join(chunks)

    def string(self, va: int, limit: int = MAX_GUEST_STRING) -> str:
        """The NUL-terminated string at ``va`` (at most ``limit`` bytes; ``?`` if unmapped)."""
        collected = bytearray()
        while len(collected) < limit:
            byte = self.read(va + len(collected), 1)
            if byte is None:
                return collected.decode("utf-8", "replace") + "?"
            if byte == b"\0":
                break
            collected += byte
        return collected.decode("utf-8", "replace")

    def log(self, detail: str) -> None:
        """Put a ``log`` event in the trace."""
        self._machine._event(self.cpu, "log", self.pc, detail)

    def end_call(self, result: int) -> None:
        """End the CPU's guest call as if its function returned ``result``."""
        target = self._machine._cpus[self.cpu]
        target.guest_call = False
        target.result = result

    def fault(self, code: str, message: str, detail: Mapping[str, object] | None = None,
              *, pc: int | None = None) -> None:
        """Record finding ``code`` at ``pc`` (default: the SVC) and stop the CPU."""
        machine = self._machine
        machine._fault(machine._cpus[self.cpu], code, message,
                       pc=self.pc if pc is None else pc, detail=detail)


ServiceHandler = Callable[[ServiceCall], None]
"""Serves one SVC immediate."""

Symbolizer = Callable[[int], "str | None"]
"""Names a code address (``symbol+0x10 (file.c:42)``), or None when it is not its own."""

__all__ = ["MAX_GUEST_STRING", "ServiceCall", "ServiceHandler", "Symbolizer"]
