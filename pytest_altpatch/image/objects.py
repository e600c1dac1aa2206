"""Relocatable objects (ET_REL payloads) as frozen values, before and after loading.

A :class:`RelocatableObject` is what the builder makes from a case's payload and what
:func:`~pytest_altpatch.image.elf_writer.write_relocatable` writes: sections at no
address, symbols defined relative to their section (or undefined, to be resolved
against the base image), and RELA relocations.  A :class:`LoadedObject` is what
:func:`~pytest_altpatch.image.elf_loader.load_relocatable` returns: every allocated
section at its chosen address with its relocations already applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from pytest_altpatch.cases.model import CapNumbering
from pytest_altpatch.dialects import Dialect
from pytest_altpatch.image.alt_table import decode_alt_table
from pytest_altpatch.image.model import AltEntry, Perms, SectionKind

Binding = Literal["local", "global"]
SymbolType = Literal["notype", "func", "object", "section"]


@dataclass(frozen=True)
class ObjectSection:
    """A section of a relocatable object (content before relocation)."""

    name: str
    kind: SectionKind
    content: bytes
    align: int = 4


@dataclass(frozen=True)
class ObjectSymbol:
    """A symbol; ``section`` None means undefined (resolved at load time)."""

    name: str
    section: str | None
    value: int = 0
    binding: Binding = "global"
    sym_type: SymbolType = "notype"


@dataclass(frozen=True)
class ObjectRelocation:
    """``R_AARCH64_*`` relocation ``rtype`` at ``offset`` of ``section``.

    ``symbol`` names an :class:`ObjectSymbol`; a section symbol is named by its
    section's name (as GNU as refers to ``.text`` in ``.altinstructions`` entries).
    """

    section: str
    offset: int
    rtype: int
    symbol: str
    addend: int = 0


@dataclass(frozen=True)
class RelocatableObject:
    """A payload object ready to be written as ELF ET_REL."""

    name: str
    sections: tuple[ObjectSection, ...]
    symbols: tuple[ObjectSymbol, ...]
    relocations: tuple[ObjectRelocation, ...] = ()


@dataclass(frozen=True)
class LoadedSection:
    """An allocated section placed at ``va`` with relocations applied."""

    name: str
    va: int
    content: bytes
    perms: Perms
    align: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.va + len(self.content)


@dataclass(frozen=True)
class AppliedRelocation:
    """One relocation as the loader applied it (for reports and tests)."""

    section: str
    offset: int
    place: int
    rtype: str
    symbol: str
    value: int  # S + A (the symbol's resolved address plus the addend)


@dataclass(frozen=True)
class LoadedObject:
    """A relocatable object linked at chosen addresses."""

    sections: tuple[LoadedSection, ...]
    #: Every named symbol the object defines, at its final address.
    symbols: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    relocations: tuple[AppliedRelocation, ...] = ()

    def section(self, name: str) -> LoadedSection | None:
        """The loaded section called ``name``, or None."""
        for section in self.sections:
            if section.name == name:
                return section
        return None

    @property
    def alt_table(self) -> bytes:
        """The relocated ``.altinstructions`` bytes (empty if there are none)."""
        section = self.section(".altinstructions")
        return b"" if section is None else section.content

    @property
    def alt_table_range(self) -> tuple[int, int] | None:
        """``(start, end)`` of ``.altinstructions`` once loaded, or None."""
        section = self.section(".altinstructions")
        return None if section is None else (section.va, section.end)

    def alt_entries(
        self, dialect: Dialect, ncaps: int, numbering: CapNumbering | None = None
    ) -> tuple[AltEntry, ...]:
        """The decoded alternatives entries (ElfError ``ALT_TABLE_SIZE`` if truncated)."""
        table = self.section(".altinstructions")
        if table is None:
            return ()
        return decode_alt_table(table.content, table.va, dialect, ncaps, numbering=numbering)


__all__ = [
    "AppliedRelocation",
    "Binding",
    "LoadedObject",
    "LoadedSection",
    "ObjectRelocation",
    "ObjectSection",
    "ObjectSymbol",
    "RelocatableObject",
    "SymbolType",
]
