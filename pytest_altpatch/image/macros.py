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
from dataclasses import dataclass
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
            pos += 1
            while True:
                if pos >= len(text):
                    raise _error("BUILD_MACRO", "unterminated string", file, line, pos)
                char = text[pos]
                if char == "\\" and pos + 1 < len(text):
                    current += _ESCAPES.get(text[pos + 1], "\\" + text[pos + 1])
                    pos += 2
                    continue
                if char == '"':
                    pos += 1
                    break
                current += char
                pos += 1
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


def expand(text: str, first_line: int, file: str | None = None) -> ExpandedText:
    """Expand every alternative macro in ``text`` (whose line 1 is file line ``first_line``).

    Raises :class:`BuildError` ``BUILD_MACRO`` for unbalanced or malformed macros.
    """
    inline: list[InlineItem] = []
    alternatives: list[Alternative] = []
    block: _Block | None = None

    def site(index: int, body: list[InlineItem], line: int) -> None:
        inline.append(SourceLine(f"{MARKER_PREFIX}site_{index}:", line))
        inline.extend(body)
        inline.append(SourceLine(f"{MARKER_PREFIX}site_{index}_end:", line))

    for offset, raw in enumerate(strip_comments(text)):
        line = first_line + offset
        if MARKER_PREFIX in raw:
            raise _error("BUILD_MACRO", f"names starting with {MARKER_PREFIX} are reserved",
                         file, line, raw.index(MARKER_PREFIX) + 1)
        directive = _DIRECTIVE.match(raw)
        call = _CALL.search(raw)
        if directive is not None:
            name, rest = directive.group(1), directive.group(2)
            column = directive.start(1) + 1
            arg_column = directive.start(2) + 1
            if name in ("alternative_if", "alternative_if_not", "alternative_cb"):
                if block is not None:
                    raise _error("BUILD_MACRO", f"{name} inside an open block started at "
                                 f"line {block.line} (alternatives do not nest)", file, line,
                                 column)
                if name == "alternative_cb":
                    parts = rest.split(",")
                    if len(parts) == 1:
                        block = _Block("cb", None, _callback_name(parts[0], file, line,
                                       arg_column), line, column, [])
                    elif len(parts) == 2:
                        block = _Block(
                            "cb", _cap_value(parts[0], file, line, arg_column),
                            _callback_name(parts[1], file, line, arg_column), line, column, [],
                        )
                    else:
                        raise _error("BUILD_MACRO", "alternative_cb takes CAP, callback",
                                     file, line, column)
                else:
                    form: Form = "if" if name == "alternative_if" else "if_not"
                    block = _Block(form, _cap_value(rest, file, line, arg_column), None,
                                   line, column, [])
                continue
            if block is None:
                raise _error("BUILD_MACRO", f"{name} without an open alternative block", file,
                             line, column)
            if rest.strip():
                raise _error("BUILD_MACRO", f"{name} takes no arguments", file, line,
                             arg_column)
            if name == "alternative_cb_end":
                if block.form != "cb":
                    raise _error("BUILD_MACRO", "alternative_cb_end closes an alternative_if "
                                 f"block (line {block.line})", file, line, column)
                index = len(alternatives)
                alternatives.append(Alternative(
                    index, "cb", block.cap, block.callback, None,
                    Location(file=file, line=block.line, column=block.column), line,
                ))
                site(index, list(block.first), block.line)
                block = None
                continue
            if block.form == "cb":
                raise _error("BUILD_MACRO", f"{name} inside alternative_cb (line "
                             f"{block.line}); close it with alternative_cb_end", file, line,
                             column)
            if name == "alternative_else":
                if block.second is not None:
                    raise _error("BUILD_MACRO", "second alternative_else in one block", file,
                                 line, column)
                block.second = []
                continue
            # alternative_endif or alternative_else_nop_endif closes an if/if_not block.
            index = len(alternatives)
            where = Location(file=file, line=block.line, column=block.column)
            if name == "alternative_else_nop_endif":
                if block.second is not None:
                    raise _error("BUILD_MACRO", "alternative_else_nop_endif after "
                                 "alternative_else", file, line, column)
                if block.form == "if":
                    # The if block is the replacement; the in-line default is NOPs.
                    alternatives.append(Alternative(index, "if", block.cap, None,
                                                    tuple(block.first), where, line))
                    site(index, [NopFill(index)], block.line)
                else:
                    alternatives.append(Alternative(index, "if_not", block.cap, None,
                                                    NopFill(index), where, line))
                    site(index, list(block.first), block.line)
            else:
                if block.second is None:
                    raise _error("BUILD_MACRO", f"alternative_endif without alternative_else "
                                 f"(block opened at line {block.line})", file, line, column)
                if block.form == "if":
                    alternatives.append(Alternative(index, "if", block.cap, None,
                                                    tuple(block.first), where, line))
                    site(index, list(block.second), block.line)
                else:
                    alternatives.append(Alternative(index, "if_not", block.cap, None,
                                                    tuple(block.second), where, line))
                    site(index, list(block.first), block.line)
            block = None
            continue
        if call is not None:
            if block is not None:
                raise _error("BUILD_MACRO", f"{call.group(1)} inside an open block started "
                             f"at line {block.line}", file, line, call.start() + 1)
            prefix = raw[:call.start()]
            labels = _LABELS.fullmatch(prefix)
            if labels is None:
                raise _error("BUILD_MACRO", f"{call.group(1)} must start the statement (only "
                             "labels may precede it)", file, line, call.start() + 1)
            args, end = _parse_call_args(raw, call.end(), file, line)
            if raw[end:].strip():
                raise _error("BUILD_MACRO", f"unexpected text after {call.group(1)}(...)",
                             file, line, end + 1)
            where = Location(file=file, line=line, column=call.start() + 1)
            index = len(alternatives)
            if prefix.strip():
                inline.append(SourceLine(prefix, line))
            if call.group(1) == "ALTERNATIVE":
                if len(args) != 3 or not (args[0][2] and args[1][2]):
                    raise _error("BUILD_MACRO", 'ALTERNATIVE takes ("old", "new", CAP)', file,
                                 line, call.start() + 1)
                old = _instructions(args[0][0], line, args[0][1] + 1)
                new = _instructions(args[1][0], line, args[1][1] + 1)
                alternatives.append(Alternative(
                    index, "ALTERNATIVE", _cap_value(args[2][0], file, line, args[2][1] + 1),
                    None, new, where, line,
                ))
            else:
                if len(args) not in (2, 3) or not args[0][2]:
                    raise _error("BUILD_MACRO", 'ALTERNATIVE_CB takes ("old", CAP, callback)',
                                 file, line, call.start() + 1)
                old = _instructions(args[0][0], line, args[0][1] + 1)
                cb_cap = None if len(args) == 2 else _cap_value(args[1][0], file, line,
                                                                args[1][1] + 1)
                callback = _callback_name(args[-1][0], file, line, args[-1][1] + 1)
                alternatives.append(Alternative(index, "ALTERNATIVE_CB", cb_cap, callback,
                                                None, where, line))
            site(index, list(old), line)
            continue
        if block is None:
            inline.append(SourceLine(raw, line))
        elif block.second is None:
            block.first.append(SourceLine(raw, line))
        else:
            block.second.append(SourceLine(raw, line))
    if block is not None:
        raise _error("BUILD_MACRO", "alternative block opened here is never closed", file,
                     block.line, block.column)
    return ExpandedText(tuple(inline), tuple(alternatives))


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
