"""The assembler front end: A64 source text to bytes at a base address.

Two passes over the statements of :mod:`syntax`: the first lays out addresses and
defines labels (every instruction is 4 bytes, so layout never needs an encoder), the
second encodes.  PC-relative forms, ``:lo12:`` and the instructions keystone lacks are
encoded by :mod:`encoders` and :mod:`fields`; everything else goes through the screened
keystone path of :mod:`keystone_backend`.  Results are memoised: the same source, base
and symbols give the same :class:`Assembly` object.
"""

from __future__ import annotations

import bisect
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from pytest_altpatch.a64 import keystone_backend
from pytest_altpatch.a64.encoders import (
    PC_RELATIVE_ENCODERS,
    EncodeContext,
    Encoder,
    encode_literal_load,
    own_encoder,
)
from pytest_altpatch.a64.expr import evaluate
from pytest_altpatch.a64.fields import set_add_imm12, set_ldst_imm12
from pytest_altpatch.a64.syntax import Operand, Statement, parse_source
from pytest_altpatch.errors import AsmError, EncodingError, Location

ADDRESS_LIMIT: Final = 1 << 64
NOP: Final = 0xD503201F
#: Largest .skip/.space or alignment padding we agree to produce.
MAX_FILL: Final = 1 << 24
_LOCAL_REF: Final = re.compile(r"^([0-9]+)([fb])$")
_NAME: Final = re.compile(r"^[A-Za-z_.$][\w.$]*$")

#: Data directives and their item width in bytes.
DATA_WIDTHS: Final[Mapping[str, int]] = MappingProxyType({
    ".byte": 1, ".hword": 2, ".2byte": 2, ".short": 2, ".word": 4, ".long": 4,
    ".4byte": 4, ".inst": 4, ".quad": 8, ".8byte": 8,
})
ALIGN_DIRECTIVES: Final = frozenset({".align", ".balign", ".p2align"})
FILL_DIRECTIVES: Final = frozenset({".skip", ".space", ".zero"})
SYMBOL_DIRECTIVES: Final = frozenset({".equ", ".set"})
#: Accepted for compatibility with real-world snippets; they change nothing here.
IGNORED_DIRECTIVES: Final = frozenset({".global", ".globl", ".local", ".type", ".size", ".text"})
_LITERAL_MNEMONICS: Final = frozenset({"ldr", "ldrsw", "prfm"})


@dataclass(frozen=True)
class AsmLine:
    """The bytes one source line (1-based) produced: ``size`` bytes at ``address``."""

    line: int
    address: int
    size: int
    text: str


@dataclass(frozen=True)
class Assembly:
    """Assembled code at ``base``, its named labels, and a line-to-bytes map."""

    code: bytes
    labels: Mapping[str, int]
    base: int
    lines: tuple[AsmLine, ...]

    def words(self) -> tuple[int, ...]:
        """The code as little-endian 32-bit words (trailing partial word dropped)."""
        return tuple(int.from_bytes(self.code[i:i + 4], "little")
                     for i in range(0, len(self.code) - 3, 4))


@dataclass(frozen=True)
class _Equate:
    text: str
    line: int
    column: int
    position: int
    address: int


@dataclass
class _Layout:
    """Mutable state of one assembly run (kept private to :func:`_assemble`)."""

    #: External symbols: the value of a name, or None (the memo records each lookup).
    symbols: Callable[[str], int | None]
    labels: dict[str, int] = field(default_factory=dict)
    equates: dict[str, _Equate] = field(default_factory=dict)
    locals: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    resolving: set[str] = field(default_factory=set)

    def resolver(self, position: int, address: int, line: int) -> Callable[[str, int], int]:
        """Symbol lookup as seen from the statement at ``position``/``address``."""

        def resolve(name: str, column: int) -> int:
            where = Location(line=line, column=column)
            if name == ".":
                return address
            local = _LOCAL_REF.match(name)
            if local is not None:
                return self._local(local.group(1), local.group(2), position, where)
            if name in self.labels:
                return self.labels[name]
            if name in self.equates:
                return self._equate(name, where)
            value = self.symbols(name)
            if value is not None:
                return value
            raise AsmError("ASM_UNDEFINED_SYMBOL", f"undefined symbol {name!r}",
                           location=where)

        return resolve

    def _local(self, number: str, direction: str, position: int, where: Location) -> int:
        definitions = self.locals.get(number, [])
        # Definitions are in position order: the nearest one before/after by bisection.
        slot = bisect.bisect_left(definitions, (position + 1, -1))
        if direction == "b":
            if slot > 0:
                return definitions[slot - 1][1]
        elif slot < len(definitions):
            return definitions[slot][1]
        raise AsmError("ASM_UNDEFINED_SYMBOL", f"local label {number}{direction} has no "
                       f"definition {'before' if direction == 'b' else 'after'} it",
                       location=where)

    def _equate(self, name: str, where: Location) -> int:
        if name in self.resolving:
            raise AsmError("ASM_UNDEFINED_SYMBOL", f"{name!r} is defined in terms of itself",
                           location=where)
        equate = self.equates[name]
        self.resolving.add(name)
        try:
            return evaluate(equate.text,
                            self.resolver(equate.position, equate.address, equate.line),
                            equate.line, equate.column)
        finally:
            self.resolving.discard(name)


def _error(code: str, message: str, statement: Statement, column: int | None = None) -> AsmError:
    return AsmError(code, message, location=statement.location(column))


def _one_operand(statement: Statement, wanted: str) -> Operand:
    if len(statement.operands) != 1:
        raise _error("ASM_SYNTAX", f"{statement.mnemonic} takes {wanted}", statement)
    return statement.operands[0]


def _alignment_padding(statement: Statement, address: int,
                       resolve: Callable[[str, int], int]) -> tuple[int, int | None]:
    """(padding bytes, fill byte or None for code padding) of an alignment directive."""
    mnemonic = statement.mnemonic
    ops = statement.operands
    if not 1 <= len(ops) <= 3:
        raise _error("ASM_SYNTAX", f"{mnemonic} takes 1 to 3 operands", statement)
    amount = evaluate(ops[0].text, resolve, statement.line, ops[0].column)
    if mnemonic == ".balign":
        if amount <= 0 or amount & (amount - 1) or amount > MAX_FILL:
            raise _error("ASM_OUT_OF_RANGE", f".balign {amount} is not a power of two "
                         f"up to {MAX_FILL:#x}", statement, ops[0].column)
        alignment = amount
    else:
        # On AArch64 GNU as, .align takes a power of two exponent, like .p2align.
        if not 0 <= amount <= 24:
            raise _error("ASM_OUT_OF_RANGE", f"alignment exponent {amount} is not in 0..24",
                         statement, ops[0].column)
        alignment = 1 << amount
    fill: int | None = None
    if len(ops) >= 2 and ops[1].text:
        fill = evaluate(ops[1].text, resolve, statement.line, ops[1].column)
        if not -128 <= fill <= 255:
            raise _error("ASM_OUT_OF_RANGE", f"fill byte {fill} does not fit in a byte",
                         statement, ops[1].column)
        fill &= 0xFF
    padding = -address % alignment
    if len(ops) == 3:
        limit = evaluate(ops[2].text, resolve, statement.line, ops[2].column)
        if padding > limit:
            padding = 0
    return padding, fill


def _padding_bytes(address: int, padding: int, fill: int | None) -> bytes:
    if fill is not None:
        return bytes([fill]) * padding
    # Code padding: zeros up to a word boundary, then NOPs, as GNU as does in text.
    head = min(-address % 4, padding)
    words, tail = divmod(padding - head, 4)
    return bytes(head) + NOP.to_bytes(4, "little") * words + bytes(tail)


def _fill_count(statement: Statement, resolve: Callable[[str, int], int]) -> tuple[int, int]:
    ops = statement.operands
    if not 1 <= len(ops) <= 2:
        raise _error("ASM_SYNTAX", f"{statement.mnemonic} takes a size and an optional fill",
                     statement)
    count = evaluate(ops[0].text, resolve, statement.line, ops[0].column)
    if not 0 <= count <= MAX_FILL:
        raise _error("ASM_OUT_OF_RANGE", f"size {count} is not in 0..{MAX_FILL:#x}",
                     statement, ops[0].column)
    fill = 0
    if len(ops) == 2:
        fill = evaluate(ops[1].text, resolve, statement.line, ops[1].column)
        if not -128 <= fill <= 255:
            raise _error("ASM_OUT_OF_RANGE", f"fill byte {fill} does not fit in a byte",
                         statement, ops[1].column)
    return count, fill & 0xFF


def _define_equate(statement: Statement, layout: _Layout, position: int, address: int) -> None:
    ops = statement.operands
    if len(ops) != 2 or not _NAME.match(ops[0].text):
        raise _error("ASM_SYNTAX", f"{statement.mnemonic} takes a name and a value", statement)
    name = ops[0].text
    if name in layout.labels or (statement.mnemonic == ".equ" and name in layout.equates):
        raise _error("ASM_DUPLICATE_LABEL", f"{name!r} is already defined", statement,
                     ops[0].column)
    layout.equates[name] = _Equate(ops[1].text, statement.line, ops[1].column, position,
                                   address)


def _statement_size(statement: Statement, address: int, layout: _Layout, position: int) -> int:
    """Pass 1: bytes this statement occupies (and define .equ symbols)."""
    mnemonic = statement.mnemonic
    if mnemonic is None:
        return 0
    resolve = layout.resolver(position, address, statement.line)
    if not mnemonic.startswith("."):
        if address % 4:
            raise _error("ASM_SYNTAX", f"instruction at unaligned address {address:#x}",
                         statement, statement.mnemonic_column)
        return 4
    if mnemonic in DATA_WIDTHS:
        if not statement.operands:
            raise _error("ASM_SYNTAX", f"{mnemonic} needs at least one value", statement)
        return DATA_WIDTHS[mnemonic] * len(statement.operands)
    if mnemonic in ALIGN_DIRECTIVES:
        return _alignment_padding(statement, address, resolve)[0]
    if mnemonic in FILL_DIRECTIVES:
        return _fill_count(statement, resolve)[0]
    if mnemonic in SYMBOL_DIRECTIVES:
        _define_equate(statement, layout, position, address)
        return 0
    if mnemonic in IGNORED_DIRECTIVES:
        return 0
    raise _error("ASM_UNSUPPORTED", f"unsupported directive {mnemonic}", statement,
                 statement.mnemonic_column)


def _data_bytes(statement: Statement, resolve: Callable[[str, int], int]) -> bytes:
    width = DATA_WIDTHS[statement.mnemonic or ""]
    low = 0 if statement.mnemonic == ".inst" else -(1 << (8 * width - 1))
    high = (1 << (8 * width)) - 1
    out = bytearray()
    for operand in statement.operands:
        value = evaluate(operand.text, resolve, statement.line, operand.column)
        if not low <= value <= high:
            raise _error("ASM_OUT_OF_RANGE", f"{value:#x} does not fit {statement.mnemonic}",
                         statement, operand.column)
        out += (value & high).to_bytes(width, "little")
    return bytes(out)


def _apply_lo12(word: int, lo12: keystone_backend.Lo12, statement: Statement) -> int:
    value = lo12.value & 0xFFF
    try:
        if statement.mnemonic in ("add", "adds"):
            return set_add_imm12(word, value)
        return set_ldst_imm12(word, value)
    except EncodingError as error:
        code = "ASM_UNSUPPORTED" if error.code == "NOT_IMMEDIATE_FORM" else "ASM_OUT_OF_RANGE"
        raise _error(code, f":lo12: {error.message}", statement, lo12.column) from None


def _literal_load(mnemonic: str, ops: tuple[Operand, ...]) -> bool:
    return mnemonic in _LITERAL_MNEMONICS and len(ops) == 2 and not ops[1].text.startswith("[")


#: Words of statements that named no symbol and are not PC-relative, by mnemonic and
#: operand texts: such a word is the same at any address and in any source (a layout
#: round re-encodes every line of a unit whose neighbours moved).  Only successes are
#: kept; an error is raised again, located at its own statement.
_POSITION_FREE: dict[tuple[str, tuple[str, ...]], int] = {}
_POSITION_FREE_LIMIT: Final = 1 << 17


def _instruction_word(statement: Statement, address: int,
                      resolve: Callable[[str, int], int]) -> int:
    mnemonic = statement.mnemonic or ""
    ops = statement.operands
    if _literal_load(mnemonic, ops):
        return _literal_word(statement, _context(statement, address, resolve))
    encoder = own_encoder(mnemonic)
    if encoder in PC_RELATIVE_ENCODERS:
        return _encode_word(statement, address, resolve, encoder)
    key = (mnemonic, tuple(operand.text for operand in ops))
    word = _POSITION_FREE.get(key)
    if word is not None:
        return word
    named: list[str] = []

    def noting(name: str, column: int) -> int:
        named.append(name)
        return resolve(name, column)

    word = _encode_word(statement, address, noting, encoder)
    if not named:
        if len(_POSITION_FREE) >= _POSITION_FREE_LIMIT:
            _POSITION_FREE.clear()
        _POSITION_FREE[key] = word
    return word


def _context(statement: Statement, address: int,
             resolve: Callable[[str, int], int]) -> EncodeContext:
    def evaluate_at(text: str, column: int) -> int:
        return evaluate(text, resolve, statement.line, column)

    return EncodeContext(address, statement.line, statement.mnemonic_column, evaluate_at)


def _literal_word(statement: Statement, ctx: EncodeContext) -> int:
    ops = statement.operands
    if ops[1].text.startswith("="):
        raise _error("ASM_UNSUPPORTED", "literal pools (ldr =value) are not supported",
                     statement, ops[1].column)
    return encode_literal_load(statement.mnemonic or "", ops, ctx)


def _encode_word(statement: Statement, address: int, resolve: Callable[[str, int], int],
                 encoder: Encoder | None) -> int:
    """The word of a statement that is not a literal load: ``encoder``'s, or keystone's."""
    mnemonic = statement.mnemonic or ""
    ctx = _context(statement, address, resolve)
    if encoder is not None:
        return encoder(mnemonic, statement.operands, ctx)
    word, lo12 = keystone_backend.encode(mnemonic, statement.operands, statement.line,
                                         statement.mnemonic_column, ctx.evaluate)
    return word if lo12 is None else _apply_lo12(word, lo12, statement)


def _statement_bytes(statement: Statement, address: int, layout: _Layout,
                     position: int) -> bytes:
    """Pass 2: the bytes of one statement."""
    mnemonic = statement.mnemonic
    resolve = layout.resolver(position, address, statement.line)
    if mnemonic is None or mnemonic in SYMBOL_DIRECTIVES or mnemonic in IGNORED_DIRECTIVES:
        return b""
    if mnemonic in DATA_WIDTHS:
        return _data_bytes(statement, resolve)
    if mnemonic in ALIGN_DIRECTIVES:
        padding, fill = _alignment_padding(statement, address, resolve)
        return _padding_bytes(address, padding, fill)
    if mnemonic in FILL_DIRECTIVES:
        count, fill = _fill_count(statement, resolve)
        return bytes([fill]) * count
    return _instruction_word(statement, address, resolve).to_bytes(4, "little")


def _assemble(source: str, base: int, lookup: Callable[[str], int | None]) -> Assembly:
    statements = parse_source(source)
    layout = _Layout(lookup)
    addresses: list[int] = []
    address = base
    for position, statement in enumerate(statements):
        for label in statement.labels:
            if label.name.isdigit():
                layout.locals.setdefault(label.name, []).append((position, address))
                continue
            if label.name in layout.labels or label.name in layout.equates:
                raise _error("ASM_DUPLICATE_LABEL", f"label {label.name!r} is already defined",
                             statement, label.column)
            layout.labels[label.name] = address
        addresses.append(address)
        address += _statement_size(statement, address, layout, position)
        if address > ADDRESS_LIMIT:
            raise _error("ASM_OUT_OF_RANGE", "code runs past the end of the address space",
                         statement)
    code = bytearray()
    line_sizes: dict[int, tuple[int, int]] = {}
    for position, statement in enumerate(statements):
        chunk = _statement_bytes(statement, addresses[position], layout, position)
        if len(chunk) != (addresses[position + 1] if position + 1 < len(addresses)
                          else address) - addresses[position]:  # pragma: no cover
            raise _error("ASM_SYNTAX", "statement size changed between passes", statement)
        code += chunk
        first, size = line_sizes.get(statement.line, (addresses[position], 0))
        line_sizes[statement.line] = (first, size + len(chunk))
    source_lines = source.split("\n")
    lines = tuple(
        AsmLine(number, first, size, source_lines[number - 1].strip())
        for number, (first, size) in sorted(line_sizes.items())
    )
    return Assembly(bytes(code), MappingProxyType(dict(layout.labels)), base, lines)


class CheckedSymbols(Mapping[str, int]):
    """External symbols whose names and values are already known to be valid.

    :func:`assemble` checks every entry of a plain mapping on each call; a
    ``CheckedSymbols`` is trusted as it is, so a large table checked once (see
    :class:`SymbolTable`) costs only the lookups a source makes.
    """

    __slots__ = ()


class SymbolTable(CheckedSymbols):
    """A symbol table checked once: identifier names, 64-bit values."""

    __slots__ = ("_values",)

    def __init__(self, symbols: Mapping[str, int]) -> None:
        self._values = dict(_checked_items(symbols))

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def get(self, name: str, default: int | None = None) -> int | None:  # type: ignore[override]
        """The value of ``name``, or ``default``."""
        return self._values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _checked_items(symbols: Mapping[str, int]) -> Iterator[tuple[str, int]]:
    for name, value in symbols.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise AsmError("ASM_SYNTAX", f"symbol name {name!r} is not an identifier")
        if isinstance(value, bool) or not isinstance(value, int) \
                or not -(1 << 63) <= value < ADDRESS_LIMIT:
            raise AsmError("ASM_OUT_OF_RANGE", f"symbol {name} = {value!r} is not a 64-bit value")
        yield name, value


#: Memo of assemblies: (source, base) -> variants, each with the external symbols it
#: looked up (value, or None for "absent") and its result.  A source depends only on
#: the symbols it names, so the key never holds the whole table.
_MEMO: OrderedDict[tuple[str, int], list[tuple[tuple[tuple[str, int | None], ...],
                                               Assembly]]] = OrderedDict()
#: More keys than a 10,000-site image has units, so the last layout round hits.
_MEMO_KEYS: Final = 1 << 15
_MEMO_VARIANTS: Final = 4


def _memoised(source: str, base: int, symbols: Mapping[str, int]) -> Assembly:
    key = (source, base)
    variants = _MEMO.get(key)
    if variants is not None:
        _MEMO.move_to_end(key)
        for used, assembly in variants:
            if all(symbols.get(name) == value for name, value in used):
                return assembly
    looked_up: dict[str, int | None] = {}

    def lookup(name: str) -> int | None:
        value = symbols.get(name)
        looked_up[name] = value
        return value

    assembly = _assemble(source, base, lookup)
    if variants is None:
        variants = _MEMO[key] = []
        if len(_MEMO) > _MEMO_KEYS:
            _MEMO.popitem(last=False)
    variants.insert(0, (tuple(looked_up.items()), assembly))
    del variants[_MEMO_VARIANTS:]
    return assembly


def assemble(source: str, base: int = 0, symbols: Mapping[str, int] | None = None) -> Assembly:
    """Assemble A64 ``source`` at address ``base``, with optional external ``symbols``.

    Raises :class:`AsmError` (ASM_SYNTAX, ASM_UNDEFINED_SYMBOL, ASM_DUPLICATE_LABEL,
    ASM_OUT_OF_RANGE, ASM_UNSUPPORTED) located by 1-based line and column.  The same
    arguments return the same (memoised) :class:`Assembly` object.  Every entry of a
    plain ``symbols`` mapping is checked; a :class:`CheckedSymbols` is trusted.
    """
    if not isinstance(source, str):
        raise AsmError("ASM_SYNTAX", "assembly source must be text")
    if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base < ADDRESS_LIMIT:
        raise AsmError("ASM_OUT_OF_RANGE", f"base {base!r} is not a 64-bit address")
    if symbols is None:
        symbols = {}
    elif not isinstance(symbols, CheckedSymbols):
        for _ in _checked_items(symbols):
            pass
    return _memoised(source, base, symbols)


__all__ = ["AsmLine", "Assembly", "CheckedSymbols", "SymbolTable", "assemble"]
