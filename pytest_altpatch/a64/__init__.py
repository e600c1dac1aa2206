"""The A64 instruction layer: PC-relative classes, fields, classification.

Submodules: :mod:`pcrel` (PC-relative classes), :mod:`fields` (plain immediate
fields), :mod:`classify` (branch/literal/CMODX/barrier/cache questions), :mod:`asm`
(the assembler front end) and :mod:`disasm` (normalised disassembly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_altpatch.lazy import submodule_exports

if TYPE_CHECKING:  # the same names, imported on first use (pytest_altpatch.lazy)
    from pytest_altpatch.a64.asm import AsmLine, Assembly, assemble
    from pytest_altpatch.a64.classify import (
        Barrier,
        CacheOp,
        barrier,
        cache_op,
        exception_call,
        is_branch_imm,
        is_cmodx_safe,
        uses_literal,
    )
    from pytest_altpatch.a64.disasm import DisasmLine, disassemble, format_listing
    from pytest_altpatch.a64.fields import (
        ldst_access_size,
        set_add_imm12,
        set_ldst_imm12,
        set_movw_imm16,
    )
    from pytest_altpatch.a64.pcrel import (
        TABLE,
        PcRelClass,
        decode_target,
        pc_relative_class,
        retarget,
    )

_EXPORTS = {
    "asm": ("AsmLine", "Assembly", "assemble"),
    "classify": (
        "Barrier",
        "CacheOp",
        "barrier",
        "cache_op",
        "exception_call",
        "is_branch_imm",
        "is_cmodx_safe",
        "uses_literal",
    ),
    "disasm": ("DisasmLine", "disassemble", "format_listing"),
    "fields": ("ldst_access_size", "set_add_imm12", "set_ldst_imm12", "set_movw_imm16"),
    "pcrel": ("TABLE", "PcRelClass", "decode_target", "pc_relative_class", "retarget"),
}
__getattr__, __dir__ = submodule_exports(__name__, _EXPORTS)

__all__ = [
    "TABLE",
    "AsmLine",
    "Assembly",
    "Barrier",
    "CacheOp",
    "DisasmLine",
    "PcRelClass",
    "assemble",
    "barrier",
    "cache_op",
    "decode_target",
    "disassemble",
    "exception_call",
    "format_listing",
    "is_branch_imm",
    "is_cmodx_safe",
    "ldst_access_size",
    "pc_relative_class",
    "retarget",
    "set_add_imm12",
    "set_ldst_imm12",
    "set_movw_imm16",
    "uses_literal",
]
