"""An independent capstone decoder for the A64 layer tests."""

from __future__ import annotations

import capstone


class CapstoneView:
    """Decode single words with capstone, independent of our own tables."""

    def __init__(self) -> None:
        self._md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        self._md.detail = True

    def decode(self, word: int, pc: int) -> tuple[str, str, int | None]:
        """(mnemonic, op_str, last immediate operand) of ``word`` at ``pc``."""
        insns = list(self._md.disasm(word.to_bytes(4, "little"), pc))
        assert len(insns) == 1, f"capstone cannot decode {word:#010x}"
        insn = insns[0]
        imm = None
        if insn.operands and insn.operands[-1].type == capstone.arm64.ARM64_OP_IMM:
            imm = insn.operands[-1].imm & ((1 << 64) - 1)
        return insn.mnemonic, insn.op_str, imm
