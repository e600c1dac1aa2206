"""The contract between the harness and a patcher.

A patcher is judged on what it does to the machine, never on its own account of it.
It acts only through a per-CPU context (reads and writes by VA through that CPU's
mappings, cache maintenance, barriers, atomics, spinning, vmap), so every operation
is a step of the schedule and its races are as visible as native code's.

Boot-time patching has up to two entries:

* ``apply_boot_alternatives(ctx, env)``: called on CPU0 alone before the secondaries
  start, for patchers that declare the ``two-pass`` feature (Linux >= 5.1 patches the
  boot-CPU-scope capabilities first);
* ``apply_alternatives_all(ctx, env)``: called on *every* online CPU inside
  stop_machine; the patcher owns the rendezvous (one CPU patches, the others wait and
  synchronise their instruction fetch before returning).

Two optional entries let a patcher decide detection and hot-plug itself (features
``cpu-detection`` and ``late-cpu-check``); the harness judges what they decide against
the case and keeps its own resolution as the oracle that drives patching:

* ``detect_capabilities(ctx, env)``: called on each boot CPU as it comes up (CPU0
  first, then every secondary that stays online, one at a time); it reads that CPU's
  own registers through ``ctx.sysreg`` and returns the capability numbers the system
  has *after* this CPU, given ``env.decided`` (what it returned after the previous
  CPU; empty on CPU0).  Its last answer is judged against ``expect.<phase>.caps``.
* ``verify_late_cpu(ctx, env)``: called on a hot-plugged CPU before it joins; returns
  None to accept it or the refusal code (``LATE_CPU_ERRATUM``, ...), judged against
  ``expect.hotplug``.

Both are plain functions of the CPU's registers and a little state, so a native entry
maps onto them directly: detection as ``bitmap_out = detect(bitmap_in)`` over NCAPS
bits (the adapter turns the bitmaps into number sets), the late-CPU check as a return
of 0 (accept) or a registered error number.

Late patching (a livepatch payload's own alternatives) calls
``apply_alternatives_region(ctx, env)`` on one CPU; the region is not live yet.
Patchers with the ``livepatch`` feature also provide ``apply_livepatch`` and
``revert_livepatch`` (see :class:`LivepatchPatcher`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Erratum, ExtraCap, Feature
    from pytest_altpatch.machine.context import CpuContext


@dataclass(frozen=True)
class AltRegion:
    """One ``.altinstructions`` table and how its sites may be written."""

    table_start: int  # VA of the first entry (mapped read-only)
    table_end: int  # VA one past the last entry
    text_start: int  # executable range the sites belong to
    text_end: int
    #: Add to a site VA to get a writable alias (Linux's linear map). None: the patcher
    #: must map its own alias with ``ctx.vmap`` (Xen), using ``text_phys``.
    alias_offset: int | None
    text_phys: int  # physical address of ``text_start``
    #: Kernel text needs cache maintenance by the patcher; a payload that is not yet
    #: executable is written in place and its loader does the maintenance.
    live: bool = True


@dataclass(frozen=True)
class PatchEnvironment:
    """Everything the harness tells a patcher; all addresses are virtual."""

    dialect: str
    region: AltRegion
    caps: frozenset[int]  # capability numbers the system has
    boot_caps: frozenset[int]  # of those, the boot-CPU-scope ones
    ncaps: int
    ncpus: int  # CPUs taking part in stop_machine
    sync_va: int  # a zeroed, writable word reserved for the patcher's rendezvous
    dcache_line: int  # sanitised (system-wide minimum) D-cache line size in bytes
    icache_line: int  # system-wide minimum I-cache line size in bytes
    callbacks: Mapping[int, str] = field(default_factory=dict)  # address -> registry name
    cap_names: Mapping[int, str] = field(default_factory=dict)  # number -> name, for messages
    smccc_conduit: str = "hvc"


@dataclass(frozen=True)
class LivepatchFunction:
    """One function a livepatch payload replaces (Xen ``struct livepatch_func``)."""

    name: str
    old_addr: int  # executable address of the old function in the base image
    old_size: int
    new_addr: int | None  # None: the old function's first ``new_size`` bytes become NOPs
    new_size: int
    expect: bytes | None = None  # the old bytes the payload expects, if it says


@dataclass(frozen=True)
class LivepatchEnvironment:
    """What the harness tells a patcher applying or reverting a livepatch payload."""

    payload: str
    functions: tuple[LivepatchFunction, ...]
    text_start: int  # the base image's text (where old functions live)
    text_end: int
    text_phys: int  # physical address of ``text_start`` (for a vmap alias)
    alias_offset: int | None  # a writable alias of text, if the kernel keeps one
    ncpus: int
    sync_va: int  # a zeroed, writable word for the rendezvous
    dcache_line: int
    icache_line: int


@dataclass(frozen=True)
class DetectionTables:
    """The capability tables a kernel is built with (the catalog's, for this dialect).

    ``numbers`` maps each capability the dialect numbers (plus the case's own) to its
    number; ``errata`` and ``features`` are the catalog entries whose capabilities are
    numbered; ``extra`` are the case's own capabilities (``caps:``).
    """

    dialect: str
    ncaps: int
    numbers: Mapping[str, int]
    errata: tuple[Erratum, ...]
    features: tuple[Feature, ...]
    extra: tuple[ExtraCap, ...] = ()


@dataclass(frozen=True)
class DetectionEnvironment:
    """What ``detect_capabilities`` is told on one boot CPU."""

    tables: DetectionTables
    #: Capability numbers this patcher decided after the previous CPUs (empty on CPU0).
    decided: frozenset[int] = frozenset()


@dataclass(frozen=True)
class LateCpuEnvironment:
    """What ``verify_late_cpu`` is told on a hot-plugged CPU before it joins."""

    tables: DetectionTables
    caps: frozenset[int]  # the system's capability numbers, fixed at boot
    boot_midr: int  # the boot CPU's MIDR_EL1 (Xen compares it)
    boot_ctr: int  # the boot CPU's CTR_EL0 (Xen compares its D-cache line size)
    hmp_unsafe: bool = True  # Xen's hmp-unsafe option
    park_dcache_mismatch: bool = False


@runtime_checkable
class DetectingPatcher(Protocol):
    """A patcher that detects capabilities itself (feature ``cpu-detection``)."""

    def detect_capabilities(self, ctx: CpuContext, env: DetectionEnvironment
                            ) -> Collection[int]:
        """Read this CPU's registers; return the system's capability numbers so far."""


@runtime_checkable
class LateCpuChecker(Protocol):
    """A patcher that decides hot-plugged CPUs itself (feature ``late-cpu-check``)."""

    def verify_late_cpu(self, ctx: CpuContext, env: LateCpuEnvironment) -> str | None:
        """None to accept this CPU, else the refusal code (``LATE_CPU_ERRATUM``...)."""


@runtime_checkable
class Patcher(Protocol):
    """What the harness calls; see the module docstring for when."""

    name: str
    version: str
    dialect: str
    features: frozenset[str]

    def apply_boot_alternatives(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Patch boot-CPU-scope capabilities on CPU0 before secondaries start."""

    def apply_alternatives_all(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Called on every CPU inside stop_machine: one patches, the others wait."""

    def apply_alternatives_region(self, ctx: CpuContext, env: PatchEnvironment) -> None:
        """Patch a region that is not live yet (a payload), on one CPU."""


@runtime_checkable
class LivepatchPatcher(Patcher, Protocol):
    """A patcher that also switches livepatch payloads in and out (feature ``livepatch``).

    Both entries are called on every online CPU at a quiescent point: one CPU does
    the work while the others wait, and every CPU must synchronise its instruction
    fetch before it runs patched code again.
    """

    def apply_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        """Redirect each old function to its replacement (or NOP it out)."""

    def revert_livepatch(self, ctx: CpuContext, env: LivepatchEnvironment) -> None:
        """Restore each old function's saved words."""


__all__ = [
    "AltRegion",
    "DetectingPatcher",
    "DetectionEnvironment",
    "DetectionTables",
    "LateCpuChecker",
    "LateCpuEnvironment",
    "LivepatchEnvironment",
    "LivepatchFunction",
    "LivepatchPatcher",
    "PatchEnvironment",
    "Patcher",
]
