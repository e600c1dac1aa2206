"""Inspect and lint the alternatives table of any ELF (executable or relocatable).

:func:`inspect_elf` is pure: bytes in, an :class:`Inspection` out.  Each entry is
shown with its site (address and ``symbol+offset``), capability (number and name
when known), lengths, callback or replacement, and both instruction streams
disassembled.  The lint checks what a patcher would trip over; its codes are listed
in :data:`LINT_CODES`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pytest_altpatch.a64 import classify, pcrel
from pytest_altpatch.a64.disasm import disassemble
from pytest_altpatch.a64.granule import align_up
from pytest_altpatch.cases.model import CapNumbering
from pytest_altpatch.dialects import DEFAULT_DIALECT, Dialect, DialectTraits, traits
from pytest_altpatch.image.alt_table import ENTRY_SIZE, decode_alt_table
from pytest_altpatch.image.elf_reader import (
    ElfImage,
    load_relocatable,
    packed_placement,
    read_image,
)
from pytest_altpatch.image.model import AltEntry, Section, symbolize

#: Every lint code and what it means.
LINT_CODES: Final[Mapping[str, str]] = MappingProxyType({
    "table-size": "the table's size is not a multiple of 12 bytes",
    "site-outside-text": "a site does not lie inside executable text",
    "length-mismatch": "site and replacement lengths differ",
    "length-not-multiple-of-4": "a site or replacement length is not a multiple of 4",
    "callback-length": "a callback entry has a non-zero replacement length",
    "callback-outside-text": "a callback does not point into executable text",
    "replacement-outside-section": "a replacement does not lie inside its section",
    "literal-in-replacement": "a replacement uses a PC-relative literal the patcher cannot move",
    "overlapping-sites": "two sites overlap",
    "cap-out-of-range": "a capability number is >= NCAPS (never applies)",
})

#: Where relocatable objects are placed for inspection (any address would do).
_INSPECT_BASE: Final = 0x1000_0000
#: With a base image, objects go this far past its text (a livepatch window), so their
#: branches into the base stay within B/BL range (+-128 MiB).
_PAYLOAD_DISTANCE: Final = 0x0080_0000


@dataclass(frozen=True)
class LintFinding:
    """One lint result; ``index`` is the entry it concerns (None: the whole table)."""

    code: str
    message: str
    index: int | None = None


@dataclass(frozen=True)
class InspectedEntry:
    """One entry with names and disassembly for people."""

    entry: AltEntry
    site_name: str
    target_name: str
    site_listing: tuple[str, ...]
    replacement_listing: tuple[str, ...]


@dataclass(frozen=True)
class Inspection:
    """The inspected table of one ELF file."""

    elf_type: str
    dialect: Dialect
    ncaps: int | None
    table_start: int
    table_end: int
    entries: tuple[InspectedEntry, ...]
    findings: tuple[LintFinding, ...]

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view (addresses as hex strings)."""
        return {
            "elf_type": self.elf_type,
            "dialect": self.dialect,
            "ncaps": self.ncaps,
            "table": {"start": f"{self.table_start:#x}", "end": f"{self.table_end:#x}"},
            "entries": [
                {
                    "index": e.entry.index,
                    "entry": f"{e.entry.entry_address:#x}",
                    "site": f"{e.entry.site:#x}",
                    "site_symbol": e.site_name,
                    "cap": e.entry.cap,
                    "cap_field": e.entry.cap_field,
                    "cap_name": e.entry.cap_name,
                    "callback": e.entry.is_callback,
                    "target": f"{e.entry.target:#x}",
                    "target_symbol": e.target_name,
                    "site_len": e.entry.site_len,
                    "repl_len": e.entry.repl_len,
                    "site_asm": list(e.site_listing),
                    "replacement_asm": list(e.replacement_listing),
                }
                for e in self.entries
            ],
            "findings": [
                {"code": f.code, "index": f.index, "message": f.message} for f in self.findings
            ],
        }


def _listing(sections: Sequence[Section], address: int, length: int,
             symbols: Mapping[str, int]) -> tuple[str, ...]:
    for section in sections:
        if section.contains(address, max(length, 1)):
            start = address - section.va
            code = section.content[start:start + length]
            if address % 4:
                return (f".byte {code.hex()}",)
            return tuple(line.text for line in disassemble(code, address, symbols))
    return ("<not in any section>",) if length else ()


def _executable(sections: Sequence[Section]) -> list[Section]:
    return [s for s in sections if s.perms == "r-x" and s.kind != "harness"]


def _literal_findings(entry: AltEntry, code: bytes, row: DialectTraits) -> list[LintFinding]:
    """PC-relative literals in a replacement the dialect's patcher cannot move."""
    findings = []
    for offset in range(0, len(code) - 3, 4):
        word = int.from_bytes(code[offset:offset + 4], "little")
        cls = pcrel.pc_relative_class(word)
        if not classify.uses_literal(word) or cls is None:
            continue
        if cls.name == "adrp" and row.adrp_reloc:
            continue
        if classify.is_simd_fp_literal(word) and not row.refuse_simd_fp_literals:
            continue  # Linux's literal check does not match V = 1 (INTERPRETING §6)
        findings.append(LintFinding("literal-in-replacement", f"{cls.name} at "
                                    f"{entry.target + offset:#x} cannot be moved to the "
                                    "site", entry.index))
    return findings


def _callback_findings(entry: AltEntry, text_sections: Sequence[Section]
                       ) -> list[LintFinding]:
    findings = []
    if entry.repl_len:
        findings.append(LintFinding("callback-length", f"callback entry has "
                                    f"replacement length {entry.repl_len}", entry.index))
    if not any(s.contains(entry.target, 4) for s in text_sections):
        findings.append(LintFinding("callback-outside-text", f"callback "
                                    f"{entry.target:#x} is not inside text", entry.index))
    return findings


def _replacement_findings(entry: AltEntry, homes: Sequence[Section], row: DialectTraits
                          ) -> list[LintFinding]:
    i = entry.index
    findings = []
    if entry.repl_len != entry.site_len:
        findings.append(LintFinding("length-mismatch", f"site is {entry.site_len} bytes, "
                                    f"replacement {entry.repl_len}", i))
    home = next((s for s in homes if s.contains(entry.target, max(entry.repl_len, 1))), None)
    if home is None:
        findings.append(LintFinding("replacement-outside-section", f"replacement "
                                    f"{entry.target:#x} (+{entry.repl_len}) is not inside "
                                    f"{'/'.join(s.name for s in homes) or 'any section'}", i))
        return findings
    start = entry.target - home.va
    return findings + _literal_findings(entry, home.content[start:start + entry.repl_len], row)


def lint_entries(
    entries: Sequence[AltEntry],
    sections: Sequence[Section],
    *,
    dialect: Dialect,
    ncaps: int | None,
) -> tuple[LintFinding, ...]:
    """Lint decoded entries against the sections they point into."""
    findings: list[LintFinding] = []
    row = traits(dialect)
    replacement_sections = [s for s in sections if s.kind == "replacement"]
    text_sections = [s for s in _executable(sections) if s.kind != "replacement"]
    for entry in entries:
        i = entry.index
        if not any(s.contains(entry.site, max(entry.site_len, 1)) for s in text_sections):
            findings.append(LintFinding("site-outside-text", f"site {entry.site:#x} (+"
                                        f"{entry.site_len}) is not inside text", i))
        lengths = [entry.site_len] + ([] if entry.is_callback else [entry.repl_len])
        if any(length % 4 for length in lengths):
            findings.append(LintFinding("length-not-multiple-of-4",
                                        f"lengths {entry.site_len}/{entry.repl_len}", i))
        if ncaps is not None and entry.cap >= ncaps and not entry.is_callback:
            findings.append(LintFinding("cap-out-of-range",
                                        f"capability {entry.cap} >= NCAPS {ncaps}", i))
        if entry.is_callback:
            findings += _callback_findings(entry, text_sections)
        else:
            findings += _replacement_findings(entry, replacement_sections or text_sections,
                                              row)
    spans = sorted((e.site, e.site + e.site_len, e.index) for e in entries if e.site_len)
    for (start1, end1, i1), (start2, _end2, i2) in itertools.pairwise(spans):
        if start2 < end1:
            findings.append(LintFinding("overlapping-sites", f"sites of entries {i1} "
                                        f"({start1:#x}) and {i2} ({start2:#x}) overlap", i2))
    return tuple(findings)


def _inspect_entries(entries: Sequence[AltEntry], sections: Sequence[Section],
                     symbols: Mapping[str, int], names: Mapping[int, str]
                     ) -> tuple[InspectedEntry, ...]:
    inspected = []
    for entry in entries:
        target_len = entry.site_len if entry.is_callback else entry.repl_len
        inspected.append(InspectedEntry(
            entry,
            names.get(entry.entry_address, symbolize(symbols, entry.site)),
            names.get(entry.entry_address + 4, symbolize(symbols, entry.target)),
            _listing(sections, entry.site, entry.site_len, symbols),
            () if entry.is_callback else _listing(sections, entry.target, target_len,
                                                    symbols),
        ))
    return tuple(inspected)


def inspect_elf(
    data: bytes,
    *,
    dialect: Dialect | None = None,
    numbering: CapNumbering | None = None,
    base_image: bytes | None = None,
) -> Inspection:
    """Inspect the alternatives of an ELF image or relocatable object.

    The numbering is, in order: ``numbering``; the one ``altpatch build`` recorded in
    the file (or in ``base_image`` for objects); none (names and the NCAPS check are
    then unavailable).  The dialect defaults to the recorded one, else DEFAULT_DIALECT.
    Raises :class:`~pytest_altpatch.errors.ElfError` when the file cannot be read.
    """
    head = data[16:18]
    is_relocatable = head == b"\x01\x00"
    base: ElfImage | None = read_image(base_image, require_table=False) if base_image else None
    if is_relocatable:
        recorded = base.numbering if base is not None else None
        symbols_for_load = dict(base.symbols) if base is not None else {}
        origin = _INSPECT_BASE if base is None else base.text_end + _PAYLOAD_DISTANCE
        origin = align_up(origin)
        loaded = load_relocatable(
            data, base_symbols=symbols_for_load, placement=packed_placement(origin),
            undefined=origin,  # near the object, so branches to it stay in range
        )
        numbering = numbering or recorded
        chosen: Dialect = dialect or (numbering.dialect if numbering else DEFAULT_DIALECT)
        ncaps = numbering.ncaps if numbering else None
        sections = [
            Section(s.name, s.va, s.content, s.perms,
                    "replacement" if s.name == ".altinstr_replacement" else
                    "alt-table" if s.name == ".altinstructions" else
                    "text" if s.perms == "r-x" else "data" if s.perms == "rw-" else "rodata")
            for s in loaded.sections
        ]
        table = loaded.alt_table
        start, end = loaded.alt_table_range or (0, 0)
        symbols = {**(dict(base.symbols) if base else {}), **loaded.symbols}
        # Name table fields by the symbol their relocation names (as objdump -r would),
        # unless it is a section symbol: then the nearest label says more.
        names = {
            r.place: r.symbol if r.value == symbols.get(r.symbol, r.value)
            else f"{r.symbol}+{r.value - symbols[r.symbol]:#x}"
            for r in loaded.relocations
            if r.section == ".altinstructions" and not r.symbol.startswith(".")
        }
        elf_type = "rel"
    else:
        image = read_image(data)
        numbering = numbering or image.numbering
        chosen = dialect or (numbering.dialect if numbering else DEFAULT_DIALECT)
        ncaps = numbering.ncaps if numbering else None
        sections = list(image.sections)
        table, start, end = image.alt_table, image.alt_table_start, image.alt_table_end
        symbols = dict(image.symbols)
        names = {}
        elf_type = image.elf_type
    findings: list[LintFinding] = []
    usable = len(table) - len(table) % ENTRY_SIZE
    if usable != len(table):
        findings.append(LintFinding("table-size", f"table of {len(table)} bytes is not a "
                                    f"multiple of {ENTRY_SIZE}"))
    # Without a numbering, an "ncaps" dialect cannot tell callbacks: nothing matches.
    marking_ncaps = ncaps if ncaps is not None else 1 << 16
    entries = decode_alt_table(table[:usable], start, chosen, marking_ncaps,
                               numbering=numbering)
    findings.extend(lint_entries(entries, sections, dialect=chosen, ncaps=ncaps))
    return Inspection(elf_type, chosen, ncaps, start, end,
                      _inspect_entries(entries, sections, symbols, names), tuple(findings))


def render_text(inspection: Inspection) -> str:
    """The human-readable report."""
    lines = [
        f"{inspection.elf_type} image, dialect {inspection.dialect}, NCAPS "
        f"{inspection.ncaps if inspection.ncaps is not None else 'unknown'}; "
        f"{len(inspection.entries)} alternative(s) in table "
        f"[{inspection.table_start:#x}, {inspection.table_end:#x})",
    ]
    for item in inspection.entries:
        e = item.entry
        cap = f"cap {e.cap}" + (f" ({e.cap_name})" if e.cap_name else "")
        kind = (f"callback {item.target_name} ({e.target:#x})" if e.is_callback
                else f"replacement {item.target_name} ({e.target:#x})")
        lines.append(f"#{e.index} site {e.site:#x} <{item.site_name}> len {e.site_len}; "
                     f"{cap} field {e.cap_field:#06x}; {kind} len {e.repl_len}")
        lines.extend(f"    site: {text}" for text in item.site_listing)
        lines.extend(f"    repl: {text}" for text in item.replacement_listing)
    for finding in inspection.findings:
        where = f"#{finding.index} " if finding.index is not None else ""
        lines.append(f"lint: {where}{finding.code}: {finding.message}")
    return "\n".join(lines)


__all__ = [
    "LINT_CODES",
    "InspectedEntry",
    "Inspection",
    "LintFinding",
    "inspect_elf",
    "lint_entries",
    "render_text",
]
