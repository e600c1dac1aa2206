"""Services added to the machine by its users (native patcher services, symbolizers).

A handler registered with :meth:`Machine.add_service` is called when a CPU executes
``svc #imm`` for its immediate; it sees the CPU's registers through a
:class:`ServiceCall` and may set x0, end the CPU's guest call, or fault the CPU.
The SVC is an exception for the calling CPU (a context synchronisation) and ends its
slice, exactly like the built-in services.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pytest_altpatch.a64.granule import PAGE_MASK
from pytest_altpatch.machine.cpu import MASK64, X_REGS
from pytest_altpatch.machine.port import MachinePort

#: Longest string a service reads from guest memory.
MAX_GUEST_STRING: Final = 512


class ServiceCall:
    """One ``svc #imm`` being served: the calling CPU's registers and what to do next."""

    def __init__(self, port: MachinePort, cpu: int, uc: Any, pc: int) -> None:
        self._port = port
        self._uc = uc
        self.cpu = cpu
        self.pc = pc
        #: Whether this call counts as progress for the hang detector (a poll does not).
        self.progress = True

    @property
    def machine(self) -> Any:
        """The Machine the call runs on (typed Any: this module sits below it)."""
        return self._port.owner

    def x(self, index: int) -> int:
        """The value of register x``index``."""
        return int(self._uc.reg_read(X_REGS[index]))

    def set_x(self, index: int, value: int) -> None:
        """Set register x``index`` (the result of a service goes in x0)."""
        self._uc.reg_write(X_REGS[index], value & MASK64)

    def read(self, va: int, size: int) -> bytes | None:
        """``size`` bytes at ``va`` through the mappings (None when a page is unmapped)."""
        chunks: list[bytes] = []
        cursor, end = va, va + size
        while cursor < end:
            found = self._port.translate(cursor)
            if found is None:
                return None
            length = min(end, (cursor | PAGE_MASK) + 1) - cursor
            chunks.append(self._port.read_phys(found[0], length))
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
        self._port.event(self.cpu, "log", self.pc, detail)

    def end_call(self, result: int) -> None:
        """End the CPU's guest call as if its function returned ``result``."""
        target = self._port.cpus[self.cpu]
        target.guest_call = False
        target.result = result

    def fault(self, code: str, message: str, detail: Mapping[str, object] | None = None,
              *, pc: int | None = None) -> None:
        """Record finding ``code`` at ``pc`` (default: the SVC) and stop the CPU."""
        port = self._port
        port.fault(port.cpus[self.cpu], code, message,
                       pc=self.pc if pc is None else pc, detail=detail)


ServiceHandler = Callable[[ServiceCall], None]
"""Serves one SVC immediate."""

Symbolizer = Callable[[int], "str | None"]
"""Names a code address (``symbol+0x10 (file.c:42)``), or None when it is not its own."""

__all__ = ["MAX_GUEST_STRING", "ServiceCall", "ServiceHandler", "Symbolizer"]
