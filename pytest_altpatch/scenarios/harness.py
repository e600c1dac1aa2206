"""The harness's own guest code and data layout (never part of any patch site).

Each CPU runs :data:`DETECT_SYMBOL` at bring-up with x0 pointing at its detection
record: the stub reads the CPU's own identification registers with MRS (served per
CPU by the machine) into the record and ends with the ``done`` host service, so
capability resolution works from what each CPU really read.
"""

from __future__ import annotations

from typing import Final

from pytest_altpatch.a64.granule import PAGE_SIZE
from pytest_altpatch.cases.model import ID_REGISTERS as CATALOG_ID_REGISTERS
from pytest_altpatch.machine.services import HostService
from pytest_altpatch.machine.sysregs import ID_REGISTERS, IDENTITY_REGISTERS, SysregKey

DETECT_SYMBOL: Final = "altpatch_detect"
BRINGUP_SYMBOL: Final = "altpatch_bringup"

#: Registers the stub reads, in record order, with their (op0, op1, CRn, CRm, op2): the
#: identity registers, then the ID registers a catalog CPU can carry values for.
DETECTED_REGISTERS: Final[tuple[tuple[str, SysregKey], ...]] = (
    *((name, IDENTITY_REGISTERS[name][1])
      for name in ("midr_el1", "revidr_el1", "mpidr_el1", "ctr_el0")),
    *((name, ID_REGISTERS[name]) for name in CATALOG_ID_REGISTERS),
)

#: Bytes per CPU detection record (one 64-bit slot per register, padded).
RECORD_SIZE: Final = 128
assert 8 * len(DETECTED_REGISTERS) <= RECORD_SIZE  # a layout invariant, not input checking

#: Harness data (detection records, the patcher's rendezvous word), outside any image.
HARNESS_DATA_VA: Final = 0x0100_0000_0000
RECORDS_SIZE: Final = 256 * RECORD_SIZE
#: The patcher's rendezvous word (``PatchEnvironment.sync_va``), on the page after the records.
SYNC_VA: Final = HARNESS_DATA_VA + RECORDS_SIZE
HARNESS_DATA_SIZE: Final = RECORDS_SIZE + PAGE_SIZE


def mrs_word(rt: int, op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
    """``MRS Xt, S<op0>_<op1>_C<crn>_C<crm>_<op2>`` (system instruction class, L=1)."""
    return (0xD5300000 | ((op0 - 2) << 19) | (op1 << 16) | (crn << 12) | (crm << 8)
            | (op2 << 5) | rt)


def detect_source() -> str:
    """Assembly of the detection stub (x0 = record address; clobbers x1)."""
    lines = [f"{DETECT_SYMBOL}:"]
    for slot, (name, key) in enumerate(DETECTED_REGISTERS):
        lines.append(f"    .inst {mrs_word(1, *key):#010x}  // mrs x1, {name}")
        lines.append(f"    str x1, [x0, #{8 * slot}]")
    lines.append(f"    svc #{int(HostService.DONE)}")
    return "\n".join(lines) + "\n"


def bringup_source() -> str:
    """A hot-plugged CPU's first steps: invalidate its own I-cache, then synchronise."""
    return (f"{BRINGUP_SYMBOL}:\n"
            "    ic iallu\n"
            "    dsb nsh\n"
            "    isb\n"
            f"    svc #{int(HostService.DONE)}\n")


def harness_source() -> str:
    """All harness code the image builder places in the harness section."""
    return detect_source() + bringup_source()


__all__ = [
    "BRINGUP_SYMBOL",
    "DETECTED_REGISTERS",
    "DETECT_SYMBOL",
    "HARNESS_DATA_SIZE",
    "HARNESS_DATA_VA",
    "RECORDS_SIZE",
    "RECORD_SIZE",
    "SYNC_VA",
    "bringup_source",
    "detect_source",
    "harness_source",
    "mrs_word",
]
