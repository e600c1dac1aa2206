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
from pytest_altpatch.errors import AltpatchError, BuildError, ElfError, Location
from pytest_altpatch.image.alt_table import CALLBACK_MARKING, CB_BIT, cap_field_for
from pytest_altpatch.image.builder import (
    _assemble_all,
    _cap_number,
    _column_base,
    _lines_of,
    _require_callback,
    _site_bounds,
    _Unit,
    check_lengths,
    expand_block,
)
from pytest_altpatch.image.callbacks import CALLBACKS
from pytest_altpatch.image.macros import MARKER_PREFIX, InlineItem, NopFill, SourceLine
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
    shifted = evaluate(expression, lambda n, _c: 0x1000 if n == symbol else 0,
                       where.line or 0, 1)
    if shifted - addend != 0x1000:
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
    cap_field = _cap_number(raw.cap, numbering, where)
    if raw.cb_bit:
        cap_field |= CB_BIT
    if cap_field > 0xFFFF:
        raise BuildError("BUILD_ALT_ENTRY", f"capability field {cap_field:#x} does not fit "
                         "16 bits", location=where)
    return struct.pack("<iiHBB", 0, 0, cap_field, raw.site_len, raw.repl_len)


def build_payload(payload: PayloadSpec, image: Image, *, file: str | None = None
                  ) -> RelocatableObject:
    """The relocatable object of ``payload``, linked later against ``image``.

    Capabilities and callbacks follow the image's dialect and numbering; every
    base-image symbol the payload names becomes an undefined symbol.
    """
    dialect, numbering = image.dialect, image.numbering
    file = file or payload.location.file or payload.text.location.file
    text = payload.text
    expanded = expand_block(text, file)
    repl_section: SectionKind = (
        "text" if image.layout.replacement_placement == "subsection" else "replacement"
    )
    units = [_Unit("text", "text", 4, _split_statements(expanded.inline), file,
                   _column_base(text))]
    for alt in expanded.alternatives:
        if alt.replacement is None:
            continue
        items: tuple[InlineItem, ...] = (
            (alt.replacement,) if isinstance(alt.replacement, NopFill)
            else _split_statements(alt.replacement)
        )
        units.append(_Unit(f"repl:{alt.index}", repl_section, 4, items, file,
                           _column_base(text)))
    if payload.data is not None:
        units.append(_Unit("data", "data", 16, _split_statements(_lines_of(payload.data)),
                           file, _column_base(payload.data)))
    externals = sorted(image.symbols)
    assembled = _assemble_all(units, expanded.alternatives, _PSEUDO_LAYOUT, 1, 0, externals)
    placed = assembled.placed
    own_labels = {name: value for name, value in assembled.labels.items()
                  if not name.startswith(MARKER_PREFIX)}
    unit_of = {name: key for key, result in assembled.results.items()
               for name in result.labels}
    relocatable = set(own_labels) | set(image.symbols)

    contents: dict[SectionKind, bytearray] = {}
    relocations: list[ObjectRelocation] = []
    symbols: list[ObjectSymbol] = []
    for unit in units:
        section_base = _PSEUDO[unit.section]
        blob = contents.setdefault(unit.section, bytearray())
        unit_offset = placed.bases[unit.key] - section_base
        blob += bytes(unit_offset - len(blob))
        result = assembled.results[unit.key]
        blob += result.code
        rendered = assembled.rendered[unit.key]
        own = {name for name, key in unit_of.items() if key == unit.key}
        for asm_line in result.lines:
            source_line = rendered.line_map[asm_line.line - 1]
            where = Location(file=file, line=source_line.file_line if source_line else None)
            start = asm_line.address - section_base
            chunk = bytes(blob[start:start + asm_line.size])
            try:
                found = _statement_relocations(
                    rendered.source.split("\n")[asm_line.line - 1], chunk, start,
                    relocatable, own, where,
                )
            except AltpatchError as error:
                if isinstance(error, BuildError):
                    raise
                raise error.relocated(where) from None
            for field_offset, rtype, ref in found:
                recipe = BY_NAME[rtype]
                place = field_offset
                old_field = bytes(blob[field_offset:field_offset + recipe.width])
                # Zero the field: the addend carries the value (RELA).
                zero_target = place if recipe.value != "abs" else 0
                try:
                    blob[field_offset:field_offset + recipe.width] = relocate(
                        recipe.rtype, old_field, place, zero_target)
                except ElfError as error:
                    raise BuildError("BUILD_LAYOUT", error.message, location=where) from None
                relocations.append(ObjectRelocation(
                    _SECTION_OF_KIND[unit.section], field_offset, recipe.rtype, ref.symbol,
                    ref.addend,
                ))
        for name, address in result.labels.items():
            if name.startswith(MARKER_PREFIX):
                continue
            symbols.append(ObjectSymbol(
                name, _SECTION_OF_KIND[unit.section], address - section_base, "global",
                "func" if unit.section in ("text", "replacement") else "object",
            ))

    # The payload's own .altinstructions, PREL32 against sections and callbacks.
    table = bytearray()
    text_base = _PSEUDO["text"]
    for alt in expanded.alternatives:
        entry = len(table)
        where = alt.location
        site, site_len = _site_bounds(alt, assembled.labels)
        relocations.append(ObjectRelocation(".altinstructions", entry, BY_NAME["PREL32"].rtype,
                                            ".text", site - text_base))
        if alt.callback is not None:
            _require_callback(alt.callback, dialect, where)
            marking = CALLBACK_MARKING[dialect]
            cap = 0 if alt.cap is None or marking == "ncaps" else _cap_number(
                alt.cap, numbering, where)
            if cap >= CB_BIT:
                raise BuildError("BUILD_MACRO", f"capability {cap} collides with the "
                                 "callback bit", location=where)
            cap_field = cap_field_for(dialect, cap, is_callback=True, ncaps=numbering.ncaps)
            relocations.append(ObjectRelocation(".altinstructions", entry + 4,
                                                BY_NAME["PREL32"].rtype, alt.callback, 0))
            repl_len = 0
        else:
            assert alt.cap is not None  # every replacement form carries a capability
            cap_field = _cap_number(alt.cap, numbering, where)
            key = f"repl:{alt.index}"
            repl_len = len(assembled.results[key].code)
            check_lengths(site_len, repl_len, where, alt.end_line)
            repl_base = _PSEUDO[repl_section]
            relocations.append(ObjectRelocation(
                ".altinstructions", entry + 4, BY_NAME["PREL32"].rtype,
                _SECTION_OF_KIND[repl_section], placed.bases[key] - repl_base,
            ))
        if site_len > 0xFF:
            raise BuildError("BUILD_MACRO", f"site of {site_len} bytes does not fit the u8 "
                             "length field", location=where)
        table += struct.pack("<iiHBB", 0, 0, cap_field, site_len, repl_len)
    for raw in payload.alt_table or ():
        entry = len(table)
        table += _raw_entry(raw, entry, relocatable, numbering, relocations, file)
    # Negative cases: a table whose size is not a multiple of the 12-byte entry.
    table += bytes(payload.alt_table_trailing_bytes)

    referenced = {r.symbol for r in relocations}
    defined = {s.name for s in symbols}
    section_names = {_SECTION_OF_KIND[kind] for kind in contents} | {".altinstructions"}
    for name in sorted(referenced - defined - section_names):
        symbols.append(ObjectSymbol(name, None))
    sections = [
        ObjectSection(_SECTION_OF_KIND[kind], kind, bytes(contents[kind]), 16 if kind ==
                      "data" else 4)
        for kind in ("text", "replacement", "rodata", "data") if kind in contents
    ]
    if table:
        sections.append(ObjectSection(".altinstructions", "alt-table", bytes(table), 4))
    return RelocatableObject(payload.name, tuple(sections), tuple(symbols),
                             tuple(relocations))


__all__ = ["build_payload"]
