"""Build an :class:`Image` from a case: macro expansion, layout, assembly, the table.

The case text is split by :mod:`macros` into *units*, each assembled at its own
address: the in-line text (sites bracketed by marker labels), the registered
callbacks' guest code, one unit per replacement, read-only data, data.  Units refer
to each other's labels, and some sizes depend on others (NOP fills), so the builder
iterates: lay out with the sizes it knows, assemble every unit with every other
unit's labels, and repeat until sizes and labels stop changing (two or three rounds).

Capability numbers come from the dialect's :class:`CapNumbering`; capabilities that
only the case defines (``case.caps``) get numbers after the dialect's, and NCAPS grows
by as many (so ``cap >= NCAPS`` still means "unknown to this kernel").
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pytest_altpatch.a64.asm import Assembly, CheckedSymbols, SymbolTable, assemble
from pytest_altpatch.a64.expr import evaluate
from pytest_altpatch.a64.syntax import parse_source
from pytest_altpatch.cases.model import (
    CapNumbering,
    Case,
    Dialect,
    RawAltEntry,
    SourceBlock,
)
from pytest_altpatch.errors import AltpatchError, AsmError, BuildError, Location
from pytest_altpatch.image import callbacks as cb
from pytest_altpatch.image.alt_table import (
    CALLBACK_MARKING,
    CB_BIT,
    ENTRY_SIZE,
    cap_field_for,
    decode_alt_table,
    encode_alt_entry,
)
from pytest_altpatch.image.layout import default_layout
from pytest_altpatch.image.macros import (
    MARKER_PREFIX,
    Alternative,
    ExpandedText,
    InlineItem,
    NopFill,
    SourceLine,
    expand,
)
from pytest_altpatch.image.model import (
    ADDRESS_LIMIT,
    PAGE_SIZE,
    SECTION_NAMES,
    SECTION_PERMS,
    SYM_ALT_END,
    SYM_ALT_START,
    SYM_DATA_END,
    SYM_DATA_START,
    SYM_HARNESS_END,
    SYM_HARNESS_START,
    SYM_REPL_END,
    SYM_REPL_START,
    SYM_STACKS_END,
    SYM_STACKS_START,
    SYM_TEXT,
    SYM_TEXT_END,
    SYM_TEXT_START,
    Image,
    ImageLayout,
    Section,
    SectionKind,
    SourceMap,
    SourceSpan,
    StackRegion,
)

_MAX_ROUNDS: Final = 8
_NOP_LINE: Final = "nop"


@dataclass(frozen=True)
class _Unit:
    """A piece of source assembled at one address inside one section."""

    key: str
    section: SectionKind
    align: int
    items: tuple[InlineItem, ...]
    #: The case file the lines come from; None for generated code (callbacks).
    file: str | None
    #: File column of the block's first character (YAML block scalars are indented).
    column_base: int = 1


@dataclass(frozen=True)
class _Rendered:
    source: str
    line_map: tuple[SourceLine | None, ...]


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


def _lines_of(block: SourceBlock) -> tuple[SourceLine, ...]:
    first = block.location.line or 1
    return tuple(SourceLine(text, first + offset) for offset, text in
                 enumerate(block.text.split("\n")))


def _column_base(block: SourceBlock) -> int:
    return block.location.column or 1


def expand_block(block: SourceBlock, file: str | None) -> ExpandedText:
    """Expand a case block's macros, with errors at the block's file columns."""
    try:
        return expand(block.text, block.location.line or 1, file)
    except BuildError as error:
        column = error.location.column
        if column is None:
            raise
        location = dataclasses.replace(error.location, column=column + _column_base(block) - 1)
        raise BuildError(error.code, error.message, location=location, hint=error.hint) from None


def _generated(text: str) -> tuple[SourceLine, ...]:
    return tuple(SourceLine(line, 0) for line in text.split("\n"))


def _render(unit: _Unit, fill_sizes: Callable[[int], int]) -> _Rendered:
    """Source text of a unit, NOP fills expanded to the size the other half has now."""
    lines: list[str] = []
    line_map: list[SourceLine | None] = []
    for item in unit.items:
        if isinstance(item, NopFill):
            for _ in range(fill_sizes(item.index) // 4):
                lines.append(_NOP_LINE)
                line_map.append(None)
            continue
        lines.append(item.text)
        line_map.append(item)
    return _Rendered("\n".join(lines), tuple(line_map))


def _relocate_error(error: AltpatchError, unit: _Unit, rendered: _Rendered,
                    fallback: Location | None) -> AltpatchError:
    """Move an assembler error from the rendered unit to the case file line."""
    line = error.location.line
    source_line = rendered.line_map[line - 1] if line and 0 < line <= len(
        rendered.line_map) else None
    if source_line is None or source_line.file_line == 0:
        if unit.file is None and fallback is None:
            return error  # generated code: the error is the builder's own
        where = fallback if fallback is not None else Location(file=unit.file)
        return type(error)(error.code, error.message, location=where, phase=error.phase,
                           hint=error.hint)
    column = source_line.column or error.location.column
    if column is not None:
        column += unit.column_base - 1
    location = dataclasses.replace(
        error.location, file=unit.file, line=source_line.file_line, column=column
    )
    return type(error)(error.code, error.message, location=location, phase=error.phase,
                       hint=error.hint)


def _defined_labels(rendered: _Rendered) -> dict[str, int]:
    """Named labels a unit defines -> rendered line (numeric labels stay local)."""
    found: dict[str, int] = {}
    for statement in parse_source(rendered.source):
        for label in statement.labels:
            if not label.name.isdigit():
                found.setdefault(label.name, statement.line)
    return found


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


@dataclass(frozen=True)
class _Placed:
    bases: Mapping[str, int]
    bounds: Mapping[SectionKind, tuple[int, int]]


def _place(units: Sequence[_Unit], sizes: Mapping[str, int], layout: ImageLayout,
           table_size: int) -> _Placed:
    """Unit base addresses and section bounds for the current sizes."""
    section_base: dict[SectionKind, int] = {
        "text": layout.text_base,
        "rodata": layout.rodata_base,
        "data": layout.data_base,
    }
    cursor = dict(section_base)
    bases: dict[str, int] = {}
    # Text first: a replacement section without a fixed base follows it.
    order = sorted(units, key=lambda unit: unit.section != "text")
    for unit in order:
        if unit.section == "replacement" and "replacement" not in section_base:
            section_base["replacement"] = cursor["replacement"] = _replacement_base(
                layout, cursor["text"])
        address = _align(cursor[unit.section], unit.align)
        bases[unit.key] = address
        cursor[unit.section] = address + sizes.get(unit.key, 0)
    if "replacement" not in section_base:
        section_base["replacement"] = cursor["replacement"] = _replacement_base(
            layout, cursor["text"])
    bounds: dict[SectionKind, tuple[int, int]] = {
        kind: (section_base[kind], cursor[kind]) for kind in section_base
    }
    bounds["alt-table"] = (layout.table_base, layout.table_base + table_size)
    return _Placed(bases, bounds)


def _replacement_base(layout: ImageLayout, text_end: int) -> int:
    if layout.replacement_base is not None:
        return layout.replacement_base
    return _align(max(text_end, layout.text_base + 1), PAGE_SIZE)


def _linker_symbols(placed: _Placed, layout: ImageLayout, repl_bounds: tuple[int, int],
                    ncpus: int) -> dict[str, int]:
    text = placed.bounds["text"]
    table = placed.bounds["alt-table"]
    data = placed.bounds["data"]
    return {
        SYM_TEXT: text[0],
        SYM_TEXT_START: text[0],
        SYM_TEXT_END: text[1],
        SYM_ALT_START: table[0],
        SYM_ALT_END: table[1],
        SYM_REPL_START: repl_bounds[0],
        SYM_REPL_END: repl_bounds[1],
        SYM_DATA_START: data[0],
        SYM_DATA_END: data[1],
        SYM_STACKS_START: layout.stack_base,
        SYM_STACKS_END: layout.stack_base + ncpus * layout.stack_size,
    }


def _units(case: Case, expanded_alts: Sequence[Alternative], inline: Sequence[InlineItem],
           layout: ImageLayout) -> list[_Unit]:
    """Every unit of the image, in layout order within each section."""
    file = case.path or None
    repl_section: SectionKind = (
        "text" if layout.replacement_placement == "subsection" else "replacement"
    )
    units = [
        _Unit("text", "text", 4, tuple(inline), file, _column_base(case.image.text)),
        _Unit("callbacks", "text", 4, _generated(cb.guest_text()), None),
    ]
    for alt in expanded_alts:
        if alt.replacement is None:
            continue
        items: tuple[InlineItem, ...] = (
            (alt.replacement,) if isinstance(alt.replacement, NopFill) else alt.replacement
        )
        units.append(_Unit(f"repl:{alt.index}", repl_section, 4, items, file,
                           _column_base(case.image.text)))
    if case.image.rodata is not None:
        units.append(_Unit("rodata", "rodata", 16, _lines_of(case.image.rodata), file,
                           _column_base(case.image.rodata)))
    if case.image.data is not None:
        units.append(_Unit("data", "data", 16, _lines_of(case.image.data), file,
                           _column_base(case.image.data)))
    units.append(_Unit("callback-data", "data", 16, _generated(cb.guest_data()), None))
    return units


def _site_bounds(alt: Alternative, labels: Mapping[str, int]) -> tuple[int, int]:
    start = labels.get(alt.site_label, 0)
    return start, labels.get(alt.site_end_label, start) - start


def _fill_sizer(unit_key: str, by_index: Mapping[int, Alternative], sizes: Mapping[str, int],
                labels: Mapping[str, int]) -> Callable[[int], int]:
    """How long a NOP fill in ``unit_key`` must be, from the last round's results."""

    def fill_size(index: int) -> int:
        if unit_key == "text":  # the site is NOPs: as long as the replacement
            return sizes.get(f"repl:{index}", 0)
        return _site_bounds(by_index[index], labels)[1]  # the replacement is NOPs

    return fill_size


class _UnitSymbols(CheckedSymbols):
    """What one unit sees of the others, without copying the image's table per unit.

    Linker symbols first, then other units' labels, then ``externals`` at the unit's
    own base; the unit's own labels are never external.  Every value is an address the
    layout or the assembler produced, and the names were checked once.
    """

    __slots__ = ("_base", "_externals", "_key", "_labels", "_linker", "_owned", "_owner")

    def __init__(self, key: str, base: int, labels: Mapping[str, int],
                 owner: Mapping[str, str], linker: Mapping[str, int],
                 externals: Mapping[str, int], owned: set[str]) -> None:
        self._key, self._base, self._labels, self._owner = key, base, labels, owner
        self._linker, self._externals, self._owned = linker, externals, owned

    def get(self, name: str, default: int | None = None) -> int | None:  # type: ignore[override]
        """The value ``name`` has for this unit, or ``default``."""
        if name in self._owned:
            return default
        value = self._linker.get(name)
        if value is not None:
            return value
        value = self._labels.get(name)
        if value is not None and self._owner.get(name) != self._key:
            return value
        if name in self._externals:
            return self._base
        return default

    def __getitem__(self, name: str) -> int:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def _names(self) -> set[str]:
        names = {name for name in self._labels if self._owner.get(name) != self._key}
        return (names | set(self._linker) | set(self._externals)) - self._owned

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names()))

    def __len__(self) -> int:
        return len(self._names())


@dataclass(frozen=True)
class _Assembled:
    placed: _Placed
    results: Mapping[str, Assembly]
    rendered: Mapping[str, _Rendered]
    labels: Mapping[str, int]
    linker: Mapping[str, int]


@contextlib.contextmanager
def _no_cyclic_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything).

    Assembly allocates many small acyclic objects; the collector's full passes over
    the growing heap would make a large build superlinear in its sites.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _assemble_all(units: Sequence[_Unit], alts: Sequence[Alternative], layout: ImageLayout,
                  ncpus: int, table_size: int, externals: Iterable[str] = ()) -> _Assembled:
    """Iterate layout and assembly until every size and label is stable.

    ``externals`` are names resolved elsewhere (a payload's base-image symbols): each
    unit sees them at its own base, a placeholder the payload's relocations replace.
    """
    with _no_cyclic_collection():
        return _settle(units, alts, layout, ncpus, table_size, externals)


def _settle(units: Sequence[_Unit], alts: Sequence[Alternative], layout: ImageLayout,
            ncpus: int, table_size: int, externals: Iterable[str]) -> _Assembled:
    externals_table = SymbolTable(dict.fromkeys(externals, 0))  # names checked once
    by_index = {alt.index: alt for alt in alts}
    sizes: dict[str, int] = {}
    labels: dict[str, int] = {}
    owner: dict[str, str] = {}
    owned: dict[str, set[str]] = {unit.key: set() for unit in units}
    first = True
    for _ in range(_MAX_ROUNDS):
        placed = _place(units, sizes, layout, table_size)
        repl_keys = [u.key for u in units if u.key.startswith("repl:")]
        repl_bounds = (
            (placed.bases[repl_keys[0]],
             placed.bases[repl_keys[-1]] + sizes.get(repl_keys[-1], 0))
            if repl_keys else (placed.bounds["text"][1],) * 2
            if layout.replacement_placement == "subsection"
            else (placed.bounds["replacement"][0],) * 2
        )
        linker = _linker_symbols(placed, layout, repl_bounds, ncpus)

        rendered = {
            unit.key: _render(unit, _fill_sizer(unit.key, by_index, sizes, labels))
            for unit in units
        }
        if first:
            # Labels are not known yet: give every label its unit's base for round one.
            for unit in units:
                try:
                    defined = _defined_labels(rendered[unit.key])
                except AltpatchError as error:
                    raise _relocate_error(error, unit, rendered[unit.key], None) from None
                for name, line in defined.items():
                    if name in owner or name in linker:
                        source_line = rendered[unit.key].line_map[line - 1]
                        raise AsmError(
                            "ASM_DUPLICATE_LABEL",
                            f"label {name!r} is already defined"
                            + (f" (in {owner[name]})" if name in owner else
                               " (a linker symbol)"),
                            location=Location(
                                file=unit.file,
                                line=source_line.file_line if source_line else None,
                            ),
                        )
                    owner[name] = unit.key
                    owned[unit.key].add(name)
                    labels[name] = placed.bases[unit.key]
            first = False
        results: dict[str, Assembly] = {}
        checked_linker = SymbolTable(linker)
        for unit in units:
            foreign = _UnitSymbols(unit.key, placed.bases[unit.key], labels, owner,
                                   checked_linker, externals_table, owned[unit.key])
            try:
                results[unit.key] = assemble(
                    rendered[unit.key].source, placed.bases[unit.key], foreign
                )
            except AltpatchError as error:
                raise _relocate_error(error, unit, rendered[unit.key], None) from None
        new_sizes = {key: len(result.code) for key, result in results.items()}
        new_labels = {
            name: value for result in results.values() for name, value in result.labels.items()
        }
        if new_sizes == sizes and new_labels == labels:
            return _Assembled(placed, results, rendered, labels, linker)
        sizes, labels = new_sizes, new_labels
    raise BuildError("BUILD_LAYOUT", f"layout did not settle after {_MAX_ROUNDS} rounds "
                     "(sizes depend on addresses in a cycle)")


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
        if start % PAGE_SIZE:
            raise BuildError("BUILD_LAYOUT", f"{name} base {start:#x} is not page-aligned")


def check_lengths(site_len: int, repl_len: int, where: Location, end_line: int) -> None:
    """Refuse unequal site and replacement lengths, as the kernel macros' ``.org`` does."""
    if repl_len != site_len:
        raise BuildError(
            "BUILD_LENGTH_MISMATCH",
            f"site is {site_len} bytes but replacement is {repl_len} bytes "
            f"(alternative at lines {where.line}-{end_line})",
            location=where,
        )


def _cap_number(cap: str | int, numbering: CapNumbering, where: Location) -> int:
    if isinstance(cap, int):
        if not 0 <= cap <= 0xFFFF:
            raise BuildError("BUILD_MACRO", f"capability {cap} does not fit the u16 field",
                             location=where)
        return cap
    number = numbering.number(cap)
    if number is None:
        raise BuildError(
            "BUILD_UNKNOWN_CAP",
            f"capability {cap!r} has no number in {numbering.dialect}",
            location=where,
            hint="declare case-local capabilities under caps:",
        )
    return number


def _require_callback(name: str, dialect: Dialect, where: Location) -> None:
    if CALLBACK_MARKING[dialect] == "none":
        raise BuildError("BUILD_UNKNOWN_CALLBACK", f"dialect {dialect} has no callback "
                         f"alternatives (callback {name!r})", location=where)
    if name not in cb.CALLBACKS:
        raise BuildError("BUILD_UNKNOWN_CALLBACK", f"callback {name!r} is not registered "
                         f"(known: {', '.join(sorted(cb.CALLBACKS))})", location=where)


def _macro_entry(alt: Alternative, assembled: _Assembled, dialect: Dialect,
                 numbering: CapNumbering, callback_addresses: Mapping[str, int]
                 ) -> tuple[int, int, int, int, int]:
    """(site, target, cap_field, site_len, repl_len) for a macro alternative."""
    where = alt.location
    site, site_len = _site_bounds(alt, assembled.labels)
    if alt.callback is not None:
        _require_callback(alt.callback, dialect, where)
        marking = CALLBACK_MARKING[dialect]
        if alt.cap is None and marking == "bit15":
            raise BuildError("BUILD_MACRO", f"dialect {dialect} needs a capability for "
                             f"callback {alt.callback!r}", location=where)
        # In "ncaps" dialects a callback has no capability of its own: the field is NCAPS.
        cap = 0 if alt.cap is None or marking == "ncaps" else _cap_number(
            alt.cap, numbering, where)
        if cap >= CB_BIT:
            raise BuildError("BUILD_MACRO", f"capability {cap} collides with the callback "
                             "bit", location=where)
        field = cap_field_for(dialect, cap, is_callback=True, ncaps=numbering.ncaps)
        target, repl_len = callback_addresses[alt.callback], 0
    else:
        assert alt.cap is not None  # every replacement form carries a capability
        field = _cap_number(alt.cap, numbering, where)
        key = f"repl:{alt.index}"
        target = assembled.placed.bases[key]
        repl_len = len(assembled.results[key].code)
        check_lengths(site_len, repl_len, where, alt.end_line)
    if site_len > 0xFF:
        raise BuildError("BUILD_MACRO", f"site of {site_len} bytes does not fit the u8 "
                         "length field", location=where)
    return site, target, field, site_len, repl_len


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
    field = _cap_number(raw.cap, numbering, where)
    if raw.cb_bit:
        field |= CB_BIT
    try:
        return encode_alt_entry(entry_address, site, target, field, raw.site_len,
                                raw.repl_len)
    except ValueError as error:
        raise BuildError("BUILD_ALT_ENTRY", str(error), location=where) from None


def _concat(units: Sequence[_Unit], section: SectionKind, placed: _Placed,
            results: Mapping[str, Assembly]) -> bytes:
    start = placed.bounds[section][0]
    blob = bytearray()
    for unit in units:
        if unit.section != section:
            continue
        offset = placed.bases[unit.key] - start
        blob += bytes(offset - len(blob))
        blob += results[unit.key].code
    return bytes(blob)


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
    text_block = case.image.text
    expanded = expand_block(text_block, file)
    units = _units(case, expanded.alternatives, expanded.inline, layout)
    raw_entries = case.image.alt_table or ()
    table_size = ENTRY_SIZE * (len(expanded.alternatives) + len(raw_entries))
    assembled = _assemble_all(units, expanded.alternatives, layout, cpu_count, table_size)
    placed = assembled.placed
    symbols: dict[str, int] = {
        name: value for name, value in assembled.labels.items()
        if not name.startswith(MARKER_PREFIX)
    }
    symbols.update(assembled.linker)
    callback_addresses = {name: assembled.labels[name] for name in cb.CALLBACKS}

    table = bytearray()
    for alt in expanded.alternatives:
        site, target, field, site_len, repl_len = _macro_entry(
            alt, assembled, dialect, numbering, callback_addresses
        )
        entry_address = layout.table_base + len(table)
        try:
            table += encode_alt_entry(entry_address, site, target, field, site_len, repl_len)
        except ValueError as error:
            raise BuildError("BUILD_LAYOUT", str(error), location=alt.location) from None
    for raw in raw_entries:
        table += _raw_entry(raw, symbols, numbering, dialect, callback_addresses,
                            layout.table_base + len(table), file)

    stacks = tuple(
        StackRegion(cpu, layout.stack_base + cpu * layout.stack_size,
                    layout.stack_base + (cpu + 1) * layout.stack_size)
        for cpu in range(cpu_count)
    )
    contents: dict[SectionKind, bytes] = {
        kind: _concat(units, kind, placed, assembled.results)
        for kind in ("text", "replacement", "rodata", "data")
    }
    contents["alt-table"] = bytes(table)
    contents["stack"] = bytes(cpu_count * layout.stack_size)
    bases: dict[SectionKind, int] = {
        "text": layout.text_base, "replacement": placed.bounds["replacement"][0],
        "alt-table": layout.table_base, "rodata": layout.rodata_base,
        "data": layout.data_base, "stack": layout.stack_base,
        "harness": layout.harness_base,
    }
    harness = b""
    if harness_text is not None:
        try:
            harness_asm = assemble(harness_text, layout.harness_base, symbols)
        except AltpatchError as error:
            raise error.relocated(Location(file="<harness>")) from None
        harness = harness_asm.code
        for name, value in harness_asm.labels.items():
            if name in symbols:
                raise AsmError("ASM_DUPLICATE_LABEL", f"harness label {name!r} is already "
                               "an image symbol", location=Location(file="<harness>"))
            symbols[name] = value
    contents["harness"] = harness
    symbols[SYM_HARNESS_START] = layout.harness_base
    symbols[SYM_HARNESS_END] = layout.harness_base + len(harness)

    kinds: tuple[SectionKind, ...] = (
        "text", "replacement", "alt-table", "rodata", "data", "stack", "harness"
    )
    always = {"text", "alt-table", "data", "stack"}
    sections = tuple(
        Section(SECTION_NAMES[kind], bases[kind], contents[kind], SECTION_PERMS[kind], kind)
        for kind in kinds if kind in always or contents[kind]
    )
    _check_regions([(s.name, s.va, s.end) for s in sections])

    repl_keys = [u.key for u in units if u.key.startswith("repl:")]
    if repl_keys:
        repl_start = placed.bases[repl_keys[0]]
        repl_end = placed.bases[repl_keys[-1]] + len(assembled.results[repl_keys[-1]].code)
    else:
        repl_start = repl_end = assembled.linker[SYM_REPL_START]
    alt_entries = decode_alt_table(bytes(table), layout.table_base, dialect, numbering.ncaps,
                                   numbering=numbering)
    text_section = sections[0]
    data_bounds = placed.bounds["data"]
    return Image(
        dialect=dialect,
        numbering=numbering,
        layout=layout,
        sections=sections,
        symbols=MappingProxyType(dict(sorted(symbols.items()))),
        alt_entries=alt_entries,
        alt_table_start=layout.table_base,
        alt_table_end=layout.table_base + len(table),
        text_start=text_section.va,
        text_end=text_section.end,
        replacement_start=repl_start,
        replacement_end=repl_end,
        stacks=stacks,
        harness_start=layout.harness_base,
        harness_end=layout.harness_base + len(harness),
        data_start=data_bounds[0],
        data_end=data_bounds[1],
        callbacks=MappingProxyType(dict(sorted(callback_addresses.items()))),
        source_map=_source_map(units, assembled, file),
    )


def _source_map(units: Sequence[_Unit], assembled: _Assembled, file: str | None) -> SourceMap:
    spans: list[SourceSpan] = []
    for unit in units:
        if unit.file is None:
            continue
        line_map = assembled.rendered[unit.key].line_map
        for asm_line in assembled.results[unit.key].lines:
            if asm_line.size == 0 or not 0 < asm_line.line <= len(line_map):
                continue
            source_line = line_map[asm_line.line - 1]
            if source_line is None or source_line.file_line == 0:
                continue
            spans.append(SourceSpan(asm_line.address, asm_line.size, source_line.file_line,
                                    asm_line.text))
    spans.sort(key=lambda span: span.address)
    return SourceMap(file, tuple(spans))


__all__ = ["build_image", "expand_block", "extend_numbering"]
