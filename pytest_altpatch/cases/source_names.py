"""The names a case's assembly source defines and uses, read from its text.

Labels (``name:``) and ``.set``/``.equ`` symbols are what a case's tables and probes
may refer to; the kernel macros' capability and callback arguments are checked against
the catalog at load time, so a typo is a located lint error rather than a build
failure later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from pytest_altpatch.cases.model import SourceBlock
from pytest_altpatch.errors import Location

_LABEL_DEF = re.compile(r"^\s*([A-Za-z_.$][A-Za-z0-9_.$]*)\s*:(?!:)")
_SET_DEF = re.compile(r"^\s*\.(?:set|equ)\s+([A-Za-z_.$][A-Za-z0-9_.$]*)\s*,")
_STRING = r'"(?:[^"\\\n]|\\.)*"'
_IDENT = r"([A-Za-z_][A-Za-z0-9_]*)"
#: What a name a kernel macro takes is: a capability or a callback.
NameKind = Literal["cap", "callback"]
#: Capability and callback arguments of the kernel macros: (pattern, what each group is).
_MACRO_USES: Final[tuple[tuple[re.Pattern[str], tuple[NameKind, ...]], ...]] = (
    (re.compile(rf"\bALTERNATIVE\s*\(\s*{_STRING}\s*,\s*{_STRING}\s*,\s*{_IDENT}\s*\)"),
     ("cap",)),
    (re.compile(rf"\bALTERNATIVE_CB\s*\(\s*{_STRING}\s*,\s*{_IDENT}\s*,\s*{_IDENT}\s*\)"),
     ("cap", "callback")),
    (re.compile(rf"^\s*alternative_if(?:_not)?\s+{_IDENT}"), ("cap",)),
    (re.compile(rf"^\s*alternative_cb\s+{_IDENT}\s*,\s*{_IDENT}"), ("cap", "callback")),
)


@dataclass(frozen=True)
class MacroUse:
    """One capability or callback name a kernel macro in the source names."""

    kind: NameKind
    name: str
    location: Location  # of the name's first character


def _lines_of(block: SourceBlock) -> Iterator[tuple[int, str, Location]]:
    """Each text line with the file location of its first character."""
    base = block.location
    for index, line in enumerate(block.text.splitlines()):
        yield index, line, Location(
            file=base.file,
            line=(base.line or 1) + index,
            column=base.column,
            json_path=base.json_path,
        )


def defined_labels(block: SourceBlock | None) -> set[str]:
    """Labels (``name:``) and ``.set``/``.equ`` symbols a source block defines."""
    names: set[str] = set()
    if block is None:
        return names
    for _, line, _ in _lines_of(block):
        rest = line.split("//")[0]
        while True:
            found = _LABEL_DEF.match(rest)
            if found is None:
                break
            names.add(found.group(1))
            rest = rest[found.end():]
        found_set = _SET_DEF.match(line)
        if found_set:
            names.add(found_set.group(1))
    return names


def macro_uses(block: SourceBlock | None) -> Iterator[MacroUse]:
    """Every capability and callback name the block's kernel macros use, in order."""
    if block is None:
        return
    for _, line, where in _lines_of(block):
        code_part = line.split("//")[0]
        for pattern, kinds in _MACRO_USES:
            for found in pattern.finditer(code_part):
                for group, kind in enumerate(kinds, start=1):
                    column = (where.column or 1) + found.start(group)
                    yield MacroUse(kind, found.group(group),
                                   Location(file=where.file, line=where.line, column=column,
                                            json_path=where.json_path))


__all__ = ["MacroUse", "NameKind", "defined_labels", "macro_uses"]
