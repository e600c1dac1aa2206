"""Read ELF64 AArch64 files: executable images and relocatable objects.

Parsing is pyelftools'; this module adds the boundary every untrusted file needs.
pyelftools raises many exception types on garbage (its own ELFError and
ELFParseError, struct and construct errors, KeyError, IndexError, ...), and some
headers (a section count read from section 0, a NOBITS size of 2**63) can make it
loop or allocate without bound.  So the header and section table are checked against
the file size first, and every pyelftools call runs inside :func:`_boundary`, which
turns any non-project exception into ``ELF_MALFORMED`` naming the section.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from elftools.elf.elffile import ELFFile

from pytest_altpatch.a64.granule import align_up
from pytest_altpatch.cases.model import CapNumbering
from pytest_altpatch.dialects import DIALECTS, Dialect, traits
from pytest_altpatch.errors import AltpatchError, ElfError, Location
from pytest_altpatch.image import elf_format as ef
from pytest_altpatch.image.alt_table import decode_alt_table
from pytest_altpatch.image.elf_writer import NUMBERING_SECTION
from pytest_altpatch.image.model import (
    SYM_ALT_END,
    SYM_ALT_START,
    SYM_TEXT_END,
    SYM_TEXT_START,
    AltEntry,
    Section,
    SectionKind,
)
from pytest_altpatch.image.objects import AppliedRelocation, LoadedObject, LoadedSection
from pytest_altpatch.image.relocations import NO_OP_TYPES, RECIPES, relocate, type_name
from pytest_altpatch.jsontext import loads_bounded

#: NOBITS sections larger than this are refused rather than materialised.
MAX_NOBITS: Final = 64 * 1024 * 1024
#: More sections than this is not a kernel image or payload we can mean.
MAX_SECTIONS: Final = 4096

ElfType = Literal["exec", "dyn", "rel"]
_E_TYPES: Final[Mapping[int, ElfType]] = {ef.ET_EXEC: "exec", 3: "dyn", ef.ET_REL: "rel"}

#: Section kind by exact name; anything else is classified by its flags.
_KIND_BY_NAME: Final[Mapping[str, SectionKind]] = {
    ".text": "text",
    ".altinstr_replacement": "replacement",
    ".altinstructions": "alt-table",
    ".rodata": "rodata",
    ".data": "data",
    ".bss": "data",
    ".altpatch.stacks": "stack",
    ".altpatch.harness": "harness",
}


@contextmanager
def _boundary(where: str | None = None, data_size: int | None = None) -> Iterator[None]:
    """Convert anything a parser throws on bad bytes into a located ``ELF_MALFORMED``."""
    try:
        yield
    except AltpatchError:
        raise
    except Exception as exc:  # pyelftools/construct raise arbitrary types on garbage
        raise ElfError(
            "ELF_MALFORMED",
            f"cannot parse ELF ({type(exc).__name__}: {exc})"[:300],
            location=Location(section=where),
        ) from None


def _section_kind(name: str, sh_flags: int) -> SectionKind:
    kind = _KIND_BY_NAME.get(name)
    if kind is not None:
        return kind
    if name.startswith(".text") or sh_flags & ef.SHF_EXECINSTR:
        return "text"
    if sh_flags & ef.SHF_WRITE:
        return "data"
    return "rodata"


@dataclass(frozen=True)
class _RawSection:
    index: int
    name: str
    sh_type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int
    content: bytes


def _check_header(data: bytes) -> tuple[int, int]:
    """Validate ident, machine and section table bounds; return (e_type, e_entry)."""
    if len(data) < ef.EHDR.size or data[:4] != b"\x7fELF":
        raise ElfError("ELF_MALFORMED", "not an ELF file (bad magic or too short)",
                       location=Location(offset=0))
    if data[4] != ef.ELFCLASS64 or data[5] != ef.ELFDATA2LSB:
        raise ElfError("ELF_WRONG_MACHINE", "not a 64-bit little-endian ELF file",
                       location=Location(offset=4))
    (_, e_type, machine, _, entry, _, shoff, _, _, _, _, shentsize, shnum,
     shstrndx) = ef.EHDR.unpack_from(data)
    if machine != ef.EM_AARCH64:
        raise ElfError("ELF_WRONG_MACHINE", f"e_machine is {machine}, not AArch64 (183)",
                       location=Location(offset=18))
    if e_type not in _E_TYPES:
        raise ElfError("ELF_MALFORMED", f"e_type {e_type} is not EXEC, DYN or REL",
                       location=Location(offset=16))
    if shoff == 0 or shentsize != ef.SHDR.size:
        raise ElfError("ELF_MALFORMED", "no usable section header table",
                       location=Location(offset=0x28))
    if shnum == 0 and shoff + ef.SHDR.size <= len(data):
        # Extended numbering: the real count is section 0's sh_size.
        shnum = ef.SHDR.unpack_from(data, shoff)[5]
    if not 0 < shnum <= MAX_SECTIONS or shoff + shnum * ef.SHDR.size > len(data):
        raise ElfError("ELF_MALFORMED", f"section header table ({shnum} entries at "
                       f"{shoff:#x}) does not fit the file", location=Location(offset=shoff))
    if shstrndx >= shnum:
        raise ElfError("ELF_MALFORMED", f"e_shstrndx {shstrndx} is not a section",
                       location=Location(offset=0x3E))
    for index in range(shnum):
        (_, sh_type, _, _, offset, size, _, _, _, _) = ef.SHDR.unpack_from(
            data, shoff + index * ef.SHDR.size
        )
        if sh_type == ef.SHT_NOBITS:
            if size > MAX_NOBITS:
                raise ElfError("ELF_MALFORMED", f"NOBITS section {index} of {size:#x} bytes "
                               "is too large", location=Location(offset=shoff))
        elif sh_type != ef.SHT_NULL and offset + size > len(data):
            raise ElfError("ELF_MALFORMED", f"section {index} ({size:#x} bytes at "
                           f"{offset:#x}) runs past the end of the file",
                           location=Location(offset=offset))
    return e_type, entry


def _raw_sections(elf: Any) -> list[_RawSection]:
    sections: list[_RawSection] = []
    with _boundary():
        count = elf.num_sections()
    for index in range(count):
        with _boundary(f"#{index}"):
            section = elf.get_section(index)
            header = section.header
            sh_type = ef_type_number(header["sh_type"])
            content = (
                bytes(int(header["sh_size"])) if sh_type == ef.SHT_NOBITS
                else bytes(section.data()) if sh_type != ef.SHT_NULL else b""
            )
            sections.append(_RawSection(
                index, str(section.name), sh_type, int(header["sh_flags"]),
                int(header["sh_addr"]), int(header["sh_offset"]), int(header["sh_size"]),
                int(header["sh_link"]), int(header["sh_info"]),
                int(header["sh_addralign"]), int(header["sh_entsize"]), content,
            ))
    return sections


_SH_TYPES: Final[Mapping[str, int]] = {
    "SHT_NULL": ef.SHT_NULL, "SHT_PROGBITS": ef.SHT_PROGBITS, "SHT_SYMTAB": ef.SHT_SYMTAB,
    "SHT_STRTAB": ef.SHT_STRTAB, "SHT_RELA": ef.SHT_RELA, "SHT_NOBITS": ef.SHT_NOBITS,
    "SHT_REL": 9,
}


def ef_type_number(sh_type: object) -> int:
    """pyelftools gives known section types as names; map back to numbers."""
    if isinstance(sh_type, int):
        return sh_type
    return _SH_TYPES.get(str(sh_type), -1)


@dataclass(frozen=True)
class _RawSymbol:
    index: int
    name: str
    value: int
    shndx: int
    sym_type: int
    binding: int
    size: int = 0


def _symbols(data: bytes, sections: list[_RawSection]) -> list[_RawSymbol]:
    """Parse the (first) SHT_SYMTAB with plain struct reads: bounds were checked."""
    symtab = next((s for s in sections if s.sh_type == ef.SHT_SYMTAB), None)
    if symtab is None:
        return []
    where = Location(section=symtab.name)
    if symtab.entsize != ef.SYM.size or symtab.size % ef.SYM.size:
        raise ElfError("ELF_MALFORMED", "symbol table entry size is not 24", location=where)
    if not 0 <= symtab.link < len(sections):
        raise ElfError("ELF_MALFORMED", "symbol table has no string table", location=where)
    strtab = sections[symtab.link].content
    symbols: list[_RawSymbol] = []
    for index in range(symtab.size // ef.SYM.size):
        name_off, info, _, shndx, value, size = ef.SYM.unpack_from(
            symtab.content, index * ef.SYM.size
        )
        symbols.append(_RawSymbol(
            index, _string_at(strtab, name_off, where), value, shndx, info & 0xF, info >> 4,
            size,
        ))
    return symbols


def _string_at(table: bytes, offset: int, where: Location) -> str:
    if offset >= len(table) and offset != 0:
        raise ElfError("ELF_MALFORMED", f"string offset {offset:#x} is outside its table",
                       location=where)
    end = table.find(b"\0", offset)
    raw = table[offset:] if end < 0 else table[offset:end]
    return raw.decode("utf-8", errors="replace")


def _parse(data: bytes) -> tuple[int, int, list[_RawSection]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ElfError("ELF_MALFORMED", "ELF input must be bytes")
    data = bytes(data)
    e_type, entry = _check_header(data)
    with _boundary():
        elf = ELFFile(io.BytesIO(data))
    return e_type, entry, _raw_sections(elf)


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ElfImage:
    """An executable image read from ELF: allocated sections, symbols, the alt table."""

    elf_type: ElfType
    entry: int
    sections: tuple[Section, ...]
    symbols: Mapping[str, int]
    alt_table_start: int
    alt_table_end: int
    alt_table: bytes
    text_start: int
    text_end: int
    #: Non-allocated sections are not loaded; their names are kept for reports.
    other_sections: tuple[str, ...] = field(default=())
    #: The numbering recorded by ``altpatch build`` (None for foreign images).
    numbering: CapNumbering | None = None
    #: ``st_size`` of each named symbol (0 where the file gives none).
    symbol_sizes: Mapping[str, int] = field(default_factory=dict)

    def alt_entries(
        self, dialect: Dialect, ncaps: int, numbering: CapNumbering | None = None
    ) -> tuple[AltEntry, ...]:
        """Decode the table (ElfError ``ALT_TABLE_SIZE`` if its size is wrong)."""
        return decode_alt_table(
            self.alt_table, self.alt_table_start, dialect, ncaps, numbering=numbering
        )

    def section(self, name: str) -> Section | None:
        """The section called ``name``, or None."""
        return next((s for s in self.sections if s.name == name), None)

    def read(self, address: int, size: int) -> bytes | None:
        """``size`` bytes at ``address`` if one section holds them all, else None."""
        for section in self.sections:
            if section.contains(address, size):
                return section.content[address - section.va:address - section.va + size]
        return None


def read_image(data: bytes, *, require_table: bool = True) -> ElfImage:
    """Read an ET_EXEC (or ET_DYN) image.

    The table is the ``.altinstructions`` section or, failing that, the range between
    the ``__alt_instructions`` and ``__alt_instructions_end`` symbols.  Without either,
    ``ELF_NO_ALT_TABLE`` (or an empty table when ``require_table`` is false).
    """
    e_type, entry, raw = _parse(data)
    if e_type == ef.ET_REL:
        raise ElfError("ELF_MALFORMED", "a relocatable object is not an image; load it "
                       "with load_relocatable", location=Location(offset=16))
    symbols = _symbols(bytes(data), raw)
    sections = tuple(
        Section(s.name, s.addr, s.content, ef.perms_of_flags(s.flags),
                _section_kind(s.name, s.flags))
        for s in raw if s.flags & ef.SHF_ALLOC and s.sh_type != ef.SHT_NULL
    )
    kept = [sym for sym in symbols
            if sym.name and sym.sym_type not in (ef.STT_SECTION, 4) and sym.shndx != ef.SHN_UNDEF]
    named = {sym.name: sym.value for sym in kept}
    sizes = {sym.name: sym.size for sym in kept}
    table_section = next((s for s in sections if s.name == ".altinstructions"), None)
    if table_section is not None:
        start, end, table = table_section.va, table_section.end, table_section.content
    elif SYM_ALT_START in named and SYM_ALT_END in named:
        start, end = named[SYM_ALT_START], named[SYM_ALT_END]
        home = next((s for s in sections if s.contains(start, max(end - start, 0))), None)
        if home is None or end < start:
            raise ElfError("ELF_MALFORMED", f"{SYM_ALT_START}..{SYM_ALT_END} is not inside "
                           "one section", location=Location(symbol=SYM_ALT_START))
        table = home.content[start - home.va:end - home.va]
    elif require_table:
        raise ElfError("ELF_NO_ALT_TABLE", "no .altinstructions section and no "
                       f"{SYM_ALT_START}/{SYM_ALT_END} symbols")
    else:
        start = end = 0
        table = b""
    recorded = next((s for s in raw if s.name == NUMBERING_SECTION), None)
    text = next((s for s in sections if s.name == ".text"), None)
    text_start = named.get(SYM_TEXT_START, text.va if text else 0)
    text_end = named.get(SYM_TEXT_END, text.end if text else 0)
    return ElfImage(
        elf_type=_E_TYPES[e_type],
        entry=entry,
        sections=sections,
        symbols=MappingProxyType(dict(sorted(named.items()))),
        alt_table_start=start,
        alt_table_end=end,
        alt_table=table,
        text_start=text_start,
        text_end=text_end,
        other_sections=tuple(s.name for s in raw if not s.flags & ef.SHF_ALLOC and s.name),
        numbering=None if recorded is None else decode_numbering(recorded.content),
        symbol_sizes=MappingProxyType(dict(sorted(sizes.items()))),
    )


def decode_numbering(body: bytes) -> CapNumbering:
    """Parse a :data:`NUMBERING_SECTION` body (``ELF_MALFORMED`` if it is not one)."""
    where = Location(section=NUMBERING_SECTION)
    try:
        document = loads_bounded(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ElfError("ELF_MALFORMED", f"numbering section is not JSON ({exc})",
                       location=where) from None
    dialect = document.get("dialect") if isinstance(document, dict) else None
    ncaps = document.get("ncaps") if isinstance(document, dict) else None
    numbers = document.get("numbers") if isinstance(document, dict) else None
    if (dialect not in DIALECTS or not isinstance(ncaps, int) or not isinstance(numbers, dict)
            or not all(isinstance(k, str) and isinstance(v, int) for k, v in numbers.items())):
        raise ElfError("ELF_MALFORMED", "numbering section lacks dialect, ncaps or numbers",
                       location=where)
    return CapNumbering(dialect, ncaps, MappingProxyType(dict(numbers)),
                        callback_marking=traits(dialect).callbacks)


# --------------------------------------------------------------------------- objects

Placement = Mapping[str, int] | Callable[[str, int, int], int]
"""Section name -> address, or ``f(name, size, align) -> address``."""


def packed_placement(base: int, gap: int = 0) -> Callable[[str, int, int], int]:
    """A placement that packs sections one after another from ``base``, page-aligned."""
    cursor = [base]

    def place(_name: str, size: int, _align: int) -> int:
        address = cursor[0]
        cursor[0] = align_up(address + max(size, 1) + gap)
        return address

    return place


def _place_all(
    sections: list[_RawSection], placement: Placement
) -> dict[int, int]:
    """Section index -> address for every allocated section."""
    chosen: dict[int, int] = {}
    allocated = [s for s in sections if s.flags & ef.SHF_ALLOC]
    if callable(placement):
        for section in allocated:
            chosen[section.index] = placement(section.name, section.size, section.align)
        return chosen
    for section in allocated:
        if section.name in placement:
            chosen[section.index] = placement[section.name]
    # Sections the mapping does not name go after the highest placed one.
    top = max(
        [chosen[s.index] + s.size for s in allocated if s.index in chosen], default=0x10000
    )
    fallback = packed_placement(align_up(top))
    for section in allocated:
        if section.index not in chosen:
            chosen[section.index] = fallback(section.name, section.size, section.align)
    return chosen


def load_relocatable(
    data: bytes,
    *,
    base_symbols: Mapping[str, int],
    placement: Placement,
    undefined: int | None = None,
) -> LoadedObject:
    """Link an ET_REL object at the chosen addresses and apply its RELA relocations.

    Undefined symbols resolve against ``base_symbols`` (the base image's symbols);
    ``undefined``, when given, is the address of any symbol defined nowhere (for
    inspection without a base image) instead of ``RELOC_UNDEFINED_SYMBOL``.
    Errors are :class:`ElfError` naming section, offset and symbol:
    ``ELF_MALFORMED``, ``ELF_WRONG_MACHINE``, ``RELOC_UNSUPPORTED``,
    ``RELOC_OUT_OF_RANGE``, ``RELOC_UNDEFINED_SYMBOL``.
    """
    e_type, _, raw = _parse(data)
    if e_type != ef.ET_REL:
        raise ElfError("ELF_MALFORMED", "not a relocatable object (ET_REL)",
                       location=Location(offset=16))
    symbols = _symbols(bytes(data), raw)
    addresses = _place_all(raw, placement)
    contents = {index: bytearray(raw[index].content) for index in addresses}

    def resolve(symbol: _RawSymbol) -> int | None:
        if symbol.shndx == ef.SHN_UNDEF:
            return base_symbols.get(symbol.name, undefined)
        if symbol.shndx == ef.SHN_ABS:
            return symbol.value
        if symbol.shndx >= ef.SHN_LORESERVE:
            return None  # COMMON and other special indices have no address here
        if symbol.shndx >= len(raw):
            raise ElfError("ELF_MALFORMED", f"symbol {symbol.name!r} is in section "
                           f"{symbol.shndx}, which does not exist",
                           location=Location(symbol=symbol.name))
        return addresses.get(symbol.shndx, 0) + symbol.value

    applied: list[AppliedRelocation] = []
    for rela in raw:
        if rela.sh_type == 9:
            raise ElfError("RELOC_UNSUPPORTED", "SHT_REL relocations (without addends) are "
                           "not supported on AArch64", location=Location(section=rela.name))
        if rela.sh_type != ef.SHT_RELA:
            continue
        if not 0 <= rela.info < len(raw):
            raise ElfError("ELF_MALFORMED", f"relocation section targets section {rela.info}",
                           location=Location(section=rela.name))
        if rela.info not in addresses:
            continue  # relocations of non-allocated (debug) sections do not matter here
        if rela.entsize != ef.RELA.size or rela.size % ef.RELA.size:
            raise ElfError("ELF_MALFORMED", "RELA entry size is not 24",
                           location=Location(section=rela.name))
        applied += _apply_rela(rela, raw, symbols, addresses[rela.info],
                               contents[rela.info], resolve)
    loaded = tuple(
        LoadedSection(raw[index].name, address, bytes(contents[index]),
                      ef.perms_of_flags(raw[index].flags), max(raw[index].align, 1))
        for index, address in sorted(addresses.items())
    )
    defined: dict[str, int] = {}
    for symbol in sorted(symbols, key=lambda s: s.binding != ef.STB_GLOBAL):
        if not symbol.name or symbol.sym_type in (ef.STT_SECTION, 4):
            continue
        if symbol.shndx in (ef.SHN_UNDEF, ef.SHN_COMMON):
            continue
        address = resolve(symbol)
        if address is not None:
            defined.setdefault(symbol.name, address)
    return LoadedObject(
        sections=loaded,
        symbols=MappingProxyType(dict(sorted(defined.items()))),
        relocations=tuple(applied),
    )


def _apply_rela(rela: _RawSection, raw: list[_RawSection], symbols: list[_RawSymbol],
                section_address: int, body: bytearray,
                resolve: Callable[[_RawSymbol], int | None]) -> list[AppliedRelocation]:
    """Apply one RELA section's entries to ``body`` (its target section, at its address)."""
    applied: list[AppliedRelocation] = []
    target = raw[rela.info]
    for position in range(rela.size // ef.RELA.size):
        offset, info, addend = ef.RELA.unpack_from(rela.content, position * ef.RELA.size)
        sym_index, rtype = info >> 32, info & 0xFFFFFFFF
        where = Location(section=target.name, offset=offset)
        if sym_index >= len(symbols) and not (sym_index == 0 and not symbols):
            raise ElfError("ELF_MALFORMED", f"relocation names symbol #{sym_index}, "
                           "which does not exist", location=where)
        symbol = symbols[sym_index] if symbols else _RawSymbol(0, "", 0, ef.SHN_ABS, 0, 0)
        shown = symbol.name or (
            raw[symbol.shndx].name if symbol.sym_type == ef.STT_SECTION
            and symbol.shndx < len(raw) else f"#{sym_index}"
        )
        where = Location(section=target.name, offset=offset, symbol=shown)
        value = resolve(symbol)
        if value is None:
            raise ElfError("RELOC_UNDEFINED_SYMBOL", f"{type_name(rtype)} refers to "
                           f"{shown!r}, defined neither in the object nor the base image",
                           location=where)
        place = section_address + offset
        try:
            width = _field_width(rtype)
            if target.sh_type == ef.SHT_NOBITS or offset + width > len(body):
                raise ElfError("ELF_MALFORMED", f"{type_name(rtype)} at offset "
                               f"{offset:#x} is outside {target.name}")
            body[offset:offset + width] = relocate(
                rtype, bytes(body[offset:offset + width]), place, value + addend
            )
        except ElfError as error:
            raise error.relocated(where) from None
        applied.append(AppliedRelocation(
            target.name, offset, place, type_name(rtype), shown, value + addend
        ))
    return applied


@dataclass(frozen=True)
class SymbolEntry:
    """A named symbol of a relocatable object, as a linker of several objects needs it."""

    name: str
    value: int  # offset in its section (defined symbols)
    section: str | None  # None: undefined (or absolute/common)
    defined: bool
    is_global: bool  # STB_GLOBAL or STB_WEAK
    is_function: bool


def relocatable_symbols(data: bytes) -> tuple[SymbolEntry, ...]:
    """Every named, non-section symbol of the ET_REL object ``data``, in table order."""
    e_type, _, raw = _parse(data)
    if e_type != ef.ET_REL:
        raise ElfError("ELF_MALFORMED", "not a relocatable object (ET_REL)",
                       location=Location(offset=16))
    found: list[SymbolEntry] = []
    for symbol in _symbols(bytes(data), raw):
        if not symbol.name or symbol.sym_type in (ef.STT_SECTION, 4):
            continue
        defined = symbol.shndx != ef.SHN_UNDEF
        section = raw[symbol.shndx].name if defined and symbol.shndx < len(raw) else None
        found.append(SymbolEntry(symbol.name, symbol.value, section, defined,
                                 symbol.binding in (ef.STB_GLOBAL, 2), symbol.sym_type == 2))
    return tuple(found)


def _field_width(rtype: int) -> int:
    recipe = RECIPES.get(rtype)
    if recipe is None:
        if rtype in NO_OP_TYPES:
            return 0
        raise ElfError("RELOC_UNSUPPORTED", f"relocation type {rtype} is not supported")
    return recipe.width


__all__ = [
    "MAX_NOBITS",
    "ElfImage",
    "ElfType",
    "Placement",
    "SymbolEntry",
    "decode_numbering",
    "load_relocatable",
    "packed_placement",
    "read_image",
    "relocatable_symbols",
]
