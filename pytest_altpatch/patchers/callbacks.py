"""Python implementations of the registered alternative callbacks.

Each image carries real A64 code for these callbacks (so table entries point at real
text and a native patcher can call them); a Python patcher runs these instead.  A
callback receives the entry, the executable site address (``origptr``), the writable
address of the same site (``updptr``) and the number of instructions, and writes
every slot it wants changed itself, through ``updptr`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from pytest_altpatch.errors import Location, PatchError

if TYPE_CHECKING:
    from pytest_altpatch.machine.context import CpuContext
    from pytest_altpatch.patchers.contract import PatchEnvironment

NOP: Final = 0xD503201F
HVC_0: Final = 0xD4000002
SMC_0: Final = 0xD4000003

CallbackFn = Callable[["CpuContext", "PatchEnvironment", int, int, int, int], None]
"""(ctx, env, entry_va, origptr, updptr, nr_inst) -> None"""


def alt_cb_patch_nops(
    ctx: CpuContext, env: PatchEnvironment, entry_va: int, origptr: int, updptr: int,
    nr_inst: int,
) -> None:
    """Turn every instruction of the site into NOP."""
    for index in range(nr_inst):
        ctx.write32(updptr + 4 * index, NOP)


def arm64_update_smccc_conduit(
    ctx: CpuContext, env: PatchEnvironment, entry_va: int, origptr: int, updptr: int,
    nr_inst: int,
) -> None:
    """Write the SMCCC conduit instruction (HVC #0 or SMC #0) into a one-slot site."""
    if nr_inst != 1:
        # The kernel BUG()s here: the callback only knows how to patch one instruction.
        raise PatchError(
            "CALLBACK_LENGTH",
            f"arm64_update_smccc_conduit patches exactly one instruction, not {nr_inst}",
            location=Location(address=origptr),
        )
    ctx.write32(updptr, HVC_0 if env.smccc_conduit == "hvc" else SMC_0)


CALLBACKS: Final[Mapping[str, CallbackFn]] = {
    "alt_cb_patch_nops": alt_cb_patch_nops,
    "arm64_update_smccc_conduit": arm64_update_smccc_conduit,
}

__all__ = ["CALLBACKS", "HVC_0", "NOP", "SMC_0", "CallbackFn"]
