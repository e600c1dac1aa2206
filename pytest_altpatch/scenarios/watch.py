"""What the harness checks each time a patcher entry returns, beyond the text.

* Every vmap alias the entry made must be gone (Xen unmaps its writable alias of
  text before leaving ``__apply_alternatives``); one left mapped is a writable view of
  text for ever after: finding ``alias-left-mapped``.
* Memory the harness owns (the CPUs' detection records and the rest of the page that
  holds the patcher's rendezvous word) must be unchanged: finding ``harness-write``.
  It is watched rather than protected because a patcher can reach it through an alias
  of its own (``vmap`` of any physical page), which no page permission would stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pytest_altpatch.machine import Machine
from pytest_altpatch.scenarios.harness import (
    HARNESS_DATA_SIZE,
    HARNESS_DATA_VA,
    RECORD_SIZE,
    RECORDS_SIZE,
)

#: Bytes of the rendezvous word at ``PatchEnvironment.sync_va`` (the patcher's own).
SYNC_WORD_SIZE: Final = 4


@dataclass(frozen=True)
class WatchPoint:
    """The watched state when a patcher entry started."""

    harness_pa: int  # where the harness data lies in physical memory
    vmaps: frozenset[int]
    owned: bytes  # the harness data, with the rendezvous word zeroed


def _owned_bytes(machine: Machine, harness_pa: int) -> bytes:
    raw = bytearray(machine.read_phys(harness_pa, HARNESS_DATA_SIZE))
    raw[RECORDS_SIZE:RECORDS_SIZE + SYNC_WORD_SIZE] = bytes(SYNC_WORD_SIZE)
    return bytes(raw)


def watch(machine: Machine, harness_pa: int) -> WatchPoint:
    """Note the state before a patcher entry runs (the harness data is at ``harness_pa``)."""
    return WatchPoint(harness_pa, frozenset(machine.vmaps), _owned_bytes(machine, harness_pa))


def check(machine: Machine, before: WatchPoint, cpus: Sequence[int]) -> None:
    """Record a finding for each watched thing the entry left changed."""
    who = cpus[0] if cpus else 0
    # A run cut short (a refusal or fault elsewhere) may stop a CPU inside its patching.
    returned = all(machine.cpu_state(cpu) != "running" for cpu in cpus)
    for va, length in sorted(machine.vmaps.items()):
        if returned and va not in before.vmaps:
            machine.note("alias-left-mapped",
                         f"vmap alias [{va:#x}, {va + length:#x}) was still mapped when the "
                         f"patcher returned (cpus {', '.join(map(str, cpus))})", cpu=who,
                         address=va, detail={"size": length})
    after = _owned_bytes(machine, before.harness_pa)
    if after == before.owned:
        return
    offset = next(i for i, (a, b) in enumerate(zip(before.owned, after, strict=True)) if a != b)
    what = (f"cpu{offset // RECORD_SIZE}'s detection record" if offset < RECORDS_SIZE
            else "the harness page beyond the rendezvous word")
    machine.note("harness-write",
                 f"{what} at {HARNESS_DATA_VA + offset:#x} changed "
                 f"({before.owned[offset]:#04x} -> {after[offset]:#04x}) while the patcher ran",
                 cpu=who, address=HARNESS_DATA_VA + offset)


__all__ = ["SYNC_WORD_SIZE", "WatchPoint", "check", "watch"]
