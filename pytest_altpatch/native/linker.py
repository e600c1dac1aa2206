"""Link a native patcher's objects at a chosen address, by our own relocation recipes.

Each ELF object goes through the payload loader (:func:`load_relocatable`), so a
native patcher is relocated exactly like a livepatch payload; assembly sources are
assembled by our assembler at their final address.  Linking takes two passes: the
first places every section (page-aligned, object after object) and collects the
global symbols; the second relocates with every symbol known.  Undefined symbols
resolve against the other objects, then the externals (runtime services, bindings);
whatever is left is one ``NATIVE_UNDEFINED_SYMBOL`` error naming every missing
symbol and the object that wants it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pytest_altpatch.a64 import assemble
from pytest_altpatch.a64.granule import align_up
from pytest_altpatch.errors import AltpatchError, Location, NativeError
from pytest_altpatch.image.elf_reader import (
    SymbolEntry,
    load_relocatable,
    packed_placement,
    relocatable_symbols,
)
from pytest_altpatch.image.model import Perms
from pytest_altpatch.native.manifest import ObjectFile

#: How many distinct undefined symbols an assembly source may use.
MAX_SOURCE_EXTERNALS: Final = 256


@dataclass(frozen=True)
class LinkedSection:
    """One allocated section of one object at its final address."""

    origin: str  # the object's file name
    name: str
    va: int
    content: bytes
    perms: Perms

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.va + len(self.content)


@dataclass(frozen=True)
class CodeSymbol:
    """A defined symbol, for naming PCs (``symbol+offset``)."""

    origin: str
    name: str
    va: int
    section: str
    is_function: bool


@dataclass(frozen=True)
class LinkedPatcher:
    """All objects linked: sections, global symbols, and every symbol for reports."""

    sections: tuple[LinkedSection, ...]
    symbols: Mapping[str, int]
    code_symbols: tuple[CodeSymbol, ...] = ()
    end: int = 0
    #: The section start of each (object, section name), for DWARF lookups.
    section_va: Mapping[tuple[str, str], int] = field(default_factory=dict)


def _page_end(address: int) -> int:
    return align_up(address)


def _source_text(obj: ObjectFile) -> str:
    try:
        return obj.data.decode("utf-8")
    except UnicodeDecodeError:
        raise NativeError("NATIVE_OBJECT", f"{obj.name}: assembly source is not UTF-8",
                          location=Location(file=str(obj.path))) from None


def _source_externals(obj: ObjectFile, base: int) -> tuple[tuple[str, ...], int]:
    """The undefined symbols an assembly source uses, and its size."""
    text = _source_text(obj)
    wanted: dict[str, int] = {}
    for _ in range(MAX_SOURCE_EXTERNALS):
        try:
            assembly = assemble(text, base=base, symbols=wanted)
            return tuple(wanted), len(assembly.code)
        except AltpatchError as exc:
            name = _undefined_name(exc)
            if name is None or name in wanted:
                raise NativeError("NATIVE_OBJECT", f"{obj.name}: {exc.message}",
                                  location=Location(file=str(obj.path),
                                                    line=exc.location.line,
                                                    column=exc.location.column)) from None
            wanted[name] = base
    raise NativeError("NATIVE_OBJECT", f"{obj.name}: more than {MAX_SOURCE_EXTERNALS} "
                      "undefined symbols", location=Location(file=str(obj.path)))


def _undefined_name(exc: AltpatchError) -> str | None:
    if exc.code != "ASM_UNDEFINED_SYMBOL" or "undefined symbol '" not in exc.message:
        return None
    return exc.message.split("undefined symbol '", 1)[1].split("'", 1)[0]


@dataclass
class _Placed:
    obj: ObjectFile
    base: int
    size: int
    undefined: tuple[str, ...]
    globals: dict[str, int]
    symbols: tuple[SymbolEntry, ...] = ()


def _place_elf(obj: ObjectFile, base: int) -> _Placed:
    where = Location(file=str(obj.path))
    try:
        symbols = relocatable_symbols(obj.data)
        probe = load_relocatable(obj.data, base_symbols={}, placement=packed_placement(base),
                                 undefined=base)
    except AltpatchError as exc:
        raise NativeError("NATIVE_OBJECT", f"{obj.name}: {exc.message}",
                          location=exc.location if exc.location != Location() else where,
                          hint=exc.hint) from None
    end = max((_page_end(s.va + max(len(s.content), 1)) for s in probe.sections),
              default=base)
    defined_globals = {s.name for s in symbols if s.defined and s.is_global}
    globals_ = {name: va for name, va in probe.symbols.items() if name in defined_globals}
    undefined = tuple(dict.fromkeys(s.name for s in symbols if not s.defined))
    return _Placed(obj, base, end - base, undefined, globals_, symbols)


def _place_source(obj: ObjectFile, base: int) -> _Placed:
    undefined, size = _source_externals(obj, base)
    labels = assemble(_source_text(obj), base=base,
                      symbols=dict.fromkeys(undefined, base)).labels
    return _Placed(obj, base, _page_end(base + max(size, 1)) - base, undefined,
                   {name: va for name, va in labels.items() if not name[:1].isdigit()})


def _select_members(objects: Sequence[ObjectFile], externals: Mapping[str, int],
                    roots: Sequence[str]) -> list[ObjectFile]:
    """The plain objects, plus each archive member that defines a symbol still needed
    (repeated until nothing changes), in their manifest order."""
    chosen = [o for o in objects if o.archive is None]
    members = [o for o in objects if o.archive is not None]
    if not members:
        return chosen

    def table(obj: ObjectFile) -> tuple[SymbolEntry, ...]:
        if obj.is_source:
            return ()
        try:
            return relocatable_symbols(obj.data)
        except AltpatchError as exc:
            raise NativeError("NATIVE_OBJECT", f"{obj.name}: {exc.message}",
                              location=Location(file=str(obj.path))) from None

    tables = {id(o): table(o) for o in objects}
    while True:
        defined = set(externals) | {s.name for o in chosen for s in tables[id(o)]
                                    if s.defined and s.is_global}
        wanted = ({s.name for o in chosen for s in tables[id(o)] if not s.defined}
                  | set(roots)) - defined
        extra = [m for m in members if m not in chosen and any(
            s.defined and s.is_global and s.name in wanted for s in tables[id(m)])]
        if not extra:
            return [o for o in objects if o in chosen or o in extra]
        chosen += extra


def link_patcher(objects: Sequence[ObjectFile], *, base: int,
                 externals: Mapping[str, int], roots: Sequence[str] = (),
                 aliases: Mapping[str, str] | None = None) -> LinkedPatcher:
    """Link ``objects`` one after another from ``base`` (page aligned); archive members
    only when they define a symbol something (or a ``roots`` entry symbol) needs."""
    objects = _select_members(objects, externals, roots)
    placed: list[_Placed] = []
    cursor = base
    for obj in objects:
        chosen = _place_source(obj, cursor) if obj.is_source else _place_elf(obj, cursor)
        placed.append(chosen)
        cursor += chosen.size
    defined: dict[str, int] = dict(externals)
    owners: dict[str, str] = {}
    for item in placed:
        for name, va in item.globals.items():
            if name in owners:
                raise NativeError("NATIVE_OBJECT", f"{name} is defined by both "
                                  f"{owners[name]} and {item.obj.name}",
                                  location=Location(file=str(item.obj.path), symbol=name))
            owners[name] = item.obj.name
            defined.setdefault(name, va)
    for alias, target in (aliases or {}).items():
        if target in defined and alias not in defined:
            defined[alias] = defined[target]
    missing = [(item.obj.name, [n for n in item.undefined if n not in defined])
               for item in placed]
    missing = [(name, names) for name, names in missing if names]
    if missing:
        listing = "; ".join(f"{name} wants {', '.join(names)}" for name, names in missing)
        raise NativeError("NATIVE_UNDEFINED_SYMBOL", f"undefined symbols: {listing}",
                          location=Location(file=str(placed[0].obj.path.parent)),
                          hint="bind them in the manifest (bindings:) or define them")
    sections: list[LinkedSection] = []
    code_symbols: list[CodeSymbol] = []
    section_va: dict[tuple[str, str], int] = {}
    for item in placed:
        sections += _relocate(item, defined, code_symbols, section_va)
    return LinkedPatcher(tuple(sections), dict(sorted(defined.items())),
                         tuple(sorted(code_symbols, key=lambda s: (s.va, s.name))), cursor,
                         section_va)


def _relocate(item: _Placed, defined: Mapping[str, int], code_symbols: list[CodeSymbol],
              section_va: dict[tuple[str, str], int]) -> list[LinkedSection]:
    obj = item.obj
    if obj.is_source:
        assembly = assemble(_source_text(obj), base=item.base, symbols=defined)
        section_va[(obj.name, ".text")] = item.base
        code_symbols.extend(CodeSymbol(obj.name, name, va, ".text", True)
                            for name, va in assembly.labels.items() if not name[:1].isdigit())
        return [LinkedSection(obj.name, ".text", item.base, assembly.code, "r-x")]
    placement: Callable[[str, int, int], int] = packed_placement(item.base)
    try:
        loaded = load_relocatable(obj.data, base_symbols=defined, placement=placement)
    except AltpatchError as exc:
        raise NativeError("NATIVE_OBJECT", f"{obj.name}: {exc.message}",
                          location=exc.location, hint=exc.hint) from None
    for section in loaded.sections:
        section_va[(obj.name, section.name)] = section.va
    for symbol in item.symbols:
        # $x/$d are AArch64 mapping symbols (code/data markers), not names.
        if symbol.defined and symbol.section is not None and not symbol.name.startswith("$"):
            start = section_va.get((obj.name, symbol.section))
            if start is not None:
                code_symbols.append(CodeSymbol(obj.name, symbol.name, start + symbol.value,
                                               symbol.section, symbol.is_function))
    return [LinkedSection(obj.name, s.name, s.va, s.content, s.perms)
            for s in loaded.sections]


__all__ = ["CodeSymbol", "LinkedPatcher", "LinkedSection", "link_patcher"]
