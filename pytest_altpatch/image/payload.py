"""Build a case's payload (livepatch/xSplice, module) as an ELF relocatable object.

The payload's text is expanded and assembled like the base image's (same macros,
same replacement placement as the dialect), but each section at a placeholder
address, and every reference whose value depends on where sections land becomes a
RELA relocation, as GNU as would emit it:

* branches, ADR and literal loads to a label of *another* unit or section, or to a
  base-image symbol: CALL26, JUMP26, CONDBR19, TSTBR14, ADR_PREL_LO21, LD_PREL_LO19;
* ADRP and ``:lo12:`` always (they depend on page placement): ADR_PREL_PG_HI21,
  ADD_ABS_LO12_NC, LDST{8,16,32,64,128}_ABS_LO12_NC;
* data: ``.quad sym`` ABS64, ``.word sym`` ABS32, ``.word sym - .`` PREL32 (and the
  16/64-bit forms);
* ``.altinstructions`` entries: PREL32 against ``.text`` and the replacement section
  (section symbol plus offset) or against the callback's (undefined) symbol.

Relocated fields are zero in the object (RELA keeps the value in the addend).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pytest_altpatch.a64 import fields, pcrel
from pytest_altpatch.a64.expr import evaluate, names_in
from pytest_altpatch.a64.syntax import parse_statement
from pytest_altpatch.cases.model import CapNumbering, PayloadSpec, RawAltEntry
from pytest_altpatch.dialects import Dialect
from pytest_altpatch.errors import AltpatchError, BuildError, ElfError, Location
from pytest_altpatch.image.assembler import (
    Assembled,
    Unit,
    assemble_units,
    column_base,
    expand_block,
    lines_of,
    replacement_section,
    replacement_units,
)
from pytest_altpatch.image.callbacks import CALLBACKS
from pytest_altpatch.image.entries import entry_fields, raw_cap_field
from pytest_altpatch.image.macros import (
    MARKER_PREFIX,
    Alternative,
    ExpandedText,
    InlineItem,
    NopFill,
    SourceLine,
)
from pytest_altpatch.image.model import Image, ImageLayout, SectionKind
from pytest_altpatch.image.objects import (
    ObjectRelocation,
    ObjectSection,
    ObjectSymbol,
    RelocatableObject,
)
from pytest_altpatch.image.relocations import BY_NAME, relocate

#: Placeholder section bases while assembling (section-relative offsets follow).
_PSEUDO: Final[Mapping[SectionKind, int]] = {
    "text": 0x0, "replacement": 0x10000, "rodata": 0x20000, "data": 0x30000,
}
_PSEUDO_LAYOUT: Final = ImageLayout(
    text_base=_PSEUDO["text"], replacement_base=_PSEUDO["replacement"],
    table_base=0x40000, rodata_base=_PSEUDO["rodata"], data_base=_PSEUDO["data"],
    stack_base=0x50000, harness_base=0x60000, replacement_placement="section",
)
_SECTION_OF_KIND: Final[Mapping[SectionKind, str]] = {
    "text": ".text", "replacement": ".altinstr_replacement", "data": ".data",
    "rodata": ".rodata",
}
#: PC-relative class -> relocation type name.
_PCREL_RELOCS: Final[Mapping[str, str]] = {
    "b": "JUMP26", "bl": "CALL26",
    "b.cond": "CONDBR19", "bc.cond": "CONDBR19", "cbz": "CONDBR19", "cbnz": "CONDBR19",
    "tbz": "TSTBR14", "tbnz": "TSTBR14",
    "adr": "ADR_PREL_LO21", "adrp": "ADR_PREL_PG_HI21",
    "ldr.w": "LD_PREL_LO19", "ldr.x": "LD_PREL_LO19", "ldrsw": "LD_PREL_LO19",
    "prfm": "LD_PREL_LO19", "ldr.s": "LD_PREL_LO19", "ldr.d": "LD_PREL_LO19",
    "ldr.q": "LD_PREL_LO19",
}
_LDST_RELOCS: Final[Mapping[int, str]] = {
    1: "LDST8_ABS_LO12_NC", 2: "LDST16_ABS_LO12_NC", 4: "LDST32_ABS_LO12_NC",
    8: "LDST64_ABS_LO12_NC", 16: "LDST128_ABS_LO12_NC",
}
#: Data directive -> (width, absolute type, PC-relative type).
_DATA_RELOCS: Final[Mapping[str, tuple[int, str, str]]] = {
    ".quad": (8, "ABS64", "PREL64"), ".8byte": (8, "ABS64", "PREL64"),
    ".word": (4, "ABS32", "PREL32"), ".long": (4, "ABS32", "PREL32"),
    ".4byte": (4, "ABS32", "PREL32"),
    ".hword": (2, "ABS16", "PREL16"), ".2byte": (2, "ABS16", "PREL16"),
    ".short": (2, "ABS16", "PREL16"),
}
#: A value given to the symbol to check it appears once with coefficient +1 (any
#: non-zero value would do; this is not a page).
_PROBE: Final = 0x1000
_LO12: Final = re.compile(r":lo12:([^\],]+)")


@dataclass(frozen=True)
class _Reference:
    symbol: str
    addend: int
    pc_relative_data: bool


def _split_statements(items: Sequence[InlineItem]) -> tuple[InlineItem, ...]:
    """One statement per line, so each assembled line maps to one statement."""
    out: list[InlineItem] = []
    for item in items:
        if isinstance(item, NopFill) or ";" not in item.text:
            out.append(item)
            continue
        out.extend(SourceLine(piece, item.file_line, item.column)
                   for piece in item.text.split(";"))
    return tuple(out)


def _reference(expression: str, relocatable: set[str], where: Location) -> _Reference | None:
    """The one relocatable symbol in ``expression`` and its addend, or None."""
    names = [n for n in names_in(expression) if n in relocatable]
    if not names:
        return None
    if len(set(names)) > 1 or len(names) > 1:
        raise BuildError("BUILD_MACRO", f"{expression!r} combines relocatable symbols; a "
                         "relocation can refer to one", location=where)
    symbol = names[0]
    uses_dot = "." in names_in(expression)

    def resolve(name: str, _column: int) -> int:
        return 0  # the symbol and "." contribute nothing: the rest is the addend

    addend = evaluate(expression, resolve, where.line or 0, 1)
    # Validate linearity: the symbol must appear with coefficient +1.
    shifted = evaluate(expression, lambda n, _c: _PROBE if n == symbol else 0,
                       where.line or 0, 1)
    if shifted - addend != _PROBE:
        raise BuildError("BUILD_MACRO", f"{expression!r} is not symbol + constant",
                         location=where)
    return _Reference(symbol, addend, uses_dot)


def _statement_relocations(
    text: str, word_bytes: bytes, offset: int, relocatable: set[str], own: set[str],
    where: Location,
) -> list[tuple[int, str, _Reference]]:
    """(offset, type name, reference) for each relocatable reference in one statement."""
    statement = parse_statement(text, where.line or 0, 1)
    if statement is None or statement.mnemonic is None:
        return []
    mnemonic = statement.mnemonic
    found: list[tuple[int, str, _Reference]] = []
    if mnemonic in _DATA_RELOCS:
        width, absolute, relative = _DATA_RELOCS[mnemonic]
        for position, operand in enumerate(statement.operands):
            ref = _reference(operand.text, relocatable, where)
            if ref is not None:
                found.append((offset + position * width,
                              relative if ref.pc_relative_data else absolute, ref))
        return found
    if mnemonic.startswith(".") or len(word_bytes) != 4:
        return []
    (word,) = struct.unpack("<I", word_bytes)
    lo12 = _LO12.search(statement.operand_text)
    if lo12 is not None:
        ref = _reference(lo12.group(1), relocatable, where)
        if ref is None:
            return []
        if fields.ADD_SUB_IMM.matches(word):
            return [(offset, "ADD_ABS_LO12_NC", ref)]
        return [(offset, _LDST_RELOCS[fields.ldst_access_size(word)], ref)]
    cls = pcrel.pc_relative_class(word)
    for operand in statement.operands:
        ref = _reference(operand.text.lstrip("#"), relocatable, where)
        if ref is None:
            continue
        if cls is None:
            raise BuildError("BUILD_MACRO", f"{mnemonic} cannot refer to {ref.symbol!r} in a "
                             "payload (no relocation for this form)", location=where)
        rtype = _PCREL_RELOCS[cls.name]
        # A PC-relative reference inside the same unit is final already.
        if ref.symbol in own and rtype != "ADR_PREL_PG_HI21":
            return []
        return [(offset, rtype, ref)]
    return []


def _raw_entry(raw: RawAltEntry, entry: int, relocatable: set[str], numbering: CapNumbering,
               relocations: list[ObjectRelocation], file: str | None) -> bytes:
    """Encode one hand-written payload entry; its fields become PREL32 relocations.

    Sites and replacements are label expressions (``label+8``) of the payload or the
    base image, so the loader resolves them like any other reference; absolute
    numbers have no meaning before the payload is placed and are refused.
    """
    where = raw.location.merged(Location(file=file))
    prel32 = BY_NAME["PREL32"].rtype
    fields_to_link: list[tuple[int, str | int, str]] = [(entry, raw.site, "site")]
    if raw.callback is not None:
        fields_to_link.append((entry + 4, raw.callback, "callback"))
    elif raw.replacement is not None:
        fields_to_link.append((entry + 4, raw.replacement, "replacement"))
    # else: the replacement field stays 0 (it points at itself), as in the base image.
    for offset, expression, what in fields_to_link:
        ref = None
        if isinstance(expression, str):
            try:
                ref = _reference(expression, relocatable | set(CALLBACKS), where)
            except AltpatchError as error:
                raise BuildError("BUILD_ALT_ENTRY", f"{what} {expression!r}: "
                                 f"{error.message}", location=where) from None
        if ref is None:
            raise BuildError("BUILD_ALT_ENTRY", f"{what} {expression!r} of a payload entry "
                             "must name a label (addresses are not known before loading)",
                             location=where)
        relocations.append(ObjectRelocation(".altinstructions", offset, prel32, ref.symbol,
                                            ref.addend))
    cap_field = raw_cap_field(raw, numbering, where)
    if cap_field > 0xFFFF:
        raise BuildError("BUILD_ALT_ENTRY", f"capability field {cap_field:#x} does not fit "
                         "16 bits", location=where)
    return struct.pack("<iiHBB", 0, 0, cap_field, raw.site_len, raw.repl_len)


def _payload_units(payload: PayloadSpec, expanded: ExpandedText, layout: ImageLayout,
                   file: str | None) -> list[Unit]:
    """The payload's units, one statement per line, placed like the base image's."""
    text_column = column_base(payload.text)
    units = [Unit("text", "text", 4, _split_statements(expanded.inline), file, text_column)]
    units += replacement_units(expanded.alternatives, replacement_section(layout), file,
                               text_column, _split_statements)
    if payload.data is not None:
        units.append(Unit("data", "data", 16, _split_statements(lines_of(payload.data)),
                          file, column_base(payload.data)))
    return units


@dataclass
class _Linked:
    """The object's section contents, relocations and symbols as they are collected."""

    contents: dict[SectionKind, bytearray]
    relocations: list[ObjectRelocation]
    symbols: list[ObjectSymbol]


def _relocate_line(unit: Unit, blob: bytearray, text: str, chunk: bytes, start: int,
                   relocatable: set[str], own: set[str], where: Location,
                   linked: _Linked) -> None:
    """Turn one assembled line's relocatable references into zeroed fields and RELAs."""
    try:
        found = _statement_relocations(text, chunk, start, relocatable, own, where)
    except AltpatchError as error:
        if isinstance(error, BuildError):
            raise
        raise error.relocated(where) from None
    for field_offset, rtype, ref in found:
        recipe = BY_NAME[rtype]
        old_field = bytes(blob[field_offset:field_offset + recipe.width])
        # Zero the field: the addend carries the value (RELA).
        zero_target = field_offset if recipe.value != "abs" else 0
        try:
            blob[field_offset:field_offset + recipe.width] = relocate(
                recipe.rtype, old_field, field_offset, zero_target)
        except ElfError as error:
            raise BuildError("BUILD_LAYOUT", error.message, location=where) from None
        linked.relocations.append(ObjectRelocation(
            _SECTION_OF_KIND[unit.section], field_offset, recipe.rtype, ref.symbol,
            ref.addend,
        ))


def _link_unit(unit: Unit, assembled: Assembled, relocatable: set[str], own: set[str],
               file: str | None, linked: _Linked) -> None:
    """Append one unit's code to its section, with its relocations and symbols."""
    section_base = _PSEUDO[unit.section]
    blob = linked.contents.setdefault(unit.section, bytearray())
    blob += bytes(assembled.placed.bases[unit.key] - section_base - len(blob))
    result = assembled.results[unit.key]
    blob += result.code
    rendered = assembled.rendered[unit.key]
    source_lines = rendered.source.split("\n")
    for asm_line in result.lines:
        source_line = rendered.line_map[asm_line.line - 1]
        where = Location(file=file, line=source_line.file_line if source_line else None)
        start = asm_line.address - section_base
        _relocate_line(unit, blob, source_lines[asm_line.line - 1],
                       bytes(blob[start:start + asm_line.size]), start, relocatable, own,
                       where, linked)
    for name, address in result.labels.items():
        if name.startswith(MARKER_PREFIX):
            continue
        linked.symbols.append(ObjectSymbol(
            name, _SECTION_OF_KIND[unit.section], address - section_base, "global",
            "func" if unit.section in ("text", "replacement") else "object",
        ))


def _prel32_entries(alternatives: Sequence[Alternative], assembled: Assembled,
                    dialect: Dialect, numbering: CapNumbering, repl_section: SectionKind,
                    relocations: list[ObjectRelocation]) -> bytearray:
    """The payload's own entries: zero offsets, PREL32 against sections and callbacks."""
    table = bytearray()
    prel32 = BY_NAME["PREL32"].rtype
    for alt in alternatives:
        entry = len(table)
        fields = entry_fields(alt, assembled, dialect, numbering)
        relocations.append(ObjectRelocation(".altinstructions", entry, prel32, ".text",
                                            fields.site - _PSEUDO["text"]))
        if fields.callback is not None:
            relocations.append(ObjectRelocation(".altinstructions", entry + 4, prel32,
                                                fields.callback, 0))
        else:
            assert fields.replacement is not None  # an entry points at one or the other
            relocations.append(ObjectRelocation(
                ".altinstructions", entry + 4, prel32, _SECTION_OF_KIND[repl_section],
                assembled.placed.bases[fields.replacement] - _PSEUDO[repl_section],
            ))
        table += struct.pack("<iiHBB", 0, 0, fields.cap_field, fields.site_len,
                             fields.repl_len)
    return table


def build_payload(payload: PayloadSpec, image: Image, *, file: str | None = None
                  ) -> RelocatableObject:
    """The relocatable object of ``payload``, linked later against ``image``.

    Capabilities and callbacks follow the image's dialect and numbering (with the
    image builder's refusals); every base-image symbol the payload names becomes an
    undefined symbol.
    """
    file = file or payload.location.file or payload.text.location.file
    expanded = expand_block(payload.text, file)
    units = _payload_units(payload, expanded, image.layout, file)
    assembled = assemble_units(units, expanded.alternatives, _PSEUDO_LAYOUT, 1, 0,
                               sorted(image.symbols))
    own_labels = {name for name in assembled.labels if not name.startswith(MARKER_PREFIX)}
    unit_of = {name: key for key, result in assembled.results.items()
               for name in result.labels}
    relocatable = own_labels | set(image.symbols)
    linked = _Linked({}, [], [])
    for unit in units:
        own = {name for name, key in unit_of.items() if key == unit.key}
        _link_unit(unit, assembled, relocatable, own, file, linked)
    relocations = linked.relocations
    table = _prel32_entries(expanded.alternatives, assembled, image.dialect, image.numbering,
                            replacement_section(image.layout), relocations)
    for raw in payload.alt_table or ():
        table += _raw_entry(raw, len(table), relocatable, image.numbering, relocations, file)
    # Negative cases: a table whose size is not a multiple of the 12-byte entry.
    table += bytes(payload.alt_table_trailing_bytes)
    return _object(payload.name, linked, bytes(table))


def _object(name: str, linked: _Linked, table: bytes) -> RelocatableObject:
    """The object: sections in kind order, then undefined symbols for what is referenced."""
    symbols = list(linked.symbols)
    referenced = {r.symbol for r in linked.relocations}
    defined = {s.name for s in symbols}
    section_names = {_SECTION_OF_KIND[kind] for kind in linked.contents} | {".altinstructions"}
    for symbol in sorted(referenced - defined - section_names):
        symbols.append(ObjectSymbol(symbol, None))
    sections = [
        ObjectSection(_SECTION_OF_KIND[kind], kind, bytes(linked.contents[kind]),
                      16 if kind == "data" else 4)
        for kind in ("text", "replacement", "rodata", "data") if kind in linked.contents
    ]
    if table:
        sections.append(ObjectSection(".altinstructions", "alt-table", table, 4))
    return RelocatableObject(name, tuple(sections), tuple(symbols), tuple(linked.relocations))


__all__ = ["build_payload"]
