"""Frozen values of the image layer: sections, alternatives entries, images, layouts.

An :class:`Image` is everything a patcher and the machine need to know about one
built (or read) kernel image: where each section lives and what it holds, the
symbols, the decoded ``.altinstructions`` entries, and where the harness, stacks and
data are.  Nothing here does I/O; :mod:`builder` makes images, :mod:`elf_writer` and
:mod:`elf_reader` move them to and from ELF files.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from pytest_altpatch.cases.model import CapNumbering
from pytest_altpatch.dialects import Dialect, ReplacementPlacement

Perms = Literal["r-x", "r--", "rw-"]
SectionKind = Literal["text", "replacement", "alt-table", "rodata", "data", "stack", "harness"]

#: Every address the image builder hands out stays below this (the machine maps VAs
#: below 2**47; keeping a margin leaves room for aliases above the image).
ADDRESS_LIMIT: Final = 1 << 40

#: Section names the builder uses, per kind (the names real kernels use where they exist).
SECTION_NAMES: Final[Mapping[SectionKind, str]] = MappingProxyType({
    "text": ".text",
    "replacement": ".altinstr_replacement",
    "alt-table": ".altinstructions",
    "rodata": ".rodata",
    "data": ".data",
    "stack": ".altpatch.stacks",
    "harness": ".altpatch.harness",
})

#: Permissions of each kind of section, as the machine maps them.
SECTION_PERMS: Final[Mapping[SectionKind, Perms]] = MappingProxyType({
    "text": "r-x",
    "replacement": "r-x",
    "alt-table": "r--",
    "rodata": "r--",
    "data": "rw-",
    "stack": "rw-",
    "harness": "r-x",
})

#: Linker-style symbols every built image defines.
SYM_ALT_START: Final = "__alt_instructions"
SYM_ALT_END: Final = "__alt_instructions_end"
SYM_TEXT_START: Final = "_stext"
#: Linux's name for the image start; cases may use it (the spec's harness symbols).
SYM_TEXT: Final = "_text"
SYM_TEXT_END: Final = "_etext"
SYM_REPL_START: Final = "__altinstr_replacement"
SYM_REPL_END: Final = "__altinstr_replacement_end"
SYM_DATA_START: Final = "_sdata"
SYM_DATA_END: Final = "_edata"
SYM_STACKS_START: Final = "__altpatch_stacks"
SYM_STACKS_END: Final = "__altpatch_stacks_end"
SYM_HARNESS_START: Final = "__altpatch_harness"
SYM_HARNESS_END: Final = "__altpatch_harness_end"


@dataclass(frozen=True)
class Section:
    """One loaded section: ``content`` sits at virtual address ``va``."""

    name: str
    va: int
    content: bytes
    perms: Perms
    kind: SectionKind

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.va + len(self.content)

    def contains(self, address: int, size: int = 1) -> bool:
        """Whether ``[address, address + size)`` lies inside this section."""
        return self.va <= address and address + size <= self.end


@dataclass(frozen=True)
class AltEntry:
    """One decoded ``.altinstructions`` entry (12 bytes at ``entry_address``).

    ``target`` is the replacement code, or the callback function when
    ``is_callback``.  ``cap`` is the capability number with the dialect's callback
    marking removed; ``cap_field`` is the raw u16 as stored.
    """

    index: int
    entry_address: int
    site: int
    target: int
    cap_field: int
    cap: int
    cap_name: str | None
    is_callback: bool
    site_len: int
    repl_len: int

    @property
    def replacement(self) -> int | None:
        """The replacement address, or None for callback entries."""
        return None if self.is_callback else self.target

    @property
    def callback(self) -> int | None:
        """The callback function address, or None for replacement entries."""
        return self.target if self.is_callback else None


@dataclass(frozen=True)
class SourceSpan:
    """``size`` bytes at ``address`` came from case file line ``line`` (``text``)."""

    address: int
    size: int
    line: int
    text: str


#: One span's fields: address, size, case file line, text.
SpanFields = tuple[int, int, int, str]


@dataclass(frozen=True)
class SourceMap:
    """Address -> case file line, for reports (sorted, non-overlapping spans).

    The spans are kept as their fields, each made into a :class:`SourceSpan` when it is
    asked for: an image crosses processes and is kept between runs with a span per
    instruction, of which a report reads a few (as objects they were most of the cost
    of reading an image back)."""

    file: str | None = None
    rows: tuple[SpanFields, ...] = ()

    @property
    def spans(self) -> tuple[SourceSpan, ...]:
        """Every span, in address order."""
        return tuple(SourceSpan(*row) for row in self.rows)

    def span_at(self, address: int) -> SourceSpan | None:
        """The span holding ``address``, or None."""
        index = bisect.bisect_right(self.rows, address, key=lambda row: row[0]) - 1
        if index < 0:
            return None
        span = SourceSpan(*self.rows[index])
        return span if span.address <= address < span.address + max(span.size, 1) else None

    def line_at(self, address: int) -> int | None:
        """The case file line of the code at ``address``, or None."""
        span = self.span_at(address)
        return None if span is None else span.line


@dataclass(frozen=True)
class ImageLayout:
    """Where the builder puts each part of an image; every base is page-aligned.

    ``replacement_base`` is used only with the ``section`` placement (a separate
    ``.altinstr_replacement``; None: the first page after text, as Xen's linker script
    puts it); with ``subsection`` replacements follow the text of their own section,
    as Linux >= 5.8 places them.
    """

    text_base: int
    replacement_base: int | None
    table_base: int
    rodata_base: int
    data_base: int
    stack_base: int
    harness_base: int
    replacement_placement: ReplacementPlacement
    stack_size: int = 16 * 1024


@dataclass(frozen=True)
class StackRegion:
    """One CPU's stack: ``[base, top)``; the stack pointer starts at ``top``."""

    cpu: int
    base: int
    top: int


@dataclass(frozen=True)
class Image:
    """A built kernel image: sections, symbols, alternatives, and where things are."""

    dialect: Dialect
    numbering: CapNumbering
    layout: ImageLayout
    sections: tuple[Section, ...]
    symbols: Mapping[str, int]
    alt_entries: tuple[AltEntry, ...]
    alt_table_start: int
    alt_table_end: int
    text_start: int
    text_end: int
    #: Bounds of the replacement code (a separate section, or the text's subsection).
    replacement_start: int
    replacement_end: int
    stacks: tuple[StackRegion, ...]
    harness_start: int
    harness_end: int
    data_start: int
    data_end: int
    #: Registered callback name -> address of its guest implementation in text.
    callbacks: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    source_map: SourceMap = field(default_factory=SourceMap)

    def section(self, name: str) -> Section | None:
        """The section called ``name``, or None."""
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def section_at(self, address: int) -> Section | None:
        """The section holding ``address``, or None."""
        for section in self.sections:
            if section.contains(address):
                return section
        return None

    def read(self, address: int, size: int) -> bytes:
        """``size`` bytes at ``address`` from one section (KeyError if not mapped)."""
        for section in self.sections:
            if section.contains(address, size):
                offset = address - section.va
                return section.content[offset:offset + size]
        raise KeyError(f"{size} bytes at {address:#x} are not inside one section")

    def symbolize(self, address: int) -> str:
        """``symbol+offset`` for ``address`` (nearest symbol at or below it), or hex."""
        return symbolize(self.symbols, address)


def symbolize(symbols: Mapping[str, int], address: int) -> str:
    """Name ``address`` as ``symbol+0xN`` using the nearest symbol at or below it."""
    best: tuple[int, str] | None = None
    for name, value in symbols.items():
        if value <= address and (best is None or (value, name) > best):
            # Prefer the closest symbol; ties go to the alphabetically last (stable).
            best = (value, name)
    if best is None:
        return f"{address:#x}"
    value, name = best
    return name if value == address else f"{name}+{address - value:#x}"


__all__ = [
    "ADDRESS_LIMIT",
    "SECTION_NAMES",
    "SECTION_PERMS",
    "SYM_ALT_END",
    "SYM_ALT_START",
    "SYM_DATA_END",
    "SYM_DATA_START",
    "SYM_HARNESS_END",
    "SYM_HARNESS_START",
    "SYM_REPL_END",
    "SYM_REPL_START",
    "SYM_STACKS_END",
    "SYM_STACKS_START",
    "SYM_TEXT",
    "SYM_TEXT_END",
    "SYM_TEXT_START",
    "AltEntry",
    "Image",
    "ImageLayout",
    "Perms",
    "Section",
    "SectionKind",
    "SourceMap",
    "SourceSpan",
    "SpanFields",
    "StackRegion",
    "symbolize",
]
