"""ELF images and payload objects: our writer, our reader and loader, GNU readelf."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import capstone
import pytest
from conftest import make_case, numbering_for

from pytest_altpatch.cases.model import Dialect, PayloadSpec, SourceBlock
from pytest_altpatch.errors import ElfError, Location
from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.elf_reader import load_relocatable, packed_placement, read_image
from pytest_altpatch.image.elf_writer import write_image, write_relocatable
from pytest_altpatch.image.model import Image
from pytest_altpatch.image.objects import (
    ObjectRelocation,
    ObjectSection,
    ObjectSymbol,
    RelocatableObject,
)
from pytest_altpatch.image.payload import build_payload

TEXT = """\
fn:
    stp x29, x30, [sp, #-16]!
site_a: ALTERNATIVE("mov x0, #1", "b fast", CAP_A)
alternative_if CAP_B
    adrp x1, counter
alternative_else
    nop
alternative_endif
    ALTERNATIVE_CB("nop", CAP_C, alt_cb_patch_nops)
    ldp x29, x30, [sp], #16
    ret
fast:
    mov x0, #2
    ret
"""
PAYLOAD_TEXT = """\
new_fn:
    bl fn
    adrp x2, counter
    ldr x3, [x2, :lo12:counter]
    add x2, x2, :lo12:counter
    ALTERNATIVE("b fast", "b new_fn", CAP_B)
    ALTERNATIVE_CB("nop", CAP_A, arm64_update_smccc_conduit)
    ret
"""
READELF = shutil.which("aarch64-linux-gnu-readelf")


def build(dialect: Dialect) -> Image:
    case = make_case(TEXT, data="pad: .quad 0\ncounter: .quad 0\nptr: .quad fast\n")
    return build_image(case, dialect=dialect, numbering=numbering_for(dialect),
                       harness_text="start: bl fn\n  b .\n")


def payload(image: Image) -> bytes:
    spec = PayloadSpec("lp", SourceBlock(PAYLOAD_TEXT, Location(file="p.yaml", line=5)),
                       SourceBlock("table: .quad new_fn\noff: .word fn - .\n",
                                   Location(file="p.yaml", line=30)))
    return write_relocatable(build_payload(spec, image))


@pytest.mark.parametrize("dialect", ["xen-4.17", "linux-4.9", "linux-6.1"])
def test_image_survives_write_then_read(dialect: Dialect) -> None:
    image = build(dialect)
    back = read_image(write_image(image))
    assert back.sections == image.sections
    assert dict(back.symbols) == dict(image.symbols)
    assert (back.alt_table_start, back.alt_table_end) == (image.alt_table_start,
                                                          image.alt_table_end)
    assert back.alt_entries(dialect, image.numbering.ncaps, back.numbering) == image.alt_entries
    assert back.numbering is not None and dict(back.numbering.numbers) == dict(
        image.numbering.numbers)
    assert back.entry == image.harness_start
    assert (back.text_start, back.text_end) == (image.text_start, image.text_end)


def test_table_is_found_through_the_linker_symbols_without_a_section() -> None:
    image = build("linux-4.9")
    data = bytearray(write_image(image))
    renamed = data.replace(b".altinstructions\0", b".rodata.altinstr\0")
    back = read_image(bytes(renamed))
    assert back.section(".altinstructions") is None
    assert back.alt_table == image.read(image.alt_table_start,
                                        image.alt_table_end - image.alt_table_start)


def test_image_without_any_table_is_a_coded_error() -> None:
    obj = RelocatableObject("x", (ObjectSection(".text", "text", bytes(4)),), ())
    image = build("linux-4.9")
    data = bytearray(write_image(image))
    data = data.replace(b".altinstructions\0", b".rodata.altinstr\0")
    data = data.replace(b"__alt_instructions\0", b"__alt_instructionz\0")
    with pytest.raises(ElfError) as info:
        read_image(bytes(data))
    assert info.value.code == "ELF_NO_ALT_TABLE"
    with pytest.raises(ElfError) as info:
        read_image(write_relocatable(obj))  # an object is not an image
    assert info.value.code == "ELF_MALFORMED"


def test_foreign_machine_is_refused() -> None:
    data = bytearray(write_image(build("linux-4.9")))
    data[18:20] = (62).to_bytes(2, "little")  # EM_X86_64
    with pytest.raises(ElfError) as info:
        read_image(bytes(data))
    assert info.value.code == "ELF_WRONG_MACHINE"


def _disasm(word: int, address: int) -> str:
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    (insn,) = md.disasm(word.to_bytes(4, "little"), address)
    return f"{insn.mnemonic} {insn.op_str}"


@pytest.mark.parametrize("dialect", ["xen-4.17", "linux-6.1"])
def test_payload_loads_with_every_reference_relocated(dialect: Dialect) -> None:
    image = build(dialect)
    base = image.layout.text_base + 0x100_0000
    loaded = load_relocatable(payload(image), base_symbols=image.symbols,
                              placement=packed_placement(base))
    text = loaded.section(".text")
    assert text is not None and text.va == base
    code = [int.from_bytes(text.content[i:i + 4], "little") for i in range(0, 28, 4)]
    counter, fn = image.symbols["counter"], image.symbols["fn"]
    # Independent check: capstone decodes the relocated words to the right targets.
    assert _disasm(code[0], base) == f"bl #{fn:#x}"
    assert _disasm(code[1], base + 4) == f"adrp x2, #{counter & ~0xFFF:#x}"
    assert _disasm(code[2], base + 8) == f"ldr x3, [x2, #{counter & 0xFFF}]"
    assert _disasm(code[3], base + 12) == f"add x2, x2, #{counter & 0xFFF}"
    assert _disasm(code[4], base + 16) == f"b #{image.symbols['fast']:#x}"
    data = loaded.section(".data")
    assert data is not None
    assert int.from_bytes(data.content[0:8], "little") == loaded.symbols["new_fn"] == base
    assert int.from_bytes(data.content[8:12], "little", signed=True) == fn - (data.va + 8)
    first, second = loaded.alt_entries(dialect, image.numbering.ncaps, image.numbering)
    assert (first.site, first.cap_name, first.site_len, first.repl_len) == (
        base + 16, "CAP_B", 4, 4)
    section = next(s for s in loaded.sections if s.va <= first.target < s.end)
    word = int.from_bytes(section.content[first.target - section.va:][:4], "little")
    assert _disasm(word, first.target) == f"b #{base:#x}"
    assert second.is_callback and second.target == image.symbols["arm64_update_smccc_conduit"]


def test_payload_with_a_symbol_the_base_lacks_names_section_offset_and_symbol() -> None:
    image = build("xen-4.17")
    symbols = {k: v for k, v in image.symbols.items() if k != "fn"}
    with pytest.raises(ElfError) as info:
        load_relocatable(payload(image), base_symbols=symbols,
                         placement=packed_placement(image.layout.text_base + 0x100_0000))
    assert info.value.code == "RELOC_UNDEFINED_SYMBOL"
    assert (info.value.location.section, info.value.location.offset,
            info.value.location.symbol) == (".text", 0, "fn")


def test_payload_placed_out_of_branch_range_is_a_coded_error() -> None:
    image = build("xen-4.17")
    with pytest.raises(ElfError) as info:
        load_relocatable(payload(image), base_symbols=image.symbols,
                         placement=packed_placement(image.layout.text_base + (1 << 30)))
    assert info.value.code == "RELOC_OUT_OF_RANGE"
    assert info.value.location.section == ".text" and info.value.location.symbol == "fn"


def test_placement_mapping_places_named_sections_and_packs_the_rest() -> None:
    obj = RelocatableObject(
        "m",
        (ObjectSection(".text", "text", bytes(8)), ObjectSection(".data", "data", bytes(8))),
        (ObjectSymbol("here", ".text", 4),),
        (ObjectRelocation(".data", 0, BY_ABS64, "here", 2),),
    )
    loaded = load_relocatable(write_relocatable(obj), base_symbols={},
                              placement={".text": 0x40_0000})
    data = loaded.section(".data")
    assert data is not None and data.va >= 0x40_1000 and data.va % 0x1000 == 0
    assert int.from_bytes(data.content, "little") == 0x40_0006


BY_ABS64 = 257


@pytest.mark.skipif(READELF is None, reason="aarch64-linux-gnu-readelf not installed")
def test_readelf_shows_our_sections_symbols_segments_and_relocations(tmp_path: Path) -> None:
    image = build("xen-4.17")
    exe, obj = tmp_path / "image.elf", tmp_path / "lp.o"
    exe.write_bytes(write_image(image))
    obj.write_bytes(payload(image))
    assert READELF is not None
    shown = subprocess.run([READELF, "-W", "-S", "-s", "-l", str(exe)], check=True,
                           capture_output=True, text=True)
    assert shown.stderr == ""
    for name in (".text", ".altinstr_replacement", ".altinstructions", ".data",
                 ".altpatch.stacks", ".symtab", ".strtab"):
        assert name in shown.stdout
    for symbol in ("__alt_instructions", "__alt_instructions_end", "alt_cb_patch_nops",
                   "fast", "counter"):
        assert f" {symbol}\n" in shown.stdout
    assert "FUNC    GLOBAL DEFAULT    1 fn" in shown.stdout
    assert "LOAD" in shown.stdout and "R E" in shown.stdout and "RW " in shown.stdout
    relocs = subprocess.run([READELF, "-W", "-r", "-s", str(obj)], check=True,
                            capture_output=True, text=True)
    assert relocs.stderr == ""
    for rtype in ("R_AARCH64_CALL26", "R_AARCH64_ADR_PREL_PG_HI21",
                  "R_AARCH64_LDST64_ABS_LO12_NC", "R_AARCH64_ADD_ABS_LO12_NC",
                  "R_AARCH64_JUMP26", "R_AARCH64_PREL32", "R_AARCH64_ABS64"):
        assert rtype in relocs.stdout
    assert "Relocation section '.rela.altinstructions'" in relocs.stdout
    assert "UND arm64_update_smccc_conduit" in relocs.stdout
