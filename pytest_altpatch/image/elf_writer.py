"""Write ELF64 AArch64 files: ET_EXEC images and ET_REL payload objects.

Both go through one small serialiser (:func:`_serialise`): a list of output sections,
a symbol table, optional program headers.  Executables get one PT_LOAD segment per
allocated section, with file offsets congruent to addresses modulo the page size so
``readelf -l`` and loaders accept them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pytest_altpatch.a64.granule import PAGE_SIZE
from pytest_altpatch.cases.model import CapNumbering
from pytest_altpatch.image import elf_format as ef
from pytest_altpatch.image.model import (
    SYM_ALT_END,
    SYM_ALT_START,
    Image,
    SectionKind,
)
from pytest_altpatch.image.objects import RelocatableObject
from pytest_altpatch.image.relocations import RECIPES

_SYMBOL_TYPES: Final[Mapping[str, int]] = {
    "notype": ef.STT_NOTYPE,
    "func": ef.STT_FUNC,
    "object": ef.STT_OBJECT,
    "section": ef.STT_SECTION,
}
#: Symbol type for image symbols, by the kind of section they point into.
_KIND_SYMBOL_TYPE: Final[Mapping[SectionKind, int]] = {
    "text": ef.STT_FUNC,
    "replacement": ef.STT_FUNC,
    "harness": ef.STT_FUNC,
    "alt-table": ef.STT_OBJECT,
    "rodata": ef.STT_OBJECT,
    "data": ef.STT_OBJECT,
    "stack": ef.STT_OBJECT,
}
# Linker-defined boundary symbols are plain addresses, not objects.
_BOUNDARY_SYMBOLS: Final = frozenset({SYM_ALT_START, SYM_ALT_END})


@dataclass(frozen=True)
class _OutSection:
    name: str
    sh_type: int
    flags: int
    addr: int
    body: bytes
    size: int
    align: int
    link: int = 0
    info: int = 0
    entsize: int = 0


@dataclass(frozen=True)
class _OutSymbol:
    name: str
    value: int
    size: int
    binding: int
    sym_type: int
    shndx: int


class _StringTable:
    """An ELF string table being built (offset 0 is the empty string)."""

    def __init__(self) -> None:
        self._blob = bytearray(b"\0")
        self._offsets: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        if text not in self._offsets:
            self._offsets[text] = len(self._blob)
            self._blob += text.encode("utf-8") + b"\0"
        return self._offsets[text]

    def bytes(self) -> bytes:
        return bytes(self._blob)


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment if alignment > 1 else value


def _symtab_bytes(
    symbols: Sequence[_OutSymbol], strtab: _StringTable
) -> tuple[bytes, int]:
    """Encode symbols (null first, locals before globals); return bytes and first global."""
    ordered = sorted(symbols, key=lambda s: s.binding != ef.STB_LOCAL)
    blob = bytearray(ef.SYM.pack(0, 0, 0, 0, 0, 0))
    first_global = 1 + sum(1 for s in ordered if s.binding == ef.STB_LOCAL)
    for symbol in ordered:
        blob += ef.SYM.pack(
            strtab.add(symbol.name),
            ef.sym_info(symbol.binding, symbol.sym_type),
            0,
            symbol.shndx,
            symbol.value,
            symbol.size,
        )
    return bytes(blob), first_global


def _serialise(
    e_type: int,
    entry: int,
    sections: Sequence[_OutSection],
    *,
    with_segments: bool,
) -> bytes:
    """Lay out header, program headers, section bodies and section headers."""
    shstrtab = _StringTable()
    names = [shstrtab.add(s.name) for s in sections]
    shstrndx = len(sections) + 1
    shstrtab_section = _OutSection(
        ".shstrtab", ef.SHT_STRTAB, 0, 0, b"", 0, 1
    )
    shstrtab.add(".shstrtab")
    all_sections = [*sections, shstrtab_section]
    names.append(shstrtab.add(".shstrtab"))
    bodies = [s.body for s in sections] + [shstrtab.bytes()]
    segments = [
        (index, s) for index, s in enumerate(sections)
        if with_segments and s.flags & ef.SHF_ALLOC and s.size
    ]
    cursor = ef.EHDR.size + ef.PHDR.size * len(segments)
    offsets: list[int] = []
    for section, body in zip(all_sections, bodies, strict=True):
        if with_segments and section.flags & ef.SHF_ALLOC:
            # Keep offset and address congruent modulo the page size, as PT_LOAD needs.
            cursor += (section.addr - cursor) % PAGE_SIZE
        else:
            cursor = _align(cursor, max(section.align, 1))
        offsets.append(cursor)
        if section.sh_type != ef.SHT_NOBITS:
            cursor += len(body)
    shoff = _align(cursor, 8)
    out = bytearray(shoff + ef.SHDR.size * (len(all_sections) + 1))
    ident = b"\x7fELF" + bytes([ef.ELFCLASS64, ef.ELFDATA2LSB, ef.EV_CURRENT]) + bytes(9)
    out[0:ef.EHDR.size] = ef.EHDR.pack(
        ident, e_type, ef.EM_AARCH64, ef.EV_CURRENT, entry,
        ef.EHDR.size if segments else 0, shoff, 0, ef.EHDR.size,
        ef.PHDR.size if segments else 0, len(segments), ef.SHDR.size,
        len(all_sections) + 1, shstrndx,
    )
    for number, (index, section) in enumerate(segments):
        file_size = 0 if section.sh_type == ef.SHT_NOBITS else section.size
        perms = ef.perms_of_flags(section.flags)
        ef.PHDR.pack_into(
            out, ef.EHDR.size + number * ef.PHDR.size,
            ef.PT_LOAD, ef.PERMS_SEGMENT_FLAGS[perms], offsets[index], section.addr,
            section.addr, file_size, section.size, PAGE_SIZE,
        )
    for section, body, offset in zip(all_sections, bodies, offsets, strict=True):
        if section.sh_type != ef.SHT_NOBITS:
            out[offset:offset + len(body)] = body
    for index, (section, body, offset, name) in enumerate(
        zip(all_sections, bodies, offsets, names, strict=True), start=1
    ):
        size = section.size if section.sh_type == ef.SHT_NOBITS else len(body)
        ef.SHDR.pack_into(
            out, shoff + index * ef.SHDR.size,
            name, section.sh_type, section.flags, section.addr, offset, size,
            section.link, section.info, section.align, section.entsize,
        )
    return bytes(out)


def _symbol_sections(
    sections: Sequence[_OutSection], symtab: bytes, first_global: int, strtab: bytes
) -> list[_OutSection]:
    """Append .symtab and .strtab (indices follow the given sections)."""
    symtab_index = len(sections) + 1
    return [
        *sections,
        _OutSection(".symtab", ef.SHT_SYMTAB, 0, 0, symtab, len(symtab), 8,
                    link=symtab_index + 1, info=first_global, entsize=ef.SYM.size),
        _OutSection(".strtab", ef.SHT_STRTAB, 0, 0, strtab, len(strtab), 1),
    ]


#: Non-allocated section recording the image's dialect and capability numbering.
NUMBERING_SECTION: Final = ".altpatch.numbering"


def encode_numbering(numbering: CapNumbering) -> bytes:
    """The JSON body of :data:`NUMBERING_SECTION` (sorted keys: deterministic)."""
    document = {
        "dialect": numbering.dialect,
        "ncaps": numbering.ncaps,
        "numbers": dict(sorted(numbering.numbers.items())),
    }
    return json.dumps(document, sort_keys=True).encode("utf-8")


def write_image(image: Image) -> bytes:
    """The ELF ET_EXEC bytes of ``image`` (sections, symbols, one segment per section)."""
    sections: list[_OutSection] = []
    index_of: dict[str, int] = {}
    for section in image.sections:
        sh_type, flags = ef.KIND_SECTION_FLAGS[section.kind]
        index_of[section.name] = len(sections) + 1
        sections.append(_OutSection(
            section.name, sh_type, flags, section.va,
            b"" if sh_type == ef.SHT_NOBITS else section.content,
            len(section.content), PAGE_SIZE if section.content else 4,
        ))
    # Not loaded: tells ``altpatch inspect`` the numbering (case-local caps included).
    sections.append(_OutSection(
        NUMBERING_SECTION, ef.SHT_PROGBITS, 0, 0, encode_numbering(image.numbering),
        len(encode_numbering(image.numbering)), 1,
    ))
    strtab = _StringTable()
    symbols: list[_OutSymbol] = []
    for index, section in enumerate(image.sections, start=1):
        symbols.append(_OutSymbol("", section.va, 0, ef.STB_LOCAL, ef.STT_SECTION, index))
    ordered = sorted(image.symbols.items(), key=lambda item: (item[1], item[0]))
    for position, (name, address) in enumerate(ordered):
        home = image.section_at(address)
        if home is None:
            # One-past-the-end symbols (``_etext``) belong to the section they close.
            home = next((s for s in image.sections if s.end == address), None)
        shndx = ef.SHN_ABS if home is None else index_of[home.name]
        kind = home.kind if home is not None else "data"
        sym_type = ef.STT_NOTYPE if name in _BOUNDARY_SYMBOLS or home is None or (
            not home.contains(address)) else _KIND_SYMBOL_TYPE[kind]
        size = 0
        if sym_type != ef.STT_NOTYPE and home is not None:
            # Size runs to the next symbol in the same section, for objdump's benefit.
            following = [a for _, a in ordered[position + 1:] if a > address]
            size = min([*following, home.end]) - address
        symbols.append(_OutSymbol(name, address, size, ef.STB_GLOBAL, sym_type, shndx))
    symtab, first_global = _symtab_bytes(symbols, strtab)
    out_sections = _symbol_sections(sections, symtab, first_global, strtab.bytes())
    entry = image.harness_start if image.harness_end > image.harness_start else image.text_start
    return _serialise(ef.ET_EXEC, entry, out_sections, with_segments=True)


def write_relocatable(obj: RelocatableObject) -> bytes:
    """The ELF ET_REL bytes of ``obj`` (sections, .rela sections, symbol table)."""
    sections: list[_OutSection] = []
    index_of: dict[str, int] = {}
    for section in obj.sections:
        sh_type, flags = ef.KIND_SECTION_FLAGS[section.kind]
        index_of[section.name] = len(sections) + 1
        sections.append(_OutSection(
            section.name, sh_type, flags, 0,
            b"" if sh_type == ef.SHT_NOBITS else section.content,
            len(section.content), max(section.align, 1),
        ))
    strtab = _StringTable()
    out_symbols: list[_OutSymbol] = [
        _OutSymbol("", 0, 0, ef.STB_LOCAL, ef.STT_SECTION, index_of[s.name])
        for s in obj.sections
    ]
    for symbol in obj.symbols:
        if symbol.sym_type == "section":
            continue  # every section already has its section symbol
        shndx = ef.SHN_UNDEF if symbol.section is None else index_of[symbol.section]
        binding = ef.STB_LOCAL if symbol.binding == "local" else ef.STB_GLOBAL
        out_symbols.append(_OutSymbol(
            symbol.name, symbol.value, 0, binding, _SYMBOL_TYPES[symbol.sym_type], shndx,
        ))
    ordered = sorted(out_symbols, key=lambda s: s.binding != ef.STB_LOCAL)
    # Symbol table indices: 0 is null; a section symbol is found by its section index.
    symbol_index: dict[str, int] = {}
    for position, out_symbol in enumerate(ordered, start=1):
        if out_symbol.sym_type == ef.STT_SECTION:
            symbol_index.setdefault(obj.sections[out_symbol.shndx - 1].name, position)
        else:
            symbol_index[out_symbol.name] = position
    symtab, first_global = _symtab_bytes(ordered, strtab)
    symtab_index = len(sections) + 1 + len({r.section for r in obj.relocations})
    rela_sections: list[_OutSection] = []
    for target in sorted({r.section for r in obj.relocations}, key=lambda n: index_of[n]):
        blob = bytearray()
        for reloc in sorted(
            (r for r in obj.relocations if r.section == target), key=lambda r: r.offset
        ):
            if reloc.rtype not in RECIPES:
                raise ValueError(f"relocation type {reloc.rtype} has no recipe")
            blob += ef.RELA.pack(
                reloc.offset, (symbol_index[reloc.symbol] << 32) | reloc.rtype, reloc.addend
            )
        rela_sections.append(_OutSection(
            ".rela" + target, ef.SHT_RELA, ef.SHF_INFO_LINK, 0, bytes(blob), len(blob), 8,
            link=symtab_index, info=index_of[target], entsize=ef.RELA.size,
        ))
    out_sections = _symbol_sections(
        [*sections, *rela_sections], symtab, first_global, strtab.bytes()
    )
    return _serialise(ef.ET_REL, 0, out_sections, with_segments=False)


__all__ = ["NUMBERING_SECTION", "encode_numbering", "write_image", "write_relocatable"]
