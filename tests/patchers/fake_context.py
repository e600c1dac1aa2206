"""A recording stand-in for the machine's per-CPU context, for rule-level tests.

Memory is a flat map of words; ``alias_offset`` makes writes through the alias land
on the text they alias, and a write at a text VA directly is recorded as forbidden,
the way the machine's read-only text would refuse it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


@dataclass
class FakeMemory:
    """Words by VA shared by all fake CPUs, with a read-only text range and an alias."""

    text_start: int
    text_end: int
    alias_offset: int
    words: dict[int, int] = field(default_factory=dict)
    forbidden_writes: list[int] = field(default_factory=list)
    vmap_base: int = 0x7000_0000

    def load(self, va: int, data: bytes) -> None:
        for i in range(0, len(data), 4):
            self.words[va + i] = struct.unpack_from("<I", data, i)[0]

    def resolve(self, va: int) -> int:
        alias_lo = self.text_start + self.alias_offset
        if alias_lo <= va < self.text_end + self.alias_offset:
            return va - self.alias_offset
        return va


@dataclass
class FakeContext:
    """Implements the context operations the reference patcher uses."""

    cpu: int
    memory: FakeMemory
    ctr: int = 0x84448004
    ops: list[tuple[str, object]] = field(default_factory=list)

    def read(self, va: int, size: int) -> bytes:
        return b"".join(struct.pack("<I", self.read32(va + i)) for i in range(0, size, 4))

    def read32(self, va: int) -> int:
        return self.memory.words.get(self.memory.resolve(va), 0)

    def write32(self, va: int, word: int) -> None:
        if self.memory.text_start <= va < self.memory.text_end:
            self.memory.forbidden_writes.append(va)
            return
        self.ops.append(("write", va))
        self.memory.words[self.memory.resolve(va)] = word

    def dc(self, op: str, va: int) -> None:
        self.ops.append(("dc " + op, va))

    def ic(self, op: str, va: int | None = None) -> None:
        self.ops.append(("ic " + op, va))

    def dsb(self, option: str = "ish") -> None:
        self.ops.append(("dsb", option))

    def isb(self) -> None:
        self.ops.append(("isb", None))

    def relax(self) -> None:
        self.ops.append(("relax", None))

    def vmap(self, pa: int, size: int) -> int:
        self.ops.append(("vmap", pa))
        self.memory.alias_offset = self.memory.vmap_base - self.memory.text_start
        return self.memory.vmap_base

    def vunmap(self, va: int) -> None:
        self.ops.append(("vunmap", va))

    def sysreg(self, name: str) -> int:
        return self.ctr if name == "ctr_el0" else 0
