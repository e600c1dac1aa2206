"""Kernel macro expansion: where each form puts its site and replacement, and its errors.

Expected words are derived by hand from the Arm ARM encodings:
MOVZ Xd, #imm = 0xd2800000 | imm << 5 | Rd; NOP = 0xd503201f; ISB = 0xd5033fdf;
B = 0x14000000 | imm26 (offset / 4).
"""

from __future__ import annotations

import pytest
from conftest import CASE_FILE, TEXT_LINE, make_case, numbering_for

from pytest_altpatch.cases.model import Dialect, RawAltEntry
from pytest_altpatch.dialects import traits
from pytest_altpatch.errors import AltpatchError, AsmError, BuildError
from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.model import Image, SourceMap, SourceSpan
from pytest_altpatch.plain_data import dumps, loads

NOP = 0xD503201F
ISB = 0xD5033FDF


def movz_x(rd: int, imm: int) -> int:
    return 0xD2800000 | imm << 5 | rd


def words(image: Image, address: int, count: int) -> list[int]:
    raw = image.read(address, 4 * count)
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]


def build(text: str, dialect: Dialect = "linux-4.9", **kwargs: object) -> Image:
    case = make_case(text, **kwargs)  # type: ignore[arg-type]
    return build_image(case, dialect=dialect, numbering=numbering_for(dialect))


def test_one_line_alternative_puts_old_in_line_and_new_out_of_line() -> None:
    image = build('fn: ALTERNATIVE("mov x0, #1; mov x1, #2", "mov x0, #3\\nmov x1, #4", CAP_B)\n'
                  "    ret\n")
    (entry,) = image.alt_entries
    assert entry.site == image.symbols["fn"]
    assert words(image, entry.site, 2) == [movz_x(0, 1), movz_x(1, 2)]
    assert words(image, entry.target, 2) == [movz_x(0, 3), movz_x(1, 4)]
    assert (entry.cap, entry.cap_name, entry.site_len, entry.repl_len) == (1, "CAP_B", 8, 8)
    assert image.section(".altinstr_replacement") is not None
    assert image.section(".altinstr_replacement").contains(entry.target)  # type: ignore[union-attr]


def test_alternative_if_block_is_the_replacement_and_else_block_stays_in_line() -> None:
    image = build("fn:\nalternative_if CAP_A\n  mov x0, #3\nalternative_else\n  mov x0, #4\n"
                  "alternative_endif\n  ret\n")
    (entry,) = image.alt_entries
    assert words(image, entry.site, 1) == [movz_x(0, 4)]
    assert words(image, entry.target, 1) == [movz_x(0, 3)]
    assert entry.site == image.symbols["fn"]


def test_alternative_if_not_keeps_its_own_block_in_line() -> None:
    image = build("fn:\nalternative_if_not CAP_A\n  mov x0, #3\nalternative_else\n  mov x0, #4\n"
                  "alternative_endif\n  ret\n")
    (entry,) = image.alt_entries
    assert words(image, entry.site, 1) == [movz_x(0, 3)]
    assert words(image, entry.target, 1) == [movz_x(0, 4)]


def test_else_nop_endif_makes_the_default_nops_as_long_as_the_replacement() -> None:
    image = build("fn:\nalternative_if CAP_C\n  isb\n  isb\n  mov x0, #1\n"
                  "alternative_else_nop_endif\n  ret\n")
    (entry,) = image.alt_entries
    assert entry.site_len == entry.repl_len == 12
    assert words(image, entry.site, 3) == [NOP, NOP, NOP]
    assert words(image, entry.target, 3) == [ISB, ISB, movz_x(0, 1)]
    assert words(image, entry.site + 12, 1) == [0xD65F03C0]  # ret follows the NOPs


def test_if_not_with_else_nop_endif_makes_the_replacement_nops() -> None:
    image = build("fn:\nalternative_if_not CAP_C\n  isb\n  isb\nalternative_else_nop_endif\n")
    (entry,) = image.alt_entries
    assert words(image, entry.site, 2) == [ISB, ISB]
    assert words(image, entry.target, 2) == [NOP, NOP]


@pytest.mark.parametrize("dialect", ["linux-4.9", "xen-4.17"])
def test_callback_entries_have_no_replacement_and_cap_field_ncaps(dialect: Dialect) -> None:
    image = build("fn:\nalternative_cb CAP_B, alt_cb_patch_nops\n  mov x0, #1\n  mov x1, #1\n"
                  "alternative_cb_end\n"
                  'g: ALTERNATIVE_CB("mov x0, #2", CAP_A, arm64_update_smccc_conduit)\n',
                  dialect)
    first, second = image.alt_entries
    assert (first.is_callback, first.repl_len, first.site_len, first.cap_field) == (True, 0, 8, 3)
    assert first.target == image.symbols["alt_cb_patch_nops"] == image.callbacks[
        "alt_cb_patch_nops"]
    assert second.target == image.symbols["arm64_update_smccc_conduit"]
    assert second.site == image.symbols["g"]


def test_callbacks_keep_their_cap_under_bit_15_in_linux_6_1() -> None:
    image = build('ALTERNATIVE_CB("nop", CAP_C, alt_cb_patch_nops)\n', "linux-6.1")
    (entry,) = image.alt_entries
    assert (entry.cap_field, entry.cap, entry.cap_name, entry.is_callback) == (
        0x8002, 2, "CAP_C", True)


def test_linux_4_6_has_no_callbacks() -> None:
    with pytest.raises(BuildError) as info:
        build('ALTERNATIVE_CB("nop", CAP_C, alt_cb_patch_nops)\n', "linux-4.6")
    assert info.value.code == "BUILD_UNKNOWN_CALLBACK"


def test_subsection_layout_places_replacements_after_the_text() -> None:
    image = build('fn: ALTERNATIVE("nop", "isb", CAP_A)\n    ret\n', "linux-6.1")
    (entry,) = image.alt_entries
    text = image.section(".text")
    assert text is not None and image.section(".altinstr_replacement") is None
    assert text.contains(entry.target, 4)
    assert entry.target > image.symbols["arm64_update_smccc_conduit"]  # after all text
    assert words(image, entry.target, 1) == [ISB]


def test_labels_in_a_replacement_sit_at_the_replacement_and_branches_cross_both_ways() -> None:
    image = build("fn:\nalternative_if CAP_A\nalt_start:\n  b back\nalternative_else\n"
                  "  b alt_start\nalternative_endif\nback: ret\n")
    (entry,) = image.alt_entries
    assert image.symbols["alt_start"] == entry.target
    # B offsets (imm26 = offset / 4), in both directions.
    b_back = 0x14000000 | ((image.symbols["back"] - entry.target) // 4) & 0x3FFFFFF
    b_alt = 0x14000000 | ((entry.target - entry.site) // 4) & 0x3FFFFFF
    assert words(image, entry.target, 1) == [b_back]
    assert words(image, entry.site, 1) == [b_alt]


def test_numeric_local_labels_in_a_replacement_resolve_inside_it() -> None:
    image = build("1: nop\nalternative_if CAP_A\n  b 1f\n1: nop\nalternative_else\n  nop\n  nop\n"
                  "alternative_endif\n")
    (entry,) = image.alt_entries
    assert words(image, entry.target, 1) == [0x14000001]  # b +4, not the text's 1:


def test_length_mismatch_is_reported_at_the_case_file_line() -> None:
    text = ("fn:\n  nop\nalternative_if CAP_A\n  nop\n  nop\nalternative_else\n  nop\n"
            "alternative_endif\n")
    with pytest.raises(BuildError) as info:
        build(text)
    assert info.value.code == "BUILD_LENGTH_MISMATCH"
    assert (info.value.location.file, info.value.location.line) == (CASE_FILE, TEXT_LINE + 2)


def test_one_line_length_mismatch_names_its_line() -> None:
    with pytest.raises(BuildError) as info:
        build('nop\nnop\nALTERNATIVE("nop", "nop; nop", CAP_A)\n')
    assert info.value.code == "BUILD_LENGTH_MISMATCH"
    assert info.value.location.line == TEXT_LINE + 2


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("alternative_if CAP_A\n nop\n", 0),  # never closed: reported at the opening
        ("nop\nalternative_else\n", 1),
        ("alternative_endif\n", 0),
        ("alternative_if CAP_A\nalternative_if CAP_B\n", 1),  # no nesting
        ("alternative_if CAP_A\n nop\nalternative_endif\n", 2),  # if needs an else
        ("alternative_cb CAP_A, alt_cb_patch_nops\n nop\nalternative_endif\n", 2),
        ("alternative_if CAP_A\n nop\nalternative_cb_end\n", 2),
        ('ALTERNATIVE("nop", CAP_A)\n', 0),
        ('ALTERNATIVE("nop", "nop", CAP_A\n', 0),
    ],
)
def test_unbalanced_or_malformed_macros_are_build_macro_errors(text: str, line: int) -> None:
    with pytest.raises(BuildError) as info:
        build(text)
    assert info.value.code == "BUILD_MACRO"
    assert info.value.location.line == TEXT_LINE + line


def test_unknown_callback_and_unknown_cap_are_located() -> None:
    with pytest.raises(BuildError) as info:
        build('nop\nALTERNATIVE_CB("nop", CAP_A, no_such_callback)\n')
    assert (info.value.code, info.value.location.line) == ("BUILD_UNKNOWN_CALLBACK",
                                                           TEXT_LINE + 1)
    with pytest.raises(BuildError) as info:
        build('ALTERNATIVE("nop", "isb", CAP_NOT_NUMBERED)\n')
    assert (info.value.code, info.value.location.line) == ("BUILD_UNKNOWN_CAP", TEXT_LINE)


def test_case_local_caps_are_numbered_after_the_dialect_and_grow_ncaps() -> None:
    image = build('ALTERNATIVE("nop", "isb", MY_CAP)\nALTERNATIVE("nop", "isb", OTHER)\n',
                  caps=("MY_CAP", "OTHER"))
    assert image.numbering.ncaps == 5
    assert [(e.cap, e.cap_name) for e in image.alt_entries] == [(3, "MY_CAP"), (4, "OTHER")]


def test_assembler_errors_in_macro_strings_are_moved_to_the_case_line() -> None:
    with pytest.raises(AsmError) as info:
        build('nop\nnop\nfoo: ALTERNATIVE("nop", "frobnicate x0", CAP_A)\n')
    assert info.value.location.file == CASE_FILE
    assert info.value.location.line == TEXT_LINE + 2


def test_assembler_errors_in_blocks_keep_their_own_line() -> None:
    with pytest.raises(AltpatchError) as info:
        build("alternative_if CAP_A\n  nop\nalternative_else\n  b nowhere\nalternative_endif\n")
    assert info.value.code == "ASM_UNDEFINED_SYMBOL"
    assert info.value.location.line == TEXT_LINE + 3


def test_raw_table_entries_encode_labels_offsets_raw_caps_and_lengths_as_given() -> None:
    far = traits("linux-6.1").text_base + 0x1234  # an absolute address, outside any section
    raw = (
        RawAltEntry(site="fn+4", replacement="data_word", cap=77, site_len=6, repl_len=2),
        RawAltEntry(site=far, replacement=None, cap="CAP_B", site_len=4, repl_len=0,
                    callback="alt_cb_patch_nops", cb_bit=True),
    )
    image = build('fn: ALTERNATIVE("nop", "isb", CAP_A)\n nop\n', "linux-6.1",
                  data="data_word: .word 0", alt_table=raw)
    macro, first, second = image.alt_entries
    assert (first.site, first.target, first.cap_field) == (
        image.symbols["fn"] + 4, image.symbols["data_word"], 77)
    assert (first.site_len, first.repl_len) == (6, 2)
    assert (second.site, second.is_callback, second.cap_field) == (far, True, 0x8001)
    assert second.target == image.symbols["alt_cb_patch_nops"]
    assert macro.index == 0 and second.index == 2


def test_raw_entry_with_an_unknown_label_is_a_coded_error() -> None:
    with pytest.raises(BuildError) as info:
        build("nop\n", alt_table=(RawAltEntry("nowhere", "nowhere", 0, 4, 4),))
    assert info.value.code == "BUILD_ALT_ENTRY"


def test_source_map_points_each_site_word_at_its_case_line() -> None:
    image = build("fn:\n  nop\nalternative_if CAP_A\n  mov x0, #3\nalternative_else\n  mov x0, #4\n"
                  "alternative_endif\n")
    (entry,) = image.alt_entries
    assert image.source_map.line_at(image.symbols["fn"]) == TEXT_LINE + 1
    assert image.source_map.line_at(entry.site) == TEXT_LINE + 5
    assert image.source_map.line_at(entry.target) == TEXT_LINE + 3


def test_stacks_harness_and_data_have_their_own_regions() -> None:
    case = make_case("fn: ret\n", cpus=3)
    image = build_image(case, dialect="xen-4.17", numbering=numbering_for("xen-4.17"),
                        harness_text="start:\n  bl fn\n  b .\n")
    assert len(image.stacks) == 3
    assert image.stacks[1].base == image.stacks[0].top
    harness = image.section(".altpatch.harness")
    assert harness is not None and harness.perms == "r-x"
    assert image.symbols["start"] == image.harness_start
    # bl fn from the harness: imm26 = (fn - start) / 4
    offset = (image.symbols["fn"] - image.symbols["start"]) // 4
    assert words(image, image.harness_start, 1) == [0x94000000 | offset & 0x3FFFFFF]
    assert all(address < 1 << 40 for address in image.symbols.values())
    text, data = image.section(".text"), image.section(".data")
    assert text is not None and data is not None
    assert data.va - text.va > 1 << 20  # beyond ADR's reach: ADRP cases are meaningful


def test_a_source_map_finds_the_span_holding_an_address() -> None:
    """Spans are half-open ``[address, address + size)``, a zero-size one holds its own
    address; an address before the first span, in a gap or past the last has none."""
    source_map = SourceMap("x.yaml", ((0x1000, 4, 7, "nop"), (0x1004, 8, 9, "mov x0, #1"),
                                      (0x1010, 0, 11, "label:"), (0x1020, 4, 12, "ret")))
    assert [source_map.line_at(address) for address in (
        0xFFC, 0x1000, 0x1003, 0x1004, 0x100B, 0x100C, 0x1010, 0x1011, 0x1020, 0x1024)] == [
        None, 7, 7, 9, 9, None, 11, None, 12, None]
    assert source_map.span_at(0x1008) == SourceSpan(0x1004, 8, 9, "mov x0, #1")
    assert source_map.spans[-1] == SourceSpan(0x1020, 4, 12, "ret")
    assert SourceMap().span_at(0) is None


def test_an_images_source_map_pickles_as_plain_fields() -> None:
    image = build("fn:\n  nop\n  mov x0, #3\n  ret\n")
    data = dumps(image.source_map)
    assert b"SourceSpan" not in data and loads(data) == image.source_map
    assert [span.line for span in image.source_map.spans] == [
        TEXT_LINE + 1, TEXT_LINE + 2, TEXT_LINE + 3]
