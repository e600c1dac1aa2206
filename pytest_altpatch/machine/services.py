"""Host services: how guest code (a native patcher, a test program) calls the harness.

Guest code runs ``svc #imm``; the harness reads the immediate and the registers,
acts, and returns to the instruction after the SVC (an exception return, so a service
call is also a context synchronisation event for the calling CPU).

======  ==========  ==========================================================
imm     name        effect
======  ==========  ==========================================================
0x1     done        the CPU stops; x0 is its result
0x2     park        the CPU parks (a refused hot-plug CPU); it runs no more
0x3     relax       spin hint: the CPU's slice ends (yield / cpu_relax)
0x4     log         trace event "service" with x0..x3 (no other effect)
0x5     bug         finding ``bug`` with the code in x0; the CPU stops (faulted)
0x6     vmap        map physical [x0, x0+x1) read-write at a free alias VA; x0 = VA
                    of x0's byte (0 when the request is invalid)
0x7     vunmap      remove the alias mapping that contains VA x0; x0 = 0 or 1 (ok)
======  ==========  ==========================================================

Native patchers add their own services (:meth:`Machine.add_service`); any other
immediate is finding ``unknown-service`` and the CPU stops.  HVC, SMC, BRK
and UDF are never services: they are findings (``guest-exception`` or
``undefined-instruction``) and the CPU stops.  Immediate 0xA7F0 is reserved for the
harness's probe return trap and 0xA7F1 for the return of a guest call made by a
Python CPU (:meth:`Machine.call_guest`).
"""

from __future__ import annotations

import enum
from typing import Final


class HostService(enum.IntEnum):
    """SVC immediates of the host services (the module docstring has the table)."""

    DONE = 0x1
    PARK = 0x2
    RELAX = 0x3
    LOG = 0x4
    BUG = 0x5
    VMAP = 0x6
    VUNMAP = 0x7


#: The SVC immediate of the probe return trap (harness-internal, not a guest service).
PROBE_RETURN: Final = 0xA7F0
#: The SVC immediate of the guest-call return trap (harness-internal).
GUEST_RETURN: Final = 0xA7F1


def svc_word(imm: int) -> int:
    """The encoding of ``svc #imm`` (exception generation class, opc=000, LL=01)."""
    return 0xD4000001 | ((imm & 0xFFFF) << 5)


__all__ = ["GUEST_RETURN", "PROBE_RETURN", "HostService", "svc_word"]
