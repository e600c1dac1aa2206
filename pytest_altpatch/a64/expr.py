"""Assembler operand expressions: numbers, symbols, ``.``, local labels, arithmetic.

A small precedence-climbing parser.  Symbols are resolved through a callback so the
assembler decides what a name means (label, ``.equ``, external symbol, ``1f``/``1b``).
Values are bounded (|v| < 2**128) so no input can make the parser build huge ints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pytest_altpatch.errors import AsmError, Location

#: Resolves a symbol name (or ``.``, or ``1f``) to its value; raises AsmError if unknown.
Resolver = Callable[[str, int], int]

_LIMIT: Final = 1 << 128
#: Deepest nesting of parentheses and unary operators (keeps recursion bounded).
MAX_DEPTH: Final = 64
_TOKEN: Final = re.compile(
    r"\s*(?:"
    r"(?P<hex>0[xX][0-9a-fA-F]+)|(?P<bin>0[bB][01]+)"
    r"|(?P<local>[0-9]+[fbFB])(?![\w.$])"
    r"|(?P<dec>[0-9]+)(?![\w.$])"
    r"|(?P<name>[A-Za-z_.$][\w.$]*)"
    r"|(?P<op><<|>>|[-+*/%&|^~()])"
    r")"
)
_BINARY: Final[dict[str, int]] = {
    "|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
}


@dataclass(frozen=True)
class Token:
    """One lexical token and its 0-based column within the expression text."""

    kind: str
    text: str
    column: int


def tokenize(text: str, line: int, column: int) -> list[Token]:
    """Split ``text`` into tokens; ``column`` is the 1-based column of ``text[0]``."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos or match.lastgroup is None:
            start = len(text[pos:]) - len(text[pos:].lstrip()) + pos
            raise AsmError(
                "ASM_SYNTAX",
                f"unexpected {text[start]!r} in expression",
                location=Location(line=line, column=column + start),
            )
        kind = match.lastgroup
        tokens.append(Token(kind, match.group(kind), column + match.start(kind)))
        pos = match.end()
    return tokens


def _truncating_div(left: int, right: int) -> int:
    """Division rounding toward zero, as GNU as does (Python's // floors)."""
    quotient = abs(left) // abs(right)
    return quotient if (left < 0) == (right < 0) else -quotient


class _Parser:
    def __init__(self, tokens: list[Token], resolve: Resolver, line: int, end_column: int):
        self.tokens = tokens
        self.pos = 0
        self.resolve = resolve
        self.line = line
        self.end_column = end_column
        self.depth = 0

    def error(self, code: str, message: str, column: int | None = None) -> AsmError:
        where = column if column is not None else self.peek_column()
        return AsmError(code, message, location=Location(line=self.line, column=where))

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def peek_column(self) -> int:
        token = self.peek()
        return token.column if token is not None else self.end_column

    def bounded(self, value: int, column: int) -> int:
        if not -_LIMIT < value < _LIMIT:
            raise self.error("ASM_OUT_OF_RANGE", "expression value is too large", column)
        return value

    def expression(self, min_precedence: int = 1) -> int:
        left = self.unary()
        while True:
            token = self.peek()
            if token is None or token.kind != "op" or token.text not in _BINARY:
                return left
            precedence = _BINARY[token.text]
            if precedence < min_precedence:
                return left
            self.pos += 1
            right = self.expression(precedence + 1)
            left = self.bounded(self.apply(token, left, right), token.column)

    def apply(self, token: Token, left: int, right: int) -> int:
        op = token.text
        if op in ("/", "%") and right == 0:
            raise self.error("ASM_SYNTAX", "division by zero", token.column)
        if op in ("<<", ">>") and not 0 <= right < 128:
            raise self.error("ASM_OUT_OF_RANGE", f"shift count {right} is not in 0..127",
                             token.column)
        if op == "/":
            return _truncating_div(left, right)
        if op == "%":
            return left - right * _truncating_div(left, right)
        results: dict[str, Callable[[int, int], int]] = {
            "|": int.__or__, "^": int.__xor__, "&": int.__and__,
            "<<": int.__lshift__, ">>": int.__rshift__,
            "+": int.__add__, "-": int.__sub__, "*": int.__mul__,
        }
        return results[op](left, right)

    def unary(self) -> int:
        token = self.peek()
        if token is None:
            raise self.error("ASM_SYNTAX", "expression expected")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.error("ASM_SYNTAX", f"expression nested deeper than {MAX_DEPTH}")
            return self.operand(token)
        finally:
            self.depth -= 1

    def operand(self, token: Token) -> int:
        if token.kind == "op" and token.text in ("-", "+", "~"):
            self.pos += 1
            value = self.unary()
            return {"-": -value, "+": value, "~": ~value}[token.text]
        if token.kind == "op" and token.text == "(":
            self.pos += 1
            value = self.expression()
            closing = self.peek()
            if closing is None or closing.text != ")":
                raise self.error("ASM_SYNTAX", "')' expected")
            self.pos += 1
            return value
        self.pos += 1
        if token.kind == "hex":
            return self.bounded(int(token.text, 16), token.column)
        if token.kind == "bin":
            return self.bounded(int(token.text[2:], 2), token.column)
        if token.kind == "dec":
            # A leading zero means octal in GNU as; mirror it rather than surprise.
            text = token.text
            if len(text) > 1 and text.startswith("0"):
                if not set(text) <= set("01234567"):
                    raise self.error("ASM_SYNTAX", f"bad octal number {text}", token.column)
                return self.bounded(int(text, 8), token.column)
            return self.bounded(int(text), token.column)
        if token.kind in ("name", "local"):
            return self.resolve(token.text.lower() if token.kind == "local" else token.text,
                                token.column)
        raise self.error("ASM_SYNTAX", f"unexpected {token.text!r}", token.column)


def evaluate(text: str, resolve: Resolver, line: int, column: int) -> int:
    """Value of the expression ``text`` (starting at 1-based ``column`` of ``line``)."""
    tokens = tokenize(text, line, column)
    parser = _Parser(tokens, resolve, line, column + len(text.rstrip()))
    value = parser.expression()
    leftover = parser.peek()
    if leftover is not None:
        raise parser.error("ASM_SYNTAX", f"unexpected {leftover.text!r} after expression")
    return value


def names_in(text: str) -> list[str]:
    """Symbol names an expression mentions (for screening); empty if it does not lex."""
    try:
        return [t.text for t in tokenize(text, 0, 1) if t.kind in ("name", "local")]
    except AsmError:
        return []


__all__ = ["Resolver", "Token", "evaluate", "names_in", "tokenize"]
