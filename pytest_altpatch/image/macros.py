"""Expand the kernel's alternative macros in case text into in-line and out-of-line code.

Forms (the syntax corpus/INTERPRETING.md documents):

* ``ALTERNATIVE("old", "new", CAP)`` and ``ALTERNATIVE_CB("old", CAP, callback)`` on
  one line (optionally after labels); instructions inside a string are separated by
  ``;`` or ``\\n``; adjacent strings concatenate as in C.
* blocks on their own lines: ``alternative_if CAP`` / ``alternative_if_not CAP``, then
  ``alternative_else`` ... ``alternative_endif`` or ``alternative_else_nop_endif``;
  ``alternative_cb CAP, callback`` (or ``alternative_cb callback``) ...
  ``alternative_cb_end``.

Placement follows the kernel's assembler macros: with ``alternative_if`` the block
under it is the *replacement* (out of line) and the ``alternative_else`` block is the
in-line default; with ``alternative_if_not`` its own block stays in line and the else
block is the replacement.  ``alternative_else_nop_endif`` makes the else block NOPs
as long as the first block.  Callback forms have no replacement code.

The result is pure data: the in-line text (with marker labels around every site) and
one :class:`Alternative` per macro, each line carrying the case file line it came from
so assembler errors can be reported there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from pytest_altpatch.a64.syntax import strip_comments
from pytest_altpatch.errors import BuildError, Location

#: Prefix of the marker labels the expansion inserts; case labels may not use it.
MARKER_PREFIX: Final = "__altpatch_"

_LABELS: Final = re.compile(r"\s*(?:(?:[A-Za-z_.$][\w.$]*|[0-9]+)\s*:(?!:)\s*)*")
_CALL: Final = re.compile(r"\b(ALTERNATIVE_CB|ALTERNATIVE)\s*\(")
_DIRECTIVE: Final = re.compile(
    r"\s*(alternative_if_not|alternative_if|alternative_else_nop_endif|alternative_else"
    r"|alternative_endif|alternative_cb_end|alternative_cb)\b(.*)$"
)
_NAME: Final = re.compile(r"[A-Za-z_][\w]*$|[0-9]+$|0[xX][0-9a-fA-F]+$")
_ESCAPES: Final = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}

Form = Literal["ALTERNATIVE", "ALTERNATIVE_CB", "if", "if_not", "cb"]


@dataclass(frozen=True)
class SourceLine:
    """One line to assemble, with the case file line (and column offset) it came from."""

    text: str
    file_line: int
    column: int = 0  # 0: keep the assembler's column; else the macro string's (1-based)


@dataclass(frozen=True)
class NopFill:
    """NOPs as long as the other half of alternative ``index`` (else_nop_endif)."""

    index: int


InlineItem = SourceLine | NopFill


@dataclass(frozen=True)
class Alternative:
    """One alternative as written: where its site is and what replaces it."""

    index: int
    form: Form
    cap: str | int | None  # a name, a raw number, or None (callback without a cap)
    callback: str | None
    #: Replacement code; None for callbacks; a NopFill for else_nop_endif with if_not.
    replacement: tuple[SourceLine, ...] | NopFill | None
    location: Location  # the opening macro (file, line, column)
    end_line: int

    @property
    def site_label(self) -> str:
        """Marker label at the first byte of the site."""
        return f"{MARKER_PREFIX}site_{self.index}"

    @property
    def site_end_label(self) -> str:
        """Marker label one past the last byte of the site."""
        return f"{MARKER_PREFIX}site_{self.index}_end"


@dataclass(frozen=True)
class ExpandedText:
    """The in-line text (sites bracketed by marker labels) and the alternatives."""

    inline: tuple[InlineItem, ...]
    alternatives: tuple[Alternative, ...]


def _error(code: str, message: str, file: str | None, line: int, column: int = 1
           ) -> BuildError:
    return BuildError(code, message, location=Location(file=file, line=line, column=column))


def _read_string(text: str, pos: int, file: str | None, line: int) -> tuple[str, int]:
    """The C string whose body starts at ``pos`` (escapes decoded), and the index after it."""
    content = ""
    while True:
        if pos >= len(text):
            raise _error("BUILD_MACRO", "unterminated string", file, line, pos)
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            content += _ESCAPES.get(text[pos + 1], "\\" + text[pos + 1])
            pos += 2
            continue
        if char == '"':
            return content, pos + 1
        content += char
        pos += 1


def _parse_call_args(text: str, start: int, file: str | None, line: int
                     ) -> tuple[list[tuple[str, int, bool]], int]:
    """Arguments after ``NAME(`` at ``start``: (value, 0-based column, was_string), end."""
    args: list[tuple[str, int, bool]] = []
    pos = start
    current = ""
    current_col = -1
    quoted = False
    while True:
        if pos >= len(text):
            raise _error("BUILD_MACRO", "unterminated macro call (missing ')')", file, line,
                         start)
        char = text[pos]
        if char == '"':
            quoted = True
            if current_col < 0:
                current_col = pos + 1
            content, pos = _read_string(text, pos + 1, file, line)
            current += content
            continue
        if char in ",)":
            value = current if quoted else current.strip()
            args.append((value, max(current_col, start), quoted))
            current, current_col, quoted = "", -1, False
            pos += 1
            if char == ")":
                return args, pos
            continue
        if not char.isspace():
            if quoted:
                raise _error("BUILD_MACRO", f"unexpected {char!r} after a string", file,
                             line, pos + 1)
            if current_col < 0:
                current_col = pos
        current += char
        pos += 1


def _instructions(text: str, file_line: int, column: int) -> tuple[SourceLine, ...]:
    """A macro string's instructions, one per line, all reported at the macro's line."""
    pieces = [p for chunk in text.split("\n") for p in chunk.split(";")]
    return tuple(SourceLine(p.strip(), file_line, column) for p in pieces if p.strip())


def _cap_value(text: str, file: str | None, line: int, column: int) -> str | int:
    text = text.strip()
    if not _NAME.match(text):
        raise _error("BUILD_MACRO", f"{text!r} is not a capability name or number", file,
                     line, column)
    if text[0].isdigit():
        return int(text, 0)
    return text


def _callback_name(text: str, file: str | None, line: int, column: int) -> str:
    text = text.strip()
    if not re.fullmatch(r"[A-Za-z_]\w*", text):
        raise _error("BUILD_MACRO", f"{text!r} is not a callback name", file, line, column)
    return text


@dataclass
class _Block:
    """An open block macro while its lines are being collected."""

    form: Form
    cap: str | int | None
    callback: str | None
    line: int
    column: int
    first: list[SourceLine]
    second: list[SourceLine] | None = None


@dataclass
class _Expansion:
    """What :func:`expand` has collected so far (private to one call)."""

    file: str | None
    inline: list[InlineItem] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    block: _Block | None = None

    def add(self, alternative: Alternative, site_body: list[InlineItem], line: int) -> None:
        """Record ``alternative`` and put its site, between marker labels, in line."""
        self.alternatives.append(alternative)
        index = alternative.index
        self.inline.append(SourceLine(f"{MARKER_PREFIX}site_{index}:", line))
        self.inline.extend(site_body)
        self.inline.append(SourceLine(f"{MARKER_PREFIX}site_{index}_end:", line))

    def append(self, source_line: SourceLine) -> None:
        """A plain line: in line, or into the open block's current half."""
        if self.block is None:
            self.inline.append(source_line)
        elif self.block.second is None:
            self.block.first.append(source_line)
        else:
            self.block.second.append(source_line)

    def error(self, message: str, line: int, column: int = 1) -> BuildError:
        """A ``BUILD_MACRO`` error at ``line:column`` of the case file."""
        return _error("BUILD_MACRO", message, self.file, line, column)


@dataclass(frozen=True)
class _At:
    """One directive line: its name, its argument text, and where both start."""

    name: str
    rest: str
    line: int
    column: int
    arg_column: int


def _open_if(state: _Expansion, at: _At) -> None:
    form: Form = "if" if at.name == "alternative_if" else "if_not"
    cap = _cap_value(at.rest, state.file, at.line, at.arg_column)
    state.block = _Block(form, cap, None, at.line, at.column, [])


def _open_cb(state: _Expansion, at: _At) -> None:
    parts = at.rest.split(",")
    if len(parts) not in (1, 2):
        raise state.error("alternative_cb takes CAP, callback", at.line, at.column)
    cap = None if len(parts) == 1 else _cap_value(parts[0], state.file, at.line,
                                                   at.arg_column)
    callback = _callback_name(parts[-1], state.file, at.line, at.arg_column)
    state.block = _Block("cb", cap, callback, at.line, at.column, [])


def _close_cb(state: _Expansion, block: _Block, at: _At) -> None:
    index = len(state.alternatives)
    state.add(Alternative(index, "cb", block.cap, block.callback, None,
                          Location(file=state.file, line=block.line, column=block.column),
                          at.line), list(block.first), block.line)
    state.block = None


def _else(state: _Expansion, block: _Block, at: _At) -> None:
    if block.second is not None:
        raise state.error("second alternative_else in one block", at.line, at.column)
    block.second = []


def _else_nop_endif(state: _Expansion, block: _Block, at: _At) -> None:
    if block.second is not None:
        raise state.error("alternative_else_nop_endif after alternative_else", at.line,
                          at.column)
    index = len(state.alternatives)
    where = Location(file=state.file, line=block.line, column=block.column)
    if block.form == "if":
        # The if block is the replacement; the in-line default is NOPs.
        state.add(Alternative(index, "if", block.cap, None, tuple(block.first), where,
                              at.line), [NopFill(index)], block.line)
    else:
        state.add(Alternative(index, "if_not", block.cap, None, NopFill(index), where,
                              at.line), list(block.first), block.line)
    state.block = None


def _endif(state: _Expansion, block: _Block, at: _At) -> None:
    if block.second is None:
        raise state.error("alternative_endif without alternative_else (block opened at "
                          f"line {block.line})", at.line, at.column)
    index = len(state.alternatives)
    where = Location(file=state.file, line=block.line, column=block.column)
    # alternative_if: the first half is the replacement; alternative_if_not: the second.
    replacement, in_line = ((block.first, block.second) if block.form == "if"
                            else (block.second, block.first))
    state.add(Alternative(index, block.form, block.cap, None, tuple(replacement), where,
                          at.line), list(in_line), block.line)
    state.block = None


_Closer = Callable[[_Expansion, _Block, _At], None]

#: Directives that open a block.
_OPENERS: Final[Mapping[str, Callable[[_Expansion, _At], None]]] = MappingProxyType({
    "alternative_if": _open_if,
    "alternative_if_not": _open_if,
    "alternative_cb": _open_cb,
})
#: Directives inside a block: (whether the block must be an alternative_cb, handler).
_INSIDE: Final[Mapping[str, tuple[bool, _Closer]]] = MappingProxyType({
    "alternative_cb_end": (True, _close_cb),
    "alternative_else": (False, _else),
    "alternative_else_nop_endif": (False, _else_nop_endif),
    "alternative_endif": (False, _endif),
})


def _directive(state: _Expansion, at: _At) -> None:
    """Check a directive against the open block (if any) and run its handler."""
    block = state.block
    opener = _OPENERS.get(at.name)
    if opener is not None:
        if block is not None:
            raise state.error(f"{at.name} inside an open block started at line "
                              f"{block.line} (alternatives do not nest)", at.line, at.column)
        opener(state, at)
        return
    if block is None:
        raise state.error(f"{at.name} without an open alternative block", at.line, at.column)
    if at.rest.strip():
        raise state.error(f"{at.name} takes no arguments", at.line, at.arg_column)
    wants_cb, handler = _INSIDE[at.name]
    if wants_cb and block.form != "cb":
        raise state.error(f"alternative_cb_end closes an alternative_if block (line "
                          f"{block.line})", at.line, at.column)
    if not wants_cb and block.form == "cb":
        raise state.error(f"{at.name} inside alternative_cb (line {block.line}); close it "
                          "with alternative_cb_end", at.line, at.column)
    handler(state, block, at)


@dataclass(frozen=True)
class _Call:
    """One ``ALTERNATIVE(...)``/``ALTERNATIVE_CB(...)`` line, its arguments parsed."""

    name: str
    args: list[tuple[str, int, bool]]
    line: int
    column: int
    where: Location


def _alternative(state: _Expansion, call: _Call) -> tuple[Alternative, tuple[SourceLine, ...]]:
    args, line = call.args, call.line
    if len(args) != 3 or not (args[0][2] and args[1][2]):
        raise state.error('ALTERNATIVE takes ("old", "new", CAP)', line, call.column)
    old = _instructions(args[0][0], line, args[0][1] + 1)
    new = _instructions(args[1][0], line, args[1][1] + 1)
    cap = _cap_value(args[2][0], state.file, line, args[2][1] + 1)
    index = len(state.alternatives)
    return Alternative(index, "ALTERNATIVE", cap, None, new, call.where, line), old


def _alternative_cb(state: _Expansion, call: _Call
                    ) -> tuple[Alternative, tuple[SourceLine, ...]]:
    args, line = call.args, call.line
    if len(args) not in (2, 3) or not args[0][2]:
        raise state.error('ALTERNATIVE_CB takes ("old", CAP, callback)', line, call.column)
    old = _instructions(args[0][0], line, args[0][1] + 1)
    cap = None if len(args) == 2 else _cap_value(args[1][0], state.file, line,
                                                 args[1][1] + 1)
    callback = _callback_name(args[-1][0], state.file, line, args[-1][1] + 1)
    index = len(state.alternatives)
    return Alternative(index, "ALTERNATIVE_CB", cap, callback, None, call.where, line), old


#: The one-line macro forms.
_CALLS: Final[Mapping[str, Callable[[_Expansion, _Call],
                                    tuple[Alternative, tuple[SourceLine, ...]]]]] = (
    MappingProxyType({"ALTERNATIVE": _alternative, "ALTERNATIVE_CB": _alternative_cb}))


def _macro_call(state: _Expansion, raw: str, line: int, match: re.Match[str]) -> None:
    """Expand one ``ALTERNATIVE``/``ALTERNATIVE_CB`` line (labels may precede it)."""
    name, column = match.group(1), match.start() + 1
    if state.block is not None:
        raise state.error(f"{name} inside an open block started at line "
                          f"{state.block.line}", line, column)
    prefix = raw[:match.start()]
    if _LABELS.fullmatch(prefix) is None:
        raise state.error(f"{name} must start the statement (only labels may precede it)",
                          line, column)
    args, end = _parse_call_args(raw, match.end(), state.file, line)
    if raw[end:].strip():
        raise state.error(f"unexpected text after {name}(...)", line, end + 1)
    if prefix.strip():
        state.inline.append(SourceLine(prefix, line))
    call = _Call(name, args, line, column, Location(file=state.file, line=line,
                                                    column=column))
    alternative, old = _CALLS[name](state, call)
    state.add(alternative, list(old), line)


def expand(text: str, first_line: int, file: str | None = None) -> ExpandedText:
    """Expand every alternative macro in ``text`` (whose line 1 is file line ``first_line``).

    Raises :class:`BuildError` ``BUILD_MACRO`` for unbalanced or malformed macros.
    """
    state = _Expansion(file)
    for offset, raw in enumerate(strip_comments(text)):
        line = first_line + offset
        if MARKER_PREFIX in raw:
            raise state.error(f"names starting with {MARKER_PREFIX} are reserved", line,
                              raw.index(MARKER_PREFIX) + 1)
        directive = _DIRECTIVE.match(raw)
        if directive is not None:
            _directive(state, _At(directive.group(1), directive.group(2), line,
                                  directive.start(1) + 1, directive.start(2) + 1))
            continue
        call = _CALL.search(raw)
        if call is not None:
            _macro_call(state, raw, line, call)
            continue
        state.append(SourceLine(raw, line))
    if state.block is not None:
        raise state.error("alternative block opened here is never closed", state.block.line,
                          state.block.column)
    return ExpandedText(tuple(state.inline), tuple(state.alternatives))


__all__ = [
    "MARKER_PREFIX",
    "Alternative",
    "ExpandedText",
    "Form",
    "InlineItem",
    "NopFill",
    "SourceLine",
    "expand",
]
