"""Normalised, symbolic, word-at-a-time disassembly."""

from __future__ import annotations

from pytest_altpatch.a64 import DisasmLine, assemble, disassemble, format_listing


def test_undecodable_words_do_not_stop_the_listing() -> None:
    code = bytes.fromhex("1f2003d5") + b"\xff\xff\xff\xff" + bytes.fromhex("c0035fd6")
    lines = disassemble(code, 0x1000)
    assert [line.text for line in lines] == ["nop", ".inst 0xffffffff", "ret"]
    assert [line.address for line in lines] == [0x1000, 0x1004, 0x1008]


def test_targets_print_as_nearest_preceding_symbol() -> None:
    source = "start: b start\nbl helper+8\nadrp x0, data\nldr x1, data\ntbz w2, #3, start\n"
    symbols = {"helper": 0x2000, "data": 0x3010}
    assembly = assemble(source, 0x1000, symbols)
    lines = disassemble(assembly.code, 0x1000, {"start": 0x1000, **symbols})
    assert [line.text for line in lines] == [
        "b start", "bl helper+0x8", "adrp x0, helper+0x1000", "ldr x1, data",
        "tbz w2, #3, start"]


def test_targets_without_symbols_print_in_hex() -> None:
    lines = disassemble(assemble("b .+0x40\nadr x3, .-4", 0x400000).code, 0x400000)
    assert [line.text for line in lines] == ["b #0x400040", "adr x3, #0x400000"]


def test_text_is_normalised_lower_case_single_spaced() -> None:
    lines = disassemble(assemble("LDADDAL X0, X1, [X2]\nmov x0, #0x2a").code, 0)
    assert [line.text for line in lines] == ["ldaddal x0, x1, [x2]", "mov x0, #0x2a"]


def test_trailing_partial_word_is_shown_as_bytes() -> None:
    lines = disassemble(bytes.fromhex("1f2003d5aabb"), 0)
    assert lines[-1] == DisasmLine(4, 0xBBAA, ".byte 0xaa, 0xbb")


def test_listing_has_address_encoding_and_text_columns() -> None:
    listing = format_listing(disassemble(bytes.fromhex("1f2003d5"), 0xFFFF0000))
    assert listing == "00000000ffff0000  d503201f  nop"
