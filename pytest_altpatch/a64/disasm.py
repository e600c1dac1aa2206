"""Normalised disassembly over capstone, one word at a time.

Capstone stops silently at the first word it cannot decode, so every word is decoded
on its own and undecodable ones print as ``.inst 0x........``.  PC-relative targets are
computed by our own :mod:`pcrel` decoder (not capstone's detail mode, which is slower)
and printed symbolically when a symbol table is given.  Text is lower case with single
spaces so two listings can be diffed line by line.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import capstone

from pytest_altpatch.a64.pcrel import ADDRESS_MASK, decode_target, pc_relative_class
from pytest_altpatch.errors import AsmError

_TARGET: Final = re.compile(r"#0x[0-9a-f]+$|#[0-9]+$")
_SPACES: Final = re.compile(r"\s+")


@dataclass(frozen=True)
class DisasmLine:
    """One disassembled word: its address, encoding and normalised text."""

    address: int
    word: int
    text: str


class _SymbolIndex:
    """Nearest-preceding-symbol lookup, deterministic for ties (lowest name wins)."""

    def __init__(self, symbols: Mapping[str, int]) -> None:
        by_address: dict[int, str] = {}
        for name, value in sorted(symbols.items()):
            address = value & ADDRESS_MASK
            by_address.setdefault(address, name)
        self.addresses = sorted(by_address)
        self.names = [by_address[address] for address in self.addresses]

    def describe(self, target: int) -> str:
        index = bisect.bisect_right(self.addresses, target) - 1
        if index < 0:
            return f"{target:#x}"
        offset = target - self.addresses[index]
        name = self.names[index]
        return name if offset == 0 else f"{name}+{offset:#x}"


_md: capstone.Cs | None = None


def _decoder() -> capstone.Cs:
    global _md
    if _md is None:
        _md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    return _md


def _text(word: int, address: int, symbols: _SymbolIndex | None) -> str:
    decoded = list(_decoder().disasm_lite(word.to_bytes(4, "little"), address, 1))
    if not decoded:
        return f".inst {word:#010x}"
    _, _, mnemonic, op_str = decoded[0]
    text = _SPACES.sub(" ", f"{mnemonic} {op_str}".strip().lower())
    if symbols is not None and pc_relative_class(word) is not None:
        # Capstone prints the absolute target as the last operand; name it instead.
        target = decode_target(word, address)
        label = symbols.describe(target)
        # A function replacement: a symbol name is literal text, never a template.
        text = _TARGET.sub(lambda _: label, text)
    return text


def disassemble(code: bytes, base: int,
                symbols: Mapping[str, int] | None = None) -> tuple[DisasmLine, ...]:
    """Disassemble ``code`` at ``base`` word by word (a trailing partial word is data).

    With ``symbols``, branch, ADR/ADRP and literal targets print as ``symbol`` or
    ``symbol+0xN`` (nearest preceding symbol); otherwise as hex.
    """
    if base % 4 or not 0 <= base <= ADDRESS_MASK:
        raise AsmError("ASM_OUT_OF_RANGE", f"base {base:#x} is not a 4-byte aligned address")
    index = _SymbolIndex(symbols) if symbols else None
    lines: list[DisasmLine] = []
    for offset in range(0, len(code) - len(code) % 4, 4):
        word = int.from_bytes(code[offset:offset + 4], "little")
        address = (base + offset) & ADDRESS_MASK
        lines.append(DisasmLine(address, word, _text(word, address, index)))
    tail = code[len(code) - len(code) % 4:]
    if tail:
        address = (base + len(code) - len(tail)) & ADDRESS_MASK
        text = ".byte " + ", ".join(f"{byte:#04x}" for byte in tail)
        lines.append(DisasmLine(address, int.from_bytes(tail, "little"), text))
    return tuple(lines)


def format_listing(lines: Iterable[DisasmLine]) -> str:
    """A listing with address, encoding and text columns, one line per word."""
    return "\n".join(f"{line.address:016x}  {line.word:08x}  {line.text}" for line in lines)


__all__ = ["DisasmLine", "disassemble", "format_listing"]
