"""Build an :class:`Image` from a case: macro expansion, layout, assembly, the table.

The case's units (in-line text, callbacks' guest code, replacements, read-only data,
data) are assembled at their final addresses by :mod:`assembler`; each alternative's
entry fields come from :mod:`entries` and are written here as absolute self-relative
offsets.

Capability numbers come from the dialect's :class:`CapNumbering`; capabilities that
only the case defines (``case.caps``) get numbers after the dialect's, and NCAPS grows
by as many (so ``cap >= NCAPS`` still means "unknown to this kernel").
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pytest_altpatch.a64.asm import assemble
from pytest_altpatch.a64.expr import evaluate
from pytest_altpatch.a64.granule import is_page_aligned
from pytest_altpatch.cases.model import CapNumbering, Case, RawAltEntry
from pytest_altpatch.dialects import Dialect
from pytest_altpatch.errors import AltpatchError, AsmError, BuildError, Location
from pytest_altpatch.image import callbacks as cb
from pytest_altpatch.image.alt_table import ENTRY_SIZE, decode_alt_table, encode_alt_entry
from pytest_altpatch.image.assembler import (
    Assembled,
    Unit,
    assemble_units,
    column_base,
    concat,
    expand_block,
    generated_lines,
    lines_of,
    replacement_range,
    replacement_section,
    replacement_units,
    source_map,
)
from pytest_altpatch.image.entries import entry_fields, raw_cap_field
from pytest_altpatch.image.layout import default_layout
from pytest_altpatch.image.macros import MARKER_PREFIX, Alternative, InlineItem
from pytest_altpatch.image.model import (
    ADDRESS_LIMIT,
    SECTION_NAMES,
    SECTION_PERMS,
    SYM_HARNESS_END,
    SYM_HARNESS_START,
    Image,
    ImageLayout,
    Section,
    SectionKind,
    StackRegion,
)

#: Sections every image has, even when empty.
_ALWAYS: Final = frozenset({"text", "alt-table", "data", "stack"})
_KINDS: Final[tuple[SectionKind, ...]] = (
    "text", "replacement", "alt-table", "rodata", "data", "stack", "harness"
)


def extend_numbering(numbering: CapNumbering, names: Iterable[str]) -> CapNumbering:
    """``numbering`` with case-local capabilities numbered after the dialect's own.

    NCAPS grows by the number of new names, so they are valid capabilities.
    """
    numbers = dict(numbering.numbers)
    ncaps = numbering.ncaps
    for name in names:
        if numbering.number(name) is None and name not in numbers:
            numbers[name] = ncaps
            ncaps += 1
    if ncaps == numbering.ncaps:
        return numbering
    return dataclasses.replace(numbering, ncaps=ncaps, numbers=MappingProxyType(numbers))


def _units(case: Case, expanded_alts: Sequence[Alternative], inline: Sequence[InlineItem],
           layout: ImageLayout) -> list[Unit]:
    """Every unit of the image, in layout order within each section."""
    file = case.path or None
    units = [
        Unit("text", "text", 4, tuple(inline), file, column_base(case.image.text)),
        Unit("callbacks", "text", 4, generated_lines(cb.guest_text()), None),
    ]
    units += replacement_units(expanded_alts, replacement_section(layout), file,
                               column_base(case.image.text), lambda items: items)
    if case.image.rodata is not None:
        units.append(Unit("rodata", "rodata", 16, lines_of(case.image.rodata), file,
                          column_base(case.image.rodata)))
    if case.image.data is not None:
        units.append(Unit("data", "data", 16, lines_of(case.image.data), file,
                          column_base(case.image.data)))
    units.append(Unit("callback-data", "data", 16, generated_lines(cb.guest_data()), None))
    return units


def _check_regions(regions: Sequence[tuple[str, int, int]]) -> None:
    """Regions must not overlap and must stay below the address limit."""
    ordered = sorted((start, end, name) for name, start, end in regions if end > start)
    for start, end, name in ordered:
        if end > ADDRESS_LIMIT:
            raise BuildError("BUILD_LAYOUT", f"{name} [{start:#x}, {end:#x}) is above the "
                             f"address limit {ADDRESS_LIMIT:#x}")
    for (s1, e1, n1), (s2, e2, n2) in itertools.pairwise(ordered):
        if s2 < e1:
            raise BuildError("BUILD_LAYOUT", f"{n1} [{s1:#x}, {e1:#x}) overlaps {n2} "
                             f"[{s2:#x}, {e2:#x})")
    for start, _end, name in ordered:
        if not is_page_aligned(start):
            raise BuildError("BUILD_LAYOUT", f"{name} base {start:#x} is not page-aligned")


def _absolute_entry(alt: Alternative, assembled: Assembled, dialect: Dialect,
                    numbering: CapNumbering, callback_addresses: Mapping[str, int],
                    entry_address: int) -> bytes:
    """A macro alternative's entry at ``entry_address``, its offsets final."""
    fields = entry_fields(alt, assembled, dialect, numbering)
    if fields.callback is not None:
        target = callback_addresses[fields.callback]
    else:
        assert fields.replacement is not None  # an entry points at one or the other
        target = assembled.placed.bases[fields.replacement]
    try:
        return encode_alt_entry(entry_address, fields.site, target, fields.cap_field,
                                fields.site_len, fields.repl_len)
    except ValueError as error:
        raise BuildError("BUILD_LAYOUT", str(error), location=alt.location) from None


def _raw_entry(raw: RawAltEntry, symbols: Mapping[str, int], numbering: CapNumbering,
               dialect: Dialect, callback_addresses: Mapping[str, int], entry_address: int,
               file: str | None) -> bytes:
    """Encode a hand-written (possibly malformed on purpose) table entry."""
    where = raw.location.merged(Location(file=file))

    def value_of(expression: str | int, what: str) -> int:
        if isinstance(expression, int):
            return expression

        def resolve(name: str, _column: int) -> int:
            if name not in symbols:
                raise BuildError("BUILD_ALT_ENTRY", f"{what} refers to unknown label "
                                 f"{name!r}", location=where)
            return symbols[name]

        try:
            return evaluate(expression, resolve, where.line or 0, 1)
        except AsmError as error:
            raise BuildError("BUILD_ALT_ENTRY", f"{what} {expression!r}: {error.message}",
                             location=where) from None

    site = value_of(raw.site, "site")
    if raw.callback is not None:
        if raw.callback not in cb.CALLBACKS:
            raise BuildError("BUILD_UNKNOWN_CALLBACK", f"callback {raw.callback!r} is not "
                             "registered", location=where)
        target = callback_addresses[raw.callback]
    elif raw.replacement is None:
        target = entry_address + 4  # offset 0: the field points at itself
    else:
        target = value_of(raw.replacement, "replacement")
    field = raw_cap_field(raw, numbering, where)
    try:
        return encode_alt_entry(entry_address, site, target, field, raw.site_len,
                                raw.repl_len)
    except ValueError as error:
        raise BuildError("BUILD_ALT_ENTRY", str(error), location=where) from None


@dataclass(frozen=True)
class _Harness:
    code: bytes
    labels: Mapping[str, int]


def _assemble_harness(harness_text: str | None, base: int, symbols: Mapping[str, int]
                      ) -> _Harness:
    """The harness, assembled with every image symbol visible (its labels must be new)."""
    if harness_text is None:
        return _Harness(b"", {})
    try:
        harness = assemble(harness_text, base, symbols)
    except AltpatchError as error:
        raise error.relocated(Location(file="<harness>")) from None
    for name in harness.labels:
        if name in symbols:
            raise AsmError("ASM_DUPLICATE_LABEL", f"harness label {name!r} is already "
                           "an image symbol", location=Location(file="<harness>"))
    return _Harness(harness.code, harness.labels)


def _sections(units: Sequence[Unit], assembled: Assembled, layout: ImageLayout,
              table: bytes, harness: bytes, cpu_count: int) -> tuple[Section, ...]:
    """The image's sections (the empty optional ones left out), checked for overlap."""
    contents: dict[SectionKind, bytes] = {
        kind: concat(units, kind, assembled)
        for kind in ("text", "replacement", "rodata", "data")
    }
    contents["alt-table"] = table
    contents["stack"] = bytes(cpu_count * layout.stack_size)
    contents["harness"] = harness
    bases: dict[SectionKind, int] = {
        "text": layout.text_base, "replacement": assembled.placed.bounds["replacement"][0],
        "alt-table": layout.table_base, "rodata": layout.rodata_base,
        "data": layout.data_base, "stack": layout.stack_base,
        "harness": layout.harness_base,
    }
    sections = tuple(
        Section(SECTION_NAMES[kind], bases[kind], contents[kind], SECTION_PERMS[kind], kind)
        for kind in _KINDS if kind in _ALWAYS or contents[kind]
    )
    _check_regions([(s.name, s.va, s.end) for s in sections])
    return sections


def _alt_table(case: Case, alternatives: Sequence[Alternative], assembled: Assembled,
               layout: ImageLayout, dialect: Dialect, numbering: CapNumbering,
               symbols: Mapping[str, int], callback_addresses: Mapping[str, int]) -> bytes:
    """The macro alternatives' entries, then the hand-written ones."""
    table = bytearray()
    for alt in alternatives:
        table += _absolute_entry(alt, assembled, dialect, numbering, callback_addresses,
                                 layout.table_base + len(table))
    for raw in case.image.alt_table or ():
        table += _raw_entry(raw, symbols, numbering, dialect, callback_addresses,
                            layout.table_base + len(table), case.path or None)
    return bytes(table)


def build_image(
    case: Case,
    *,
    dialect: Dialect,
    numbering: CapNumbering,
    layout: ImageLayout | None = None,
    harness_text: str | None = None,
    ncpus: int | None = None,
) -> Image:
    """Lay out ``case`` as an image for ``dialect``.

    ``numbering`` is the dialect's capability numbering; case-local capabilities
    (``case.caps``) are appended (see :func:`extend_numbering`).  ``harness_text`` is
    assembled in its own R-X section with every image symbol visible.  ``ncpus``
    defaults to the platform's CPUs plus the late CPUs.

    Raises :class:`BuildError` (``BUILD_LENGTH_MISMATCH``, ``BUILD_MACRO``,
    ``BUILD_UNKNOWN_CALLBACK``, ``BUILD_UNKNOWN_CAP``, ``BUILD_LAYOUT``,
    ``BUILD_ALT_ENTRY``) or :class:`AsmError`, located at the case file line.
    """
    layout = layout or default_layout(dialect)
    numbering = extend_numbering(numbering, (cap.name for cap in case.caps))
    cpu_count = ncpus if ncpus is not None else max(1, len(case.platform) + len(case.late_cpus))
    file = case.path or None
    expanded = expand_block(case.image.text, file)
    units = _units(case, expanded.alternatives, expanded.inline, layout)
    table_size = ENTRY_SIZE * (len(expanded.alternatives) + len(case.image.alt_table or ()))
    assembled = assemble_units(units, expanded.alternatives, layout, cpu_count, table_size)
    symbols: dict[str, int] = {
        name: value for name, value in assembled.labels.items()
        if not name.startswith(MARKER_PREFIX)
    }
    symbols.update(assembled.linker)
    callback_addresses = {name: assembled.labels[name] for name in cb.CALLBACKS}
    table = _alt_table(case, expanded.alternatives, assembled, layout, dialect, numbering,
                       symbols, callback_addresses)
    harness = _assemble_harness(harness_text, layout.harness_base, symbols)
    symbols.update(harness.labels)
    symbols[SYM_HARNESS_START] = layout.harness_base
    symbols[SYM_HARNESS_END] = layout.harness_base + len(harness.code)
    sections = _sections(units, assembled, layout, table, harness.code, cpu_count)
    repl_start, repl_end = replacement_range(units, assembled)
    data_bounds = assembled.placed.bounds["data"]
    return Image(
        dialect=dialect,
        numbering=numbering,
        layout=layout,
        sections=sections,
        symbols=MappingProxyType(dict(sorted(symbols.items()))),
        alt_entries=decode_alt_table(table, layout.table_base, dialect, numbering.ncaps,
                                     numbering=numbering),
        alt_table_start=layout.table_base,
        alt_table_end=layout.table_base + len(table),
        text_start=sections[0].va,
        text_end=sections[0].end,
        replacement_start=repl_start,
        replacement_end=repl_end,
        stacks=tuple(
            StackRegion(cpu, layout.stack_base + cpu * layout.stack_size,
                        layout.stack_base + (cpu + 1) * layout.stack_size)
            for cpu in range(cpu_count)
        ),
        harness_start=layout.harness_base,
        harness_end=layout.harness_base + len(harness.code),
        data_start=data_bounds[0],
        data_end=data_bounds[1],
        callbacks=MappingProxyType(dict(sorted(callback_addresses.items()))),
        source_map=source_map(units, assembled, file),
    )


__all__ = ["build_image", "extend_numbering"]
