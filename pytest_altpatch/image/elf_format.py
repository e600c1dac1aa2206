"""ELF64 little-endian AArch64 constants and record layouts (ELF gABI, AArch64 ELF ABI).

Only what the writer needs; the reader parses with pyelftools.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from pytest_altpatch.image.model import Perms, SectionKind

EM_AARCH64: Final = 183
ET_REL: Final = 1
ET_EXEC: Final = 2
EV_CURRENT: Final = 1
ELFCLASS64: Final = 2
ELFDATA2LSB: Final = 1

SHT_NULL: Final = 0
SHT_PROGBITS: Final = 1
SHT_SYMTAB: Final = 2
SHT_STRTAB: Final = 3
SHT_RELA: Final = 4
SHT_NOBITS: Final = 8

SHF_WRITE: Final = 0x1
SHF_ALLOC: Final = 0x2
SHF_EXECINSTR: Final = 0x4
SHF_INFO_LINK: Final = 0x40

SHN_UNDEF: Final = 0
SHN_ABS: Final = 0xFFF1
SHN_COMMON: Final = 0xFFF2
SHN_LORESERVE: Final = 0xFF00

PT_LOAD: Final = 1
PF_X: Final = 0x1
PF_W: Final = 0x2
PF_R: Final = 0x4

STB_LOCAL: Final = 0
STB_GLOBAL: Final = 1
STT_NOTYPE: Final = 0
STT_OBJECT: Final = 1
STT_FUNC: Final = 2
STT_SECTION: Final = 3

EHDR: Final = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR: Final = struct.Struct("<IIQQQQQQ")
SHDR: Final = struct.Struct("<IIQQQQIIQQ")
SYM: Final = struct.Struct("<IBBHQQ")
RELA: Final = struct.Struct("<QQq")

#: ELF section type and flags for each kind of image section.
KIND_SECTION_FLAGS: Final[Mapping[SectionKind, tuple[int, int]]] = MappingProxyType({
    "text": (SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR),
    "replacement": (SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR),
    "alt-table": (SHT_PROGBITS, SHF_ALLOC),
    "rodata": (SHT_PROGBITS, SHF_ALLOC),
    "data": (SHT_PROGBITS, SHF_ALLOC | SHF_WRITE),
    "stack": (SHT_NOBITS, SHF_ALLOC | SHF_WRITE),
    "harness": (SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR),
})

#: Program header flags for each permission string.
PERMS_SEGMENT_FLAGS: Final[Mapping[Perms, int]] = MappingProxyType({
    "r-x": PF_R | PF_X,
    "r--": PF_R,
    "rw-": PF_R | PF_W,
})


def perms_of_flags(sh_flags: int) -> Perms:
    """The mapping permissions a section with these ELF flags gets."""
    if sh_flags & SHF_EXECINSTR:
        return "r-x"
    if sh_flags & SHF_WRITE:
        return "rw-"
    return "r--"


def sym_info(binding: int, sym_type: int) -> int:
    """``st_info`` from binding and type."""
    return (binding << 4) | (sym_type & 0xF)


__all__ = [
    "EHDR",
    "ELFCLASS64",
    "ELFDATA2LSB",
    "EM_AARCH64",
    "ET_EXEC",
    "ET_REL",
    "EV_CURRENT",
    "KIND_SECTION_FLAGS",
    "PERMS_SEGMENT_FLAGS",
    "PF_R",
    "PF_W",
    "PF_X",
    "PHDR",
    "PT_LOAD",
    "RELA",
    "SHDR",
    "SHF_ALLOC",
    "SHF_EXECINSTR",
    "SHF_INFO_LINK",
    "SHF_WRITE",
    "SHN_ABS",
    "SHN_COMMON",
    "SHN_LORESERVE",
    "SHN_UNDEF",
    "SHT_NOBITS",
    "SHT_NULL",
    "SHT_PROGBITS",
    "SHT_RELA",
    "SHT_STRTAB",
    "SHT_SYMTAB",
    "STB_GLOBAL",
    "STB_LOCAL",
    "STT_FUNC",
    "STT_NOTYPE",
    "STT_OBJECT",
    "STT_SECTION",
    "SYM",
    "perms_of_flags",
    "sym_info",
]
