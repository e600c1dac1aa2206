"""Physical memory and the mapping table shared by all CPUs.

One host buffer holds physical memory (plus the harness window after it); the table
maps VA pages to (PA page, permissions, kind).  :meth:`MemoryMap.translate` is the one
VA -> PA step of the machine.  The table tells a :class:`MappingListener` (the hook
bookkeeping) what changed, so unicorn's view and the hooks follow it.
"""

from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass
from typing import Final, Protocol

from unicorn import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE

from pytest_altpatch.a64.granule import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, align_up, page_base
from pytest_altpatch.machine.config import VA_LIMIT, MachineError, Perms
from pytest_altpatch.machine.services import GUEST_RETURN, PROBE_RETURN, svc_word

#: Where ``vmap`` places RW aliases.
VMAP_BASE: Final = 0x7000_0000_0000
VMAP_LIMIT: Final = 0x7800_0000_0000
#: The harness window: probe return trap page (R-X) and the probe stack (RW-).
HARNESS_VA: Final = 0x7FFF_0000_0000
PROBE_STACK_SIZE: Final = 0x10000
HARNESS_SIZE: Final = PAGE_SIZE + PROBE_STACK_SIZE
PROBE_TRAP_VA: Final = HARNESS_VA
#: Return address of a Python CPU's call into guest code (:meth:`Machine.call_guest`).
GUEST_RETURN_VA: Final = HARNESS_VA + 4
PROBE_STACK_TOP: Final = HARNESS_VA + HARNESS_SIZE
MAX_MEMORY: Final = 1 << 32

_UC_PROT: Final = {Perms.R: UC_PROT_READ, Perms.W: UC_PROT_WRITE, Perms.X: UC_PROT_EXEC}

#: One VA page of the table: (PA page, permissions, kind).
PageEntry = tuple[int, Perms, str]


@dataclass(frozen=True)
class MappingEntry:
    """One mapped run of pages (coalesced view of the shared table)."""

    va: int
    pa: int
    size: int
    perms: Perms
    kind: str


def uc_prot(perms: Perms) -> int:
    """Unicorn's protection flags for ``perms``."""
    prot = 0
    for flag, value in _UC_PROT.items():
        if flag in perms:
            prot |= value
    return prot


def page_range(va: int, size: int) -> range:
    """The VA page numbers of the page-aligned range [va, va+size)."""
    return range(va >> PAGE_SHIFT, (va + size) >> PAGE_SHIFT)


def _pages_touched(pa: int, size: int) -> range:
    """The page numbers holding any byte of [pa, pa+size)."""
    return range(pa >> PAGE_SHIFT, align_up(pa + size) >> PAGE_SHIFT)


class MappingListener(Protocol):
    """What must follow the table: unicorn's mappings and the hooks over code pages."""

    def exec_page_added(self, page: int, pa_page: int) -> None:
        """VA page ``page`` became a new executable alias of ``pa_page``."""

    def exec_page_removed(self, page: int) -> None:
        """VA page ``page`` is no longer executable."""

    def code_loaded(self, page: int, pa_page: int) -> None:
        """The host rewrote ``pa_page``, executable at VA page ``page``."""

    def engine_map(self, va: int, size: int, prot: int, pointer: int) -> None:
        """Map [va, va+size) onto host memory at ``pointer`` in every CPU."""

    def engine_unmap(self, va: int, size: int) -> None:
        """Unmap [va, va+size) in every CPU."""

    def engine_protect(self, va: int, size: int, prot: int) -> None:
        """Change the protection of [va, va+size) in every CPU."""

    def refresh_write_hooks(self) -> None:
        """The set of writable code pages may have changed."""


class MemoryMap:
    """The physical buffer, the shared page table, code pages and aliases."""

    def __init__(self, memory_size: int) -> None:
        if memory_size <= 0 or memory_size % PAGE_SIZE or memory_size > MAX_MEMORY:
            raise MachineError(
                "MACHINE_CONFIG",
                f"memory_size {memory_size:#x} is not a positive multiple of 4 KiB up to 4 GiB",
            )
        self.memory_size = memory_size
        self.harness_pa = memory_size
        total = memory_size + HARNESS_SIZE
        # The buffer and its ctypes view must outlive every unicorn instance that maps it
        # (unicorn holds a raw pointer): both live as long as the machine.
        self.buffer = mmap.mmap(-1, total)
        self._cbuffer = (ctypes.c_char * total).from_buffer(self.buffer)
        self._base = ctypes.addressof(self._cbuffer)
        #: VA page -> (PA page, permissions, kind).
        self.pages: dict[int, PageEntry] = {}
        #: Physical pages that are or were mapped executable, or were declared code.
        self.code_pages: set[int] = set()
        #: Physical page -> its executable VA pages, sorted.
        self.exec_alias: dict[int, list[int]] = {}
        self.vmaps: dict[int, int] = {}
        self.listener: MappingListener | None = None
        self.buffer[self.harness_pa:self.harness_pa + 4] = svc_word(PROBE_RETURN).to_bytes(
            4, "little")
        self.buffer[self.harness_pa + 4:self.harness_pa + 8] = svc_word(GUEST_RETURN).to_bytes(
            4, "little")

    def map_harness(self) -> None:
        """Map the harness window (once, when the CPUs exist)."""
        self.map_pages(HARNESS_VA, self.harness_pa, PAGE_SIZE, Perms.R | Perms.X, "harness")
        self.map_pages(HARNESS_VA + PAGE_SIZE, self.harness_pa + PAGE_SIZE, PROBE_STACK_SIZE,
                       Perms.R | Perms.W, "harness")

    def _notify(self) -> MappingListener:
        listener = self.listener
        if listener is None:
            raise MachineError("MACHINE_STATE", "the memory map has no CPUs to follow it")
        return listener

    # --- the one VA -> PA step --------------------------------------------------------
    def translate(self, va: int) -> tuple[int, Perms] | None:
        """(physical address, permissions) of ``va``, or None when unmapped."""
        entry = self.pages.get(va >> PAGE_SHIFT)
        if entry is None:
            return None
        return (entry[0] << PAGE_SHIFT) | (va & PAGE_MASK), entry[1]

    def word_at(self, va: int) -> int | None:
        """The little-endian word at ``va``, or None when unmapped."""
        found = self.translate(va)
        if found is None:
            return None
        pa = found[0]
        return int.from_bytes(self.buffer[pa:pa + 4], "little")

    def read_virtual(self, va: int, size: int) -> bytes | None:
        """``size`` bytes at ``va`` through the table (no permissions), or None when any
        page is unmapped."""
        out = bytearray()
        while size > 0:
            found = self.translate(va)
            if found is None:
                return None
            chunk = min(size, PAGE_SIZE - (va & PAGE_MASK))
            out += self.buffer[found[0]:found[0] + chunk]
            va, size = va + chunk, size - chunk
        return bytes(out)

    # --- physical memory --------------------------------------------------------------
    def check_phys(self, pa: int, size: int) -> None:
        """Refuse a physical range outside memory."""
        if pa < 0 or size < 0 or pa + size > self.memory_size:
            raise MachineError(
                "MACHINE_MAPPING",
                f"physical range [{pa:#x}, {pa + size:#x}) is outside memory "
                f"[0, {self.memory_size:#x})",
            )

    def load_phys(self, pa: int, data: bytes) -> None:
        """Write ``data`` at ``pa`` bypassing permissions and the fetch model."""
        self.check_phys(pa, len(data))
        self.buffer[pa:pa + len(data)] = bytes(data)
        listener = self._notify()
        for pa_page in _pages_touched(pa, len(data)):
            for page in self.exec_alias.get(pa_page, ()):
                listener.code_loaded(page, pa_page)

    def read_phys(self, pa: int, size: int) -> bytes:
        """``size`` bytes of physical memory at ``pa``."""
        self.check_phys(pa, size)
        return self.buffer[pa:pa + size]

    def declare_code(self, pa: int, size: int) -> None:
        """Track stores to physical [pa, pa+size) as stores to code."""
        self.check_phys(pa, size)
        for page in _pages_touched(pa, size):
            self.code_pages.add(page)
        self._notify().refresh_write_hooks()

    # --- the table ----------------------------------------------------------------------
    def map(self, va: int, pa: int, size: int, perms: Perms | str) -> None:
        """Map physical [pa, pa+size) at ``va`` (page aligned, free, outside vmap's window)."""
        flags = Perms.parse(perms)
        self._check_range(va, size)
        self.check_phys(pa, size)
        if pa % PAGE_SIZE:
            raise MachineError("MACHINE_MAPPING", f"physical address {pa:#x} is not 4 KiB aligned")
        if va < VMAP_LIMIT and va + size > VMAP_BASE:
            raise MachineError(
                "MACHINE_MAPPING",
                f"[{va:#x}, {va + size:#x}) overlaps the vmap alias window "
                f"[{VMAP_BASE:#x}, {VMAP_LIMIT:#x})",
            )
        self._check_free(va, size)
        self.map_pages(va, pa, size, flags, "map")

    def unmap(self, va: int, size: int) -> None:
        """Remove the mappings of [va, va+size) (every page must be mapped)."""
        self._check_range(va, size)
        self._check_mapped(va, size)
        if any(self.pages[page][2] == "harness" for page in page_range(va, size)):
            raise MachineError("MACHINE_MAPPING", "the harness window cannot be unmapped")
        self.unmap_pages(va, size)

    def protect(self, va: int, size: int, perms: Perms | str) -> None:
        """Change the permissions of the mapped pages [va, va+size) to ``perms``."""
        flags = Perms.parse(perms)
        self._check_range(va, size)
        self._check_mapped(va, size)
        listener = self._notify()
        for page in page_range(va, size):
            pa_page, old, kind = self.pages[page]
            if kind == "harness":
                raise MachineError("MACHINE_MAPPING", "the harness window cannot be changed")
            if Perms.X in old and Perms.X not in flags:
                self._forget_exec_page(page, pa_page)
            self.pages[page] = (pa_page, flags, kind)
        if Perms.X in flags:
            for page in page_range(va, size):
                self._note_exec_page(page, self.pages[page][0])
        listener.engine_protect(va, size, uc_prot(flags))
        listener.refresh_write_hooks()

    def vmap(self, pa: int, size: int) -> int:
        """Map physical [pa, pa+size) read-write at a free VA of the alias window;
        returns the VA of byte ``pa``."""
        if size <= 0:
            raise MachineError("MACHINE_MAPPING", f"vmap size {size} is not positive")
        self.check_phys(pa, size)
        first = page_base(pa)
        length = align_up(pa + size) - first
        va = self._free_alias_va(length)
        self.vmaps[va] = length
        self.map_pages(va, first, length, Perms.R | Perms.W, "vmap")
        return va + (pa - first)

    def vunmap(self, va: int) -> None:
        """Remove the vmap alias that contains ``va``."""
        for start, length in self.vmaps.items():
            if start <= va < start + length:
                del self.vmaps[start]
                self.unmap_pages(start, length)
                return
        raise MachineError("MACHINE_MAPPING", f"{va:#x} is not inside a vmap alias")

    def mappings(self) -> tuple[MappingEntry, ...]:
        """The shared mapping table, coalesced into runs, in VA order."""
        entries: list[MappingEntry] = []
        for page in sorted(self.pages):
            pa_page, perms, kind = self.pages[page]
            if entries:
                last = entries[-1]
                if (last.va + last.size == page << PAGE_SHIFT
                        and last.pa + last.size == pa_page << PAGE_SHIFT
                        and last.perms == perms and last.kind == kind):
                    entries[-1] = MappingEntry(last.va, last.pa, last.size + PAGE_SIZE, perms,
                                               kind)
                    continue
            entries.append(MappingEntry(page << PAGE_SHIFT, pa_page << PAGE_SHIFT, PAGE_SIZE,
                                        perms, kind))
        return tuple(entries)

    def writable_code_ranges(self) -> list[tuple[int, int]]:
        """Inclusive VA ranges of the writable mappings of code pages, coalesced."""
        ranges: list[tuple[int, int]] = []
        for page in sorted(self.pages):
            pa_page, perms, _ = self.pages[page]
            if Perms.W not in perms or pa_page not in self.code_pages:
                continue
            start = page << PAGE_SHIFT
            if ranges and ranges[-1][1] + 1 == start:
                ranges[-1] = (ranges[-1][0], start + PAGE_SIZE - 1)
            else:
                ranges.append((start, start + PAGE_SIZE - 1))
        return ranges

    # --- table internals ----------------------------------------------------------------
    def map_pages(self, va: int, pa: int, size: int, perms: Perms, kind: str) -> None:
        """Enter [va, va+size) -> [pa, ...) with ``perms`` (the caller checked it)."""
        listener = self._notify()
        for offset in range(0, size, PAGE_SIZE):
            page = (va + offset) >> PAGE_SHIFT
            pa_page = (pa + offset) >> PAGE_SHIFT
            self.pages[page] = (pa_page, perms, kind)
            if Perms.X in perms:
                self._note_exec_page(page, pa_page)
        listener.engine_map(va, size, uc_prot(perms), self._base + pa)
        listener.refresh_write_hooks()

    def unmap_pages(self, va: int, size: int) -> None:
        """Remove [va, va+size) from the table (every page is mapped)."""
        listener = self._notify()
        for page in page_range(va, size):
            pa_page, perms, _ = self.pages.pop(page)
            if Perms.X in perms:
                self._forget_exec_page(page, pa_page)
        listener.engine_unmap(va, size)
        listener.refresh_write_hooks()

    def _note_exec_page(self, page: int, pa_page: int) -> None:
        self.code_pages.add(pa_page)
        aliases = self.exec_alias.setdefault(pa_page, [])
        if page in aliases:
            return
        aliases.append(page)
        aliases.sort()
        self._notify().exec_page_added(page, pa_page)

    def _forget_exec_page(self, page: int, pa_page: int) -> None:
        aliases = self.exec_alias.get(pa_page, [])
        if page in aliases:
            aliases.remove(page)
        self._notify().exec_page_removed(page)

    def _check_range(self, va: int, size: int) -> None:
        if va % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
            raise MachineError(
                "MACHINE_MAPPING", f"[{va:#x}, +{size:#x}) is not a 4 KiB aligned, non-empty range"
            )
        if va < 0 or va + size > VA_LIMIT:
            raise MachineError("MACHINE_MAPPING", f"[{va:#x}, +{size:#x}) is not below 2**47")

    def _check_free(self, va: int, size: int) -> None:
        for page in page_range(va, size):
            if page in self.pages:
                raise MachineError(
                    "MACHINE_MAPPING", f"{page << PAGE_SHIFT:#x} is already mapped"
                )

    def _check_mapped(self, va: int, size: int) -> None:
        for page in page_range(va, size):
            if page not in self.pages:
                raise MachineError("MACHINE_MAPPING", f"{page << PAGE_SHIFT:#x} is not mapped")

    def _free_alias_va(self, length: int) -> int:
        candidate = VMAP_BASE
        for start in sorted(self.vmaps):
            if start - candidate >= length:
                break
            candidate = max(candidate, start + self.vmaps[start])
        if candidate + length > VMAP_LIMIT:
            raise MachineError("MACHINE_MAPPING", "the vmap alias window is full")
        return candidate


__all__ = [
    "GUEST_RETURN_VA",
    "HARNESS_SIZE",
    "HARNESS_VA",
    "MAX_MEMORY",
    "PROBE_STACK_SIZE",
    "PROBE_STACK_TOP",
    "PROBE_TRAP_VA",
    "VMAP_BASE",
    "VMAP_LIMIT",
    "MappingEntry",
    "MappingListener",
    "MemoryMap",
    "PageEntry",
    "page_range",
    "uc_prot",
]
