"""Source text to statements: comments, ``;`` separators, labels, mnemonic, operands.

Columns are kept exact (1-based, in the original line) so every later error can point
at the operand that caused it.  Comments are ``//`` to end of line, ``/* ... */``
(possibly spanning lines) and ``#`` as the first non-blank character of a line;
elsewhere ``#`` introduces an immediate, as in A64 syntax.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from pytest_altpatch.errors import AsmError, Location

_LABEL: Final = re.compile(r"\s*([A-Za-z_.$][\w.$]*|[0-9]+)\s*:(?!:)")
_MNEMONIC: Final = re.compile(r"\s*([A-Za-z_.][\w.]*)")
_CLOSERS: Final = {"[": "]", "{": "}", "(": ")"}
#: Longest statement we look at; anything longer is refused before any parsing.
MAX_STATEMENT: Final = 512


@dataclass(frozen=True)
class Operand:
    """One comma-separated operand: stripped text and 1-based column of its start."""

    text: str
    column: int


@dataclass(frozen=True)
class Label:
    """A label definition (``name:`` or numeric ``1:``) at a column."""

    name: str
    column: int


@dataclass(frozen=True)
class Statement:
    """One statement of a source line: labels, then an optional mnemonic and operands."""

    line: int
    column: int
    labels: tuple[Label, ...]
    mnemonic: str | None
    mnemonic_column: int
    operands: tuple[Operand, ...]
    operand_text: str
    operand_column: int

    def location(self, column: int | None = None) -> Location:
        """Location of this statement, or of ``column`` within its line."""
        return Location(line=self.line, column=column if column is not None else self.column)


def strip_comments(source: str) -> list[str]:
    """The source's lines with every comment character replaced by a space."""
    lines: list[str] = []
    in_block = False
    for raw in source.split("\n"):
        if not in_block and "/" not in raw:  # (most lines: nothing to strip but a #-line)
            text = raw.rstrip("\r")
            lines.append(" " * len(text) if raw.lstrip().startswith("#") else text)
            continue
        chars = list(raw.rstrip("\r"))
        pos = 0
        if not in_block and raw.lstrip().startswith("#"):
            lines.append(" " * len(chars))
            continue
        while pos < len(chars):
            if in_block:
                if chars[pos] == "*" and pos + 1 < len(chars) and chars[pos + 1] == "/":
                    chars[pos] = chars[pos + 1] = " "
                    in_block = False
                    pos += 2
                    continue
                chars[pos] = " "
                pos += 1
                continue
            if chars[pos] == "/" and pos + 1 < len(chars) and chars[pos + 1] in "/*":
                if chars[pos + 1] == "/":
                    chars[pos:] = [" "] * (len(chars) - pos)
                    break
                chars[pos] = chars[pos + 1] = " "
                in_block = True
                pos += 2
                continue
            pos += 1
        lines.append("".join(chars))
    return lines


def split_operands(text: str, column: int, line: int) -> tuple[Operand, ...]:
    """Split at top-level commas (not inside ``[]``, ``{}`` or ``()``)."""
    if not text.strip():
        return ()
    operands: list[Operand] = []
    stack: list[str] = []
    start = 0

    def push(end: int) -> None:
        piece = text[start:end]
        stripped = piece.strip()
        offset = start + len(piece) - len(piece.lstrip())
        if not stripped:
            raise AsmError("ASM_SYNTAX", "empty operand",
                           location=Location(line=line, column=column + offset))
        operands.append(Operand(stripped, column + offset))

    for pos, char in enumerate(text):
        if char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in "]})":
            if not stack or stack.pop() != char:
                raise AsmError("ASM_SYNTAX", f"unbalanced {char!r}",
                               location=Location(line=line, column=column + pos))
        elif char == "," and not stack:
            push(pos)
            start = pos + 1
    if stack:
        raise AsmError("ASM_SYNTAX", f"missing {stack[-1]!r}",
                       location=Location(line=line, column=column + len(text.rstrip())))
    push(len(text))
    return tuple(operands)


def parse_statement(text: str, line: int, column: int) -> Statement | None:
    """Parse one ``;``-separated piece starting at 1-based ``column``; None if blank."""
    if not text.strip():
        return None
    if len(text) > MAX_STATEMENT:
        raise AsmError("ASM_SYNTAX", f"statement longer than {MAX_STATEMENT} characters",
                       location=Location(line=line, column=column))
    if not text.isascii() or not text.replace("\t", " ").isprintable():
        bad = next(i for i, c in enumerate(text)
                   if not c.isascii() or (not c.isprintable() and c != "\t"))
        raise AsmError("ASM_SYNTAX", f"unexpected character {text[bad]!r}",
                       location=Location(line=line, column=column + bad))
    labels: list[Label] = []
    pos = 0
    while True:
        match = _LABEL.match(text, pos)
        if match is None:
            break
        labels.append(Label(match.group(1), column + match.start(1)))
        pos = match.end()
    rest = text[pos:]
    if not rest.strip():
        return Statement(line, column, tuple(labels), None, column + pos, (), "", column + pos)
    match = _MNEMONIC.match(text, pos)
    if match is None:
        first = pos + len(rest) - len(rest.lstrip())
        raise AsmError("ASM_SYNTAX", f"mnemonic expected, found {text[first]!r}",
                       location=Location(line=line, column=column + first))
    after = match.end()
    if after < len(text) and not text[after].isspace():
        raise AsmError("ASM_SYNTAX", f"unexpected {text[after]!r} after mnemonic",
                       location=Location(line=line, column=column + after))
    operand_text = text[after:]
    operands = split_operands(operand_text, column + after, line)
    return Statement(
        line, column, tuple(labels), match.group(1).lower(), column + match.start(1),
        operands, operand_text.strip(), column + after,
    )


class _ParseMemo:
    """Parsed sources, newest last, bounded by their total length.

    The builder lists a unit's labels and then assembles it once per layout round, so
    a large text would otherwise be parsed three or four times.
    """

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self.entries: OrderedDict[str, tuple[Statement, ...]] = OrderedDict()

    def get(self, source: str) -> tuple[Statement, ...] | None:
        found = self.entries.get(source)
        if found is not None:
            self.entries.move_to_end(source)
        return found

    def put(self, source: str, statements: tuple[Statement, ...]) -> None:
        self.entries[source] = statements
        self.chars += len(source)
        while self.chars > self.max_chars and len(self.entries) > 1:
            dropped, _ = self.entries.popitem(last=False)
            self.chars -= len(dropped)


_PARSED: Final = _ParseMemo(16 << 20)


def parse_source(source: str) -> list[Statement]:
    """Every statement of ``source``, in order (memoised by source text)."""
    cached = _PARSED.get(source)
    if cached is not None:
        return list(cached)
    statements = _parse(source)
    _PARSED.put(source, tuple(statements))
    return statements


def _parse(source: str) -> list[Statement]:
    statements: list[Statement] = []
    for number, text in enumerate(strip_comments(source), start=1):
        start = 0
        for piece in text.split(";"):
            statement = parse_statement(piece, number, start + 1)
            if statement is not None:
                statements.append(statement)
            start += len(piece) + 1
    return statements


__all__ = [
    "MAX_STATEMENT",
    "Label",
    "Operand",
    "Statement",
    "parse_source",
    "parse_statement",
    "split_operands",
    "strip_comments",
]
