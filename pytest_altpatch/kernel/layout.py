"""A shipped kernel image in the machine: mapped at its link address, with the harness's
own memory (per-CPU area copies, stacks, trap words) beside it.

The image's allocated sections are placed at physical address == link address and
mapped page by page with their ELF permissions (a page holding any executable section
is ``r-x``, else any writable one ``rw-``, else ``r--``), so the text is read-only and
a kernel that wants to write it must make its own writable alias.  Both the real image
and the reference patcher run on a machine built here, so they see the same memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pytest_altpatch.a64.granule import PAGE_MASK, PAGE_SIZE, align_up, page_base
from pytest_altpatch.errors import KernelError, Location
from pytest_altpatch.image.elf_reader import ElfImage, read_image
from pytest_altpatch.machine import Budget, CpuConfig, Machine

#: Where the harness's own memory is mapped (outside the vmap window and the harness
#: window of the machine).
KERNEL_HARNESS_VA: Final = 0x7E00_0000_0000
STACK_SIZE: Final = 0x4000
#: Words of the trap page (never executed: each has a code trap).
FINISH_OFFSET: Final = 0x0  # CPU0 returns here from the entry function
RETURN_OFFSET: Final = 0x4  # a CPU returns here from a stop_machine function
JOIN_OFFSET: Final = 0x8  # the stop_machine caller returns here from its own call
SYNC_OFFSET: Final = 0x0  # first word of the scratch page: a zeroed rendezvous word
_MIB: Final = 1 << 20


@dataclass(frozen=True)
class KernelImage:
    """A shipped kernel image read from disk."""

    path: Path
    elf: ElfImage

    @property
    def name(self) -> str:
        """The file name, for messages."""
        return self.path.name

    @property
    def symbols(self) -> Mapping[str, int]:
        """Named symbols."""
        return self.elf.symbols

    def symbol(self, name: str) -> int:
        """The address of ``name`` (``IMAGE_MISSING_SYMBOL`` if the image lacks it)."""
        value = self.elf.symbols.get(name)
        if value is None:
            raise KernelError("IMAGE_MISSING_SYMBOL", f"{self.name} has no symbol {name!r}",
                              location=Location(file=self.name, symbol=name))
        return value

    def executable_ranges(self) -> tuple[tuple[int, int], ...]:
        """(start, end) of every executable section, in address order."""
        return tuple(sorted((s.va, s.end) for s in self.elf.sections
                            if "x" in s.perms and s.content))


def read_kernel_image(path: Path) -> KernelImage:
    """Read an ET_EXEC kernel image with symbols."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KernelError("IMAGE_UNAVAILABLE", f"cannot read {path}: {exc.strerror or exc}",
                          location=Location(file=str(path))) from None
    return KernelImage(path, read_image(data))


def page_perms(image: ElfImage) -> tuple[tuple[int, int, str], ...]:
    """Runs of (va, size, perms) covering every allocated section, page granular."""
    pages: dict[int, set[str]] = {}
    for section in image.sections:
        size = max(len(section.content), 1)
        for page in range(page_base(section.va), section.va + size, PAGE_SIZE):
            pages.setdefault(page, set()).add(section.perms)
    runs: list[tuple[int, int, str]] = []
    for page in sorted(pages):
        kinds = pages[page]
        perms = "r-x" if "r-x" in kinds else "rw-" if "rw-" in kinds else "r--"
        if runs and runs[-1][0] + runs[-1][1] == page and runs[-1][2] == perms:
            runs[-1] = (runs[-1][0], runs[-1][1] + PAGE_SIZE, perms)
        else:
            runs.append((page, PAGE_SIZE, perms))
    return tuple(runs)


@dataclass(frozen=True)
class HarnessLayout:
    """Physical and virtual places of the harness's memory for one machine."""

    pa: int  # physical base of the harness memory
    trap_va: int  # the R-X trap page
    scratch_va: int  # a RW page (rendezvous word for Python patchers)
    percpu_va: int  # RW copies of the per-CPU area for CPUs 1..n-1
    percpu_stride: int
    stacks_va: int
    ncpus: int
    size: int

    def va_to_pa(self, va: int) -> int:
        """Physical address of a harness VA."""
        return self.pa + (va - KERNEL_HARNESS_VA)

    def stack_top(self, cpu: int) -> int:
        """Initial SP of ``cpu`` (16-byte aligned, below the next CPU's stack)."""
        return self.stacks_va + STACK_SIZE * (cpu + 1) - 16

    def percpu_copy(self, cpu: int) -> int:
        """VA of ``cpu``'s copy of the per-CPU area (CPU >= 1)."""
        return self.percpu_va + self.percpu_stride * (cpu - 1)


def build_machine(image: KernelImage, cpus: Sequence[CpuConfig], *, percpu_size: int,
                  schedule: str, seed: int, budget: Budget, clean_cache_erratum: bool,
                  trace_capacity: int = 1 << 16) -> tuple[Machine, HarnessLayout]:
    """A machine with ``image`` loaded at PA == VA and the harness memory mapped."""
    runs = page_perms(image.elf)
    if not runs:
        raise KernelError("IMAGE_UNAVAILABLE", f"{image.name} has no allocated sections")
    image_end = runs[-1][0] + runs[-1][1]
    # A kernel may vmap a power-of-two number of pages from its start: room up to 2x.
    harness_pa = align_up(2 * image_end, _MIB)
    stride = align_up(max(percpu_size, 1))
    percpu_bytes = stride * max(len(cpus) - 1, 0)
    size = 2 * PAGE_SIZE + percpu_bytes + STACK_SIZE * len(cpus)
    layout = HarnessLayout(
        pa=harness_pa, trap_va=KERNEL_HARNESS_VA, scratch_va=KERNEL_HARNESS_VA + PAGE_SIZE,
        percpu_va=KERNEL_HARNESS_VA + 2 * PAGE_SIZE, percpu_stride=stride,
        stacks_va=KERNEL_HARNESS_VA + 2 * PAGE_SIZE + percpu_bytes, ncpus=len(cpus),
        size=size)
    if harness_pa + size > 1 << 32:
        raise KernelError("IMAGE_UNAVAILABLE", f"{image.name} does not fit 4 GiB of memory")
    machine = Machine(cpus, memory_size=harness_pa + size, schedule=schedule, seed=seed,
                      budget=budget, clean_cache_erratum=clean_cache_erratum,
                      trace_capacity=trace_capacity)
    for section in image.elf.sections:
        if section.content:
            machine.load_phys(section.va, section.content)
    for va, length, perms in runs:
        machine.map(va, va, length, perms)
    machine.map(layout.trap_va, harness_pa, PAGE_SIZE, "r-x")
    machine.map(layout.scratch_va, harness_pa + PAGE_SIZE, size - PAGE_SIZE, "rw-")
    return machine, layout


def write_virtual(machine: Machine, va: int, data: bytes) -> None:
    """Harness-side store of ``data`` at ``va`` before the run (no permissions checked)."""
    for offset in range(len(data)):
        found = machine.translate(va + offset)
        if found is None:
            raise KernelError("IMAGE_UNAVAILABLE", f"{va + offset:#x} is not mapped")
    start = 0
    while start < len(data):
        found = machine.translate(va + start)
        assert found is not None  # checked above
        chunk = min(len(data) - start, PAGE_SIZE - ((va + start) & PAGE_MASK))
        machine.load_phys(found[0], data[start:start + chunk])
        start += chunk


def read_u64(machine: Machine, va: int) -> int:
    """The little-endian u64 at ``va`` (harness side)."""
    raw = machine.read_virtual(va, 8)
    if raw is None:
        raise KernelError("IMAGE_UNAVAILABLE", f"{va:#x} is not mapped")
    return int.from_bytes(raw, "little")


__all__ = [
    "FINISH_OFFSET",
    "JOIN_OFFSET",
    "KERNEL_HARNESS_VA",
    "RETURN_OFFSET",
    "STACK_SIZE",
    "SYNC_OFFSET",
    "HarnessLayout",
    "KernelImage",
    "build_machine",
    "page_perms",
    "read_kernel_image",
    "read_u64",
    "write_virtual",
]
