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

Late patching (a livepatch payload's own alternatives) calls
``apply_alternatives_region(ctx, env)`` on one CPU; the region is not live yet.
Patchers with the ``livepatch`` feature also provide ``apply_livepatch`` and
``revert_livepatch`` (see :class:`LivepatchPatcher`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
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
    "LivepatchEnvironment",
    "LivepatchFunction",
    "LivepatchPatcher",
    "PatchEnvironment",
    "Patcher",
]
