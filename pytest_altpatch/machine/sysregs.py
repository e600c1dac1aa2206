"""System registers the machine serves per CPU, keyed by their MRS encoding.

Unicorn ignores writes to most of these (emulator.md §3), so the machine answers guest
MRS from a hook using these tables.  Encodings are (op0, op1, CRn, CRm, op2) from the
Arm ARM system register index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

SysregKey = tuple[int, int, int, int, int]

#: The identification registers a CpuConfig may set in ``id_regs``.
ID_REGISTERS: Final[Mapping[str, SysregKey]] = {
    "id_aa64pfr0_el1": (3, 0, 0, 4, 0),
    "id_aa64pfr1_el1": (3, 0, 0, 4, 1),
    "id_aa64zfr0_el1": (3, 0, 0, 4, 4),
    "id_aa64smfr0_el1": (3, 0, 0, 4, 5),
    "id_aa64dfr0_el1": (3, 0, 0, 5, 0),
    "id_aa64dfr1_el1": (3, 0, 0, 5, 1),
    "id_aa64afr0_el1": (3, 0, 0, 5, 4),
    "id_aa64afr1_el1": (3, 0, 0, 5, 5),
    "id_aa64isar0_el1": (3, 0, 0, 6, 0),
    "id_aa64isar1_el1": (3, 0, 0, 6, 1),
    "id_aa64isar2_el1": (3, 0, 0, 6, 2),
    "id_aa64mmfr0_el1": (3, 0, 0, 7, 0),
    "id_aa64mmfr1_el1": (3, 0, 0, 7, 1),
    "id_aa64mmfr2_el1": (3, 0, 0, 7, 2),
    "id_aa64mmfr3_el1": (3, 0, 0, 7, 3),
}

#: The per-CPU identity registers, named by the CpuConfig field that holds them.
IDENTITY_REGISTERS: Final[Mapping[str, tuple[str, SysregKey]]] = {
    "midr_el1": ("midr", (3, 0, 0, 0, 0)),
    "mpidr_el1": ("mpidr", (3, 0, 0, 0, 5)),
    "revidr_el1": ("revidr", (3, 0, 0, 0, 6)),
    "ctr_el0": ("ctr", (3, 3, 0, 0, 1)),
}


def in_id_space(key: SysregKey) -> bool:
    """Whether ``key`` is in the AArch64 ID register space (op0=3, op1=0, CRn=0, CRm=1..7).

    Unlisted registers of that space read as zero, as the Arm ARM reserves them RAZ.
    """
    op0, op1, crn, crm, _ = key
    return op0 == 3 and op1 == 0 and crn == 0 and 1 <= crm <= 7


def register_key(name: str) -> SysregKey | None:
    """The encoding of the served register ``name`` (lower case), or None."""
    key = ID_REGISTERS.get(name)
    if key is None and name in IDENTITY_REGISTERS:
        key = IDENTITY_REGISTERS[name][1]
    return key


class MrsHook:
    """Answers guest MRS from each CPU's own table (UC_HOOK_INSN for MRS)."""

    def __init__(self, tables: Sequence[Mapping[SysregKey, int]]) -> None:
        self._tables = tables

    def on_mrs(self, uc: Any, reg: int, cp: Any, cpu: int) -> int:
        """Write the register's value for ``cpu``; 0 lets unicorn serve it."""
        key = (cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        value = self._tables[cpu].get(key)
        if value is None:
            if not in_id_space(key):
                return 0
            value = 0
        uc.reg_write(reg, value)
        return 1


__all__ = ["IDENTITY_REGISTERS", "ID_REGISTERS", "MrsHook", "SysregKey", "in_id_space",
           "register_key"]
