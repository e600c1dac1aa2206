"""Objects from GNU binutils load exactly as GNU ld links them.

A module-like source with a hand-written ``.altinstructions`` (``.word 661b - .``
PREL32 entries, replacement in ``.pushsection .altinstr_replacement``), assembled by
``aarch64-linux-gnu-as``: our loader must produce the same section bytes as
``aarch64-linux-gnu-ld`` linking it at the same addresses, also after ``ld -r``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pytest_altpatch.image.alt_table import decode_alt_table
from pytest_altpatch.image.elf_reader import load_relocatable
from pytest_altpatch.image.inspect import inspect_elf

AS = shutil.which("aarch64-linux-gnu-as")
LD = shutil.which("aarch64-linux-gnu-ld")
pytestmark = pytest.mark.skipif(AS is None or LD is None,
                                reason="aarch64-linux-gnu-as/ld not installed")

MODULE = """\
    .text
    .globl mod_fn
mod_fn:
    bl ext_fn
    adrp x0, mod_var
    ldr x1, [x0, :lo12:mod_var]
    add x2, x0, :lo12:mod_var
    cbz x1, mod_fn
661: mov x0, #1
662:
    .pushsection .altinstr_replacement, "ax"
663: b ext_fn
664:
    .popsection
    .pushsection .altinstructions, "a"
    .word 661b - .
    .word 663b - .
    .hword 3
    .byte 662b - 661b
    .byte 664b - 663b
    .word 665f - .
    .word alt_cb_patch_nops - .
    .hword 0x8001
    .byte 665f - 665f + 4
    .byte 0
    .popsection
665: nop
    ret
    .data
    .balign 8
mod_var: .quad mod_fn + 8
    .word ext_fn - .
"""
PLACEMENT = {".text": 0x40_0000, ".altinstr_replacement": 0x40_1000,
             ".altinstructions": 0x40_2000, ".data": 0x40_3010}
BASE = {"ext_fn": 0x30_0000, "alt_cb_patch_nops": 0x30_0100}


def _tool(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("toolchain")
    assert AS is not None and LD is not None
    (work / "module.s").write_text(MODULE)
    _tool(AS, "-o", str(work / "module.o"), str(work / "module.s"))
    _tool(LD, "-r", "-o", str(work / "module-r.o"), str(work / "module.o"))
    script = "SECTIONS {\n" + "".join(
        f"  {name} {address:#x} : {{ *({name}) }}\n" for name, address in PLACEMENT.items()
    ) + "}\n"
    (work / "link.ld").write_text(script)
    defsyms = [f"--defsym={name}={value:#x}" for name, value in BASE.items()]
    _tool(LD, "-T", str(work / "link.ld"), *defsyms, "-e", "0", "-o", str(work / "linked.elf"),
          str(work / "module.o"))
    return {name: (work / name).read_bytes() for name in ("module.o", "module-r.o",
                                                          "linked.elf")}


def _ld_sections(linked: bytes) -> dict[str, tuple[int, bytes]]:
    elf = ELFFile(io.BytesIO(linked))
    found: dict[str, tuple[int, bytes]] = {}
    for name in PLACEMENT:
        section = elf.get_section_by_name(name)
        assert section is not None, name
        found[name] = (int(section["sh_addr"]), bytes(section.data()))
    return found


@pytest.mark.parametrize("object_name", ["module.o", "module-r.o"])
def test_gnu_object_relocates_exactly_as_gnu_ld_links_it(built: dict[str, bytes],
                                                         object_name: str) -> None:
    loaded = load_relocatable(built[object_name], base_symbols=BASE, placement=PLACEMENT)
    expected = _ld_sections(built["linked.elf"])
    for name, (address, content) in expected.items():
        section = loaded.section(name)
        assert section is not None, name
        assert (section.va, section.content) == (address, content), name
    assert loaded.symbols["mod_fn"] == PLACEMENT[".text"]


def test_gnu_alt_table_decodes_identically(built: dict[str, bytes]) -> None:
    loaded = load_relocatable(built["module.o"], base_symbols=BASE, placement=PLACEMENT)
    address, table = _ld_sections(built["linked.elf"])[".altinstructions"]
    ours = loaded.alt_entries("linux-6.1", ncaps=40)
    assert ours == decode_alt_table(table, address, "linux-6.1", 40)
    first, second = ours
    assert (first.site, first.target, first.cap, first.site_len, first.repl_len) == (
        PLACEMENT[".text"] + 20, PLACEMENT[".altinstr_replacement"], 3, 4, 4)
    assert (second.is_callback, second.cap, second.target, second.site) == (
        True, 1, BASE["alt_cb_patch_nops"], PLACEMENT[".text"] + 24)


def test_inspect_lists_the_gnu_objects_alternatives(built: dict[str, bytes]) -> None:
    inspection = inspect_elf(built["module.o"], dialect="linux-6.1")
    assert [e.entry.site_len for e in inspection.entries] == [4, 4]
    assert inspection.entries[1].target_name == "alt_cb_patch_nops"
    assert inspection.entries[0].replacement_listing[0].startswith("b ")


def test_objdump_agrees_on_the_relocation_types(built: dict[str, bytes], tmp_path: Path) -> None:
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        pytest.skip("aarch64-linux-gnu-objdump not installed")
    path = tmp_path / "module.o"
    path.write_bytes(built["module.o"])
    shown = subprocess.run([objdump, "-r", str(path)], check=True, capture_output=True,
                           text=True).stdout
    loaded = load_relocatable(built["module.o"], base_symbols=BASE, placement=PLACEMENT)
    for applied in loaded.relocations:
        assert applied.rtype in shown
    assert len(loaded.relocations) == sum(1 for line in shown.splitlines()
                                          if "R_AARCH64_" in line)
