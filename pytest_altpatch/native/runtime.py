"""The native runtime: guest stubs of the ABI services, written by us in A64.

The stubs are assembled by our own assembler and linked in front of the patcher's
objects.  A stub does only what a kernel gets from elsewhere (an SVC to the harness,
a read of TPIDR_EL0 or of the environment block); cache maintenance, barriers and
atomics are never done here: they stay the patcher's own instructions.
"""

from __future__ import annotations

from typing import Final

from pytest_altpatch.machine.services import HostService
from pytest_altpatch.native import abi

ENV_SYMBOL: Final = "altpatch_env"

_ENV = {field.name: field.offset for field in abi.ENV_FIELDS}

RUNTIME_SOURCE: Final = f"""\
altpatch_vmap:
    svc #{int(HostService.VMAP):#x}
    ret
altpatch_vunmap:
    svc #{int(HostService.VUNMAP):#x}
    ret
altpatch_log:
    svc #{abi.SVC_LOG:#x}
    ret
altpatch_bug:
    svc #{abi.SVC_BUG:#x}
    b altpatch_bug
altpatch_refuse:
    svc #{abi.SVC_REFUSE:#x}
    b altpatch_refuse
altpatch_virt_to_phys:
    svc #{abi.SVC_VIRT_TO_PHYS:#x}
    ret
altpatch_cpu_id:
    mrs x0, tpidr_el0
    ret
altpatch_is_kernel_text:
    adrp x1, {ENV_SYMBOL}
    add x1, x1, :lo12:{ENV_SYMBOL}
    ldr x2, [x1, #{_ENV["kernel_text_start"]}]
    ldr x3, [x1, #{_ENV["kernel_text_end"]}]
    cmp x0, x2
    b.lo 1f
    cmp x0, x3
    b.hs 1f
    mov x0, #1
    ret
1:  mov x0, #0
    ret
altpatch_stop_machine:
    stp x29, x30, [sp, #-32]!
    mov x29, sp
    stp x0, x1, [sp, #16]
    svc #{abi.SVC_STOP_MACHINE:#x}
    ldp x2, x0, [sp, #16]
    blr x2
    str x0, [sp, #16]
1:  svc #{abi.SVC_STOP_MACHINE_WAIT:#x}
    cbz x0, 1b
    ldr x0, [sp, #16]
    cmp w0, #0
    csel w0, w0, w1, ne
    ldp x29, x30, [sp], #32
    ret
memcpy:
    mov x3, x0
1:  cbz x2, 2f
    ldrb w4, [x1], #1
    strb w4, [x3], #1
    sub x2, x2, #1
    b 1b
2:  ret
memset:
    mov x3, x0
1:  cbz x2, 2f
    strb w1, [x3], #1
    sub x2, x2, #1
    b 1b
2:  ret
"""

__all__ = ["ENV_SYMBOL", "RUNTIME_SOURCE"]
