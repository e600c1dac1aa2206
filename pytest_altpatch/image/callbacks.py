"""The callback registry: names a case may use, with their guest implementations.

Every built image carries real A64 code for each registered callback, under the
callback's name, so a callback entry's target is real text and a native patcher can
call it with the Linux ABI ``cb(alt, origptr, updptr, nr_inst)``: x0 = the entry's
address, x1 = the executable site address, x2 = the writable alias of the site,
x3 = the number of instructions.  The reference patcher runs Python equivalents
(:mod:`pytest_altpatch.patchers.callbacks`) instead; both write only through x2.

Corpus files cannot name code: an unknown callback name is a build error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

#: Data word the SMCCC callback reads; the scenario sets it before patching.
SMCCC_CONDUIT_SYMBOL: Final = "arm64_smccc_conduit"
#: Values of the conduit word (Linux ``enum arm_smccc_conduit``).
SMCCC_CONDUIT_VALUES: Final[Mapping[str, int]] = MappingProxyType(
    {"none": 0, "smc": 1, "hvc": 2}
)
#: The conduit an image starts with, matching the patchers' default.
SMCCC_CONDUIT_DEFAULT: Final = "hvc"
#: BRK immediate of the kernel's BUG() (arm64 ``BUG_BRK_IMM``).
BUG_BRK_IMM: Final = 0x800


@dataclass(frozen=True)
class GuestCallback:
    """A registered callback: its guest code (text) and any data it needs."""

    name: str
    summary: str
    text: str
    data: str = ""


# x0 = alt, x1 = origptr, x2 = updptr, x3 = nr_inst (Linux alternative_cb_t).
_PATCH_NOPS: Final = """\
alt_cb_patch_nops:
    movz w4, #0x201f
    movk w4, #0xd503, lsl #16
1:  cbz x3, 2f
    str w4, [x2], #4
    sub x3, x3, #1
    b 1b
2:  ret
"""

# HVC #0 is 0xd4000002 and SMC #0 is 0xd4000003 (Arm ARM, exception generation).
_SMCCC_CONDUIT: Final = f"""\
arm64_update_smccc_conduit:
    cmp x3, #1
    b.ne 3f
    adrp x4, {SMCCC_CONDUIT_SYMBOL}
    ldr w4, [x4, :lo12:{SMCCC_CONDUIT_SYMBOL}]
    cmp w4, #{SMCCC_CONDUIT_VALUES["hvc"]}
    b.eq 1f
    cmp w4, #{SMCCC_CONDUIT_VALUES["smc"]}
    b.eq 2f
    ret
1:  movz w5, #0x0002
    movk w5, #0xd400, lsl #16
    str w5, [x2]
    ret
2:  movz w5, #0x0003
    movk w5, #0xd400, lsl #16
    str w5, [x2]
    ret
3:  brk #{BUG_BRK_IMM:#x}
    ret
"""

_SMCCC_DATA: Final = f"""\
    .balign 8
{SMCCC_CONDUIT_SYMBOL}:
    .word {SMCCC_CONDUIT_VALUES[SMCCC_CONDUIT_DEFAULT]}
    .word 0
"""

#: Every callback a case may name, by name.
CALLBACKS: Final[Mapping[str, GuestCallback]] = MappingProxyType({
    "alt_cb_patch_nops": GuestCallback(
        "alt_cb_patch_nops",
        "write NOP into every instruction of the site",
        _PATCH_NOPS,
    ),
    "arm64_update_smccc_conduit": GuestCallback(
        "arm64_update_smccc_conduit",
        "write HVC #0 or SMC #0 into a one-instruction site, per the SMCCC conduit word "
        "(no conduit: leave it; more than one instruction: BUG, brk #0x800)",
        _SMCCC_CONDUIT,
        _SMCCC_DATA,
    ),
})


def guest_text() -> str:
    """Guest code of every registered callback, in name order, 4-byte aligned."""
    return "".join(
        f"    .balign 4\n{CALLBACKS[name].text}" for name in sorted(CALLBACKS)
    )


def guest_data() -> str:
    """Data every registered callback needs, in name order."""
    return "".join(CALLBACKS[name].data for name in sorted(CALLBACKS))


__all__ = [
    "BUG_BRK_IMM",
    "CALLBACKS",
    "SMCCC_CONDUIT_DEFAULT",
    "SMCCC_CONDUIT_SYMBOL",
    "SMCCC_CONDUIT_VALUES",
    "GuestCallback",
    "guest_data",
    "guest_text",
]
