"""Name a PC in native patcher code: ``object:symbol+offset`` and, with DWARF, file:line.

Line tables come from the object's own ``.debug_line`` (pyelftools, with its debug
relocations applied, so addresses are offsets in the object's ``.text``).  Objects
built without ``-g`` are simply named by symbol.
"""

from __future__ import annotations

import bisect
import functools
import io
from collections.abc import Sequence
from pathlib import PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pytest_altpatch.native.linker import CodeSymbol, LinkedPatcher
from pytest_altpatch.native.manifest import ObjectFile

LineTable = tuple[tuple[int, str, int], ...]  # (offset in .text, file, line), sorted


@functools.lru_cache(maxsize=32)
def line_table(data: bytes) -> LineTable:
    """(offset, file, line) rows of an ET_REL object's ``.text`` (empty without DWARF;
    parsed once per object content)."""
    rows: list[tuple[int, str, int]] = []
    try:
        elf = ELFFile(io.BytesIO(data))
        if not elf.has_dwarf_info():
            return ()
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=True)
        for unit in dwarf.iter_CUs():
            program = dwarf.line_program_for_CU(unit)
            if program is None:
                continue
            header = program.header
            names = [entry.name.decode("utf-8", "replace") for entry in header.file_entry]
            version = int(header.version)
            for entry in program.get_entries():
                state = entry.state
                if state is None or state.end_sequence:
                    continue
                index = state.file if version >= 5 else state.file - 1
                name = names[index] if 0 <= index < len(names) else "?"
                rows.append((int(state.address), PurePosixPath(name).name, int(state.line)))
    except (ELFError, Exception):  # debug info is optional: a bad one only loses lines
        return ()
    return tuple(sorted(rows))


class Locator:
    """Describes PCs inside one installation's code."""

    def __init__(self, objects: Sequence[ObjectFile], linked: LinkedPatcher,
                 symbols: Sequence[CodeSymbol], window: tuple[int, int]) -> None:
        self._symbols = sorted(symbols, key=lambda s: (s.va, not s.is_function, s.name))
        self._starts = [s.va for s in self._symbols]
        self._window = window
        self._linked = linked
        self._objects = {o.name: o for o in objects if not o.is_source}
        self._lines: dict[str, LineTable] = {}

    def describe(self, pc: int) -> str | None:
        """``object:symbol+0xN (file:line)`` for a PC in this code, else None."""
        low, high = self._window
        if not low <= pc < high:
            return None
        index = bisect.bisect_right(self._starts, pc) - 1
        section = next((s for s in self._linked.sections if s.va <= pc < s.end), None)
        if index < 0:
            return None
        symbol = self._symbols[index]
        # Prefer a function symbol at the same address over a local label.
        text = f"{symbol.origin}:{symbol.name}+{pc - symbol.va:#x}"
        line = self._line(symbol.origin, pc, section.va if section else None)
        return f"{text} ({line})" if line else text

    def _line(self, origin: str, pc: int, section_va: int | None) -> str | None:
        obj = self._objects.get(origin)
        text_va = self._linked.section_va.get((origin, ".text"))
        if obj is None or text_va is None or section_va != text_va:
            return None
        if origin not in self._lines:
            self._lines[origin] = line_table(obj.data)
        rows = self._lines[origin]
        position = bisect.bisect_right(rows, (pc - text_va, "\uffff", 1 << 30)) - 1
        if position < 0:
            return None
        _, file, line = rows[position]
        return f"{file}:{line}"


__all__ = ["LineTable", "Locator", "line_table"]
