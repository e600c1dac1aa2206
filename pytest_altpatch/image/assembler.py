"""The assembler driver shared by images and payloads: units, the settle loop, locations.

Case text is split by :mod:`macros` into *units*, each assembled at its own address:
the in-line text (sites bracketed by marker labels), the registered callbacks' guest
code, one unit per replacement, read-only data, data.  Units refer to each other's
labels, and some sizes depend on others (NOP fills), so the driver iterates: lay out
with the sizes it knows, assemble every unit with every other unit's labels, and
repeat until sizes and labels stop changing (two or three rounds).

The image builder assembles at the final addresses; the payload builder at placeholder
section bases (and turns what depends on them into relocations).  Errors from the
assembler are moved to the case file line (and column) the unit's line came from, and
:func:`source_map` maps every assembled instruction back to that line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pytest_altpatch import collector
from pytest_altpatch.a64.asm import Assembly, CheckedSymbols, SymbolTable, assemble
from pytest_altpatch.a64.granule import PAGE_SIZE, align_up
from pytest_altpatch.a64.syntax import parse_source
from pytest_altpatch.cases.model import SourceBlock
from pytest_altpatch.errors import AltpatchError, AsmError, BuildError, Location
from pytest_altpatch.image.macros import (
    Alternative,
    ExpandedText,
    InlineItem,
    NopFill,
    SourceLine,
    expand,
)
from pytest_altpatch.image.model import (
    SYM_ALT_END,
    SYM_ALT_START,
    SYM_DATA_END,
    SYM_DATA_START,
    SYM_REPL_END,
    SYM_REPL_START,
    SYM_STACKS_END,
    SYM_STACKS_START,
    SYM_TEXT,
    SYM_TEXT_END,
    SYM_TEXT_START,
    ImageLayout,
    SectionKind,
    SourceMap,
    SpanFields,
)

_MAX_ROUNDS: Final = 8
_NOP_LINE: Final = "nop"
#: Key prefix of the units that hold one alternative's replacement each.
REPLACEMENT_KEY: Final = "repl:"


@dataclass(frozen=True)
class Unit:
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
class Rendered:
    """A unit's source text as assembled, and the case line each of its lines came from."""

    source: str
    line_map: tuple[SourceLine | None, ...]


@dataclass(frozen=True)
class Placed:
    """Unit base addresses and section bounds for one round's sizes."""

    bases: Mapping[str, int]
    bounds: Mapping[SectionKind, tuple[int, int]]


@dataclass(frozen=True)
class Assembled:
    """The settled result: placement, every unit's assembly and source, all labels."""

    placed: Placed
    results: Mapping[str, Assembly]
    rendered: Mapping[str, Rendered]
    labels: Mapping[str, int]
    linker: Mapping[str, int]


def replacement_key(index: int) -> str:
    """The unit key of alternative ``index``'s replacement."""
    return f"{REPLACEMENT_KEY}{index}"


def lines_of(block: SourceBlock) -> tuple[SourceLine, ...]:
    """A case block's lines, each with its case file line."""
    first = block.location.line or 1
    return tuple(SourceLine(text, first + offset) for offset, text in
                 enumerate(block.text.split("\n")))


def column_base(block: SourceBlock) -> int:
    """The file column of a case block's first character."""
    return block.location.column or 1


def generated_lines(text: str) -> tuple[SourceLine, ...]:
    """Lines of generated code (no case file line)."""
    return tuple(SourceLine(line, 0) for line in text.split("\n"))


def expand_block(block: SourceBlock, file: str | None) -> ExpandedText:
    """Expand a case block's macros, with errors at the block's file columns."""
    try:
        return expand(block.text, block.location.line or 1, file)
    except BuildError as error:
        column = error.location.column
        if column is None:
            raise
        location = dataclasses.replace(error.location, column=column + column_base(block) - 1)
        raise BuildError(error.code, error.message, location=location, hint=error.hint) from None


def replacement_section(layout: ImageLayout) -> SectionKind:
    """Where replacements go: after the text (subsection) or their own section."""
    return "text" if layout.replacement_placement == "subsection" else "replacement"


def replacement_units(
    alternatives: Sequence[Alternative], section: SectionKind, file: str | None,
    column: int, prepare: Callable[[tuple[InlineItem, ...]], tuple[InlineItem, ...]],
) -> list[Unit]:
    """One unit per alternative with replacement code (``prepare`` shapes its lines)."""
    units = []
    for alt in alternatives:
        if alt.replacement is None:
            continue
        items: tuple[InlineItem, ...] = (
            (alt.replacement,) if isinstance(alt.replacement, NopFill) else alt.replacement
        )
        units.append(Unit(replacement_key(alt.index), section, 4, prepare(items), file, column))
    return units


def site_bounds(alt: Alternative, labels: Mapping[str, int]) -> tuple[int, int]:
    """(address, length) of ``alt``'s site, from its marker labels."""
    start = labels.get(alt.site_label, 0)
    return start, labels.get(alt.site_end_label, start) - start


def _render(unit: Unit, fill_sizes: Callable[[int], int]) -> Rendered:
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
    return Rendered("\n".join(lines), tuple(line_map))


def relocate_error(error: AltpatchError, unit: Unit, rendered: Rendered,
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


def _defined_labels(rendered: Rendered) -> dict[str, int]:
    """Named labels a unit defines -> rendered line (numeric labels stay local)."""
    found: dict[str, int] = {}
    for statement in parse_source(rendered.source):
        for label in statement.labels:
            if not label.name.isdigit():
                found.setdefault(label.name, statement.line)
    return found


def _place(units: Sequence[Unit], sizes: Mapping[str, int], layout: ImageLayout,
           table_size: int) -> Placed:
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
        address = align_up(cursor[unit.section], unit.align)
        bases[unit.key] = address
        cursor[unit.section] = address + sizes.get(unit.key, 0)
    if "replacement" not in section_base:
        section_base["replacement"] = cursor["replacement"] = _replacement_base(
            layout, cursor["text"])
    bounds: dict[SectionKind, tuple[int, int]] = {
        kind: (section_base[kind], cursor[kind]) for kind in section_base
    }
    bounds["alt-table"] = (layout.table_base, layout.table_base + table_size)
    return Placed(bases, bounds)


def _replacement_base(layout: ImageLayout, text_end: int) -> int:
    if layout.replacement_base is not None:
        return layout.replacement_base
    return align_up(max(text_end, layout.text_base + 1), PAGE_SIZE)


def _replacement_bounds(units: Sequence[Unit], placed: Placed, sizes: Mapping[str, int],
                        layout: ImageLayout) -> tuple[int, int]:
    """Where the replacements start and end (empty: at the end of text or the section)."""
    repl_keys = [u.key for u in units if u.key.startswith(REPLACEMENT_KEY)]
    if repl_keys:
        return placed.bases[repl_keys[0]], placed.bases[repl_keys[-1]] + sizes.get(
            repl_keys[-1], 0)
    if layout.replacement_placement == "subsection":
        return (placed.bounds["text"][1],) * 2
    return (placed.bounds["replacement"][0],) * 2


def _linker_symbols(placed: Placed, layout: ImageLayout, repl_bounds: tuple[int, int],
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


def _fill_sizer(unit_key: str, by_index: Mapping[int, Alternative], sizes: Mapping[str, int],
                labels: Mapping[str, int]) -> Callable[[int], int]:
    """How long a NOP fill in ``unit_key`` must be, from the last round's results."""

    def fill_size(index: int) -> int:
        if unit_key == "text":  # the site is NOPs: as long as the replacement
            return sizes.get(replacement_key(index), 0)
        return site_bounds(by_index[index], labels)[1]  # the replacement is NOPs

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


def assemble_units(units: Sequence[Unit], alts: Sequence[Alternative], layout: ImageLayout,
                   ncpus: int, table_size: int, externals: Iterable[str] = ()) -> Assembled:
    """Iterate layout and assembly until every size and label is stable.

    ``externals`` are names resolved elsewhere (a payload's base-image symbols): each
    unit sees them at its own base, a placeholder the payload's relocations replace.
    Raises :class:`BuildError` ``BUILD_LAYOUT`` if the layout does not settle, and the
    assembler's errors at the case file line.
    """
    with collector.paused():
        return _settle(units, alts, layout, ncpus, table_size, externals)


@dataclass
class _Owners:
    """Which unit defines each named label (filled once, from round one's source)."""

    owner: dict[str, str]
    owned: dict[str, set[str]]

    def claim(self, unit: Unit, rendered: Rendered, linker: Mapping[str, int],
              base: int, labels: dict[str, int]) -> None:
        """Record ``unit``'s labels, each at the unit's base until assembled."""
        try:
            defined = _defined_labels(rendered)
        except AltpatchError as error:
            raise relocate_error(error, unit, rendered, None) from None
        for name, line in defined.items():
            if name in self.owner or name in linker:
                source_line = rendered.line_map[line - 1]
                raise AsmError(
                    "ASM_DUPLICATE_LABEL",
                    f"label {name!r} is already defined"
                    + (f" (in {self.owner[name]})" if name in self.owner else
                       " (a linker symbol)"),
                    location=Location(
                        file=unit.file,
                        line=source_line.file_line if source_line else None,
                    ),
                )
            self.owner[name] = unit.key
            self.owned[unit.key].add(name)
            labels[name] = base


def _settle(units: Sequence[Unit], alts: Sequence[Alternative], layout: ImageLayout,
            ncpus: int, table_size: int, externals: Iterable[str]) -> Assembled:
    externals_table = SymbolTable(dict.fromkeys(externals, 0))  # names checked once
    by_index = {alt.index: alt for alt in alts}
    sizes: dict[str, int] = {}
    labels: dict[str, int] = {}
    owners = _Owners({}, {unit.key: set() for unit in units})
    first = True
    for _ in range(_MAX_ROUNDS):
        placed = _place(units, sizes, layout, table_size)
        linker = _linker_symbols(placed, layout, _replacement_bounds(units, placed, sizes,
                                                                     layout), ncpus)
        rendered = {
            unit.key: _render(unit, _fill_sizer(unit.key, by_index, sizes, labels))
            for unit in units
        }
        if first:
            # Labels are not known yet: give every label its unit's base for round one.
            for unit in units:
                owners.claim(unit, rendered[unit.key], linker, placed.bases[unit.key], labels)
            first = False
        results: dict[str, Assembly] = {}
        checked_linker = SymbolTable(linker)
        for unit in units:
            foreign = _UnitSymbols(unit.key, placed.bases[unit.key], labels, owners.owner,
                                   checked_linker, externals_table, owners.owned[unit.key])
            try:
                results[unit.key] = assemble(
                    rendered[unit.key].source, placed.bases[unit.key], foreign
                )
            except AltpatchError as error:
                raise relocate_error(error, unit, rendered[unit.key], None) from None
        new_sizes = {key: len(result.code) for key, result in results.items()}
        new_labels = {
            name: value for result in results.values() for name, value in result.labels.items()
        }
        if new_sizes == sizes and new_labels == labels:
            return Assembled(placed, results, rendered, labels, linker)
        sizes, labels = new_sizes, new_labels
    raise BuildError("BUILD_LAYOUT", f"layout did not settle after {_MAX_ROUNDS} rounds "
                     "(sizes depend on addresses in a cycle)")


def replacement_range(units: Sequence[Unit], assembled: Assembled) -> tuple[int, int]:
    """The settled ``[start, end)`` of the replacement units (empty: the linker's)."""
    sizes = {key: len(result.code) for key, result in assembled.results.items()}
    repl_keys = [u.key for u in units if u.key.startswith(REPLACEMENT_KEY)]
    if repl_keys:
        return assembled.placed.bases[repl_keys[0]], assembled.placed.bases[
            repl_keys[-1]] + sizes[repl_keys[-1]]
    start = assembled.linker[SYM_REPL_START]
    return start, start


def concat(units: Sequence[Unit], section: SectionKind, assembled: Assembled) -> bytes:
    """The bytes of ``section``: its units' code at their offsets, gaps zero-filled."""
    start = assembled.placed.bounds[section][0]
    blob = bytearray()
    for unit in units:
        if unit.section != section:
            continue
        offset = assembled.placed.bases[unit.key] - start
        blob += bytes(offset - len(blob))
        blob += assembled.results[unit.key].code
    return bytes(blob)


def source_map(units: Sequence[Unit], assembled: Assembled, file: str | None) -> SourceMap:
    """Every assembled instruction of the case's own units -> its case file line."""
    rows: list[SpanFields] = []
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
            rows.append((asm_line.address, asm_line.size, source_line.file_line,
                         asm_line.text))
    rows.sort(key=lambda row: row[0])
    return SourceMap(file, tuple(rows))


__all__ = [
    "REPLACEMENT_KEY",
    "Assembled",
    "Placed",
    "Rendered",
    "Unit",
    "assemble_units",
    "column_base",
    "concat",
    "expand_block",
    "generated_lines",
    "lines_of",
    "relocate_error",
    "replacement_key",
    "replacement_range",
    "replacement_section",
    "replacement_units",
    "site_bounds",
    "source_map",
]
