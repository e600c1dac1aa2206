"""Mutated ELF bytes only ever produce coded ELF errors, never another exception.

Deterministic: each case uses ``random.Random(seed)`` and the seed is in the test id.
Mutations favour the headers, section table and symbol/relocation tables, where a
parser can be led astray (sizes, offsets, counts, indices).
"""

from __future__ import annotations

import random
import struct

import pytest
from conftest import make_case, numbering_for

from pytest_altpatch.cases.model import PayloadSpec, SourceBlock
from pytest_altpatch.errors import ElfError, Location
from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.elf_reader import load_relocatable, packed_placement, read_image
from pytest_altpatch.image.elf_writer import write_image, write_relocatable
from pytest_altpatch.image.inspect import inspect_elf
from pytest_altpatch.image.payload import build_payload

_IMAGE = build_image(
    make_case('fn: ALTERNATIVE("nop", "b fn", CAP_A)\n ALTERNATIVE_CB("nop", CAP_B, '
              "alt_cb_patch_nops)\n ret\n", data="v: .quad fn\n"),
    dialect="linux-6.1", numbering=numbering_for("linux-6.1"),
)
EXE = write_image(_IMAGE)
OBJ = write_relocatable(build_payload(
    PayloadSpec("p", SourceBlock('g: bl fn\n adrp x0, v\n ldr x1, [x0, :lo12:v]\n'
                                 ' ALTERNATIVE("nop", "b g", CAP_A)\n ret\n',
                                 Location(file="p.yaml", line=1)),
                SourceBlock("w: .quad g\n .word fn - .\n", Location(line=9))),
    _IMAGE,
))
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF)


def _hot_offsets(data: bytes) -> list[int]:
    """Header, section headers, and the bodies of symtab/rela sections."""
    shoff, shnum = struct.unpack_from("<Q", data, 0x28)[0], struct.unpack_from("<H", data, 0x3C)[0]
    offsets = list(range(64)) + list(range(shoff, min(len(data), shoff + 64 * shnum)))
    for index in range(shnum):
        sh_type, _, _, sh_offset, sh_size = struct.unpack_from("<IIQQQQ", data,
                                                               shoff + 64 * index + 4)[:5]
        if sh_type in (2, 4):  # symtab, rela
            offsets += range(sh_offset, min(len(data), sh_offset + sh_size))
    return offsets


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    hot = _hot_offsets(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if choice < 0.1 and len(out) > 8:
            del out[rng.randrange(8, len(out)):]
            hot = [o for o in hot if o < len(out)] or [0]
            continue
        where = rng.choice(hot) if rng.random() < 0.85 else rng.randrange(len(out))
        if where >= len(out):
            continue
        if choice < 0.5:
            out[where] = rng.choice(INTERESTING)
        elif choice < 0.8:
            out[where] ^= 1 << rng.randrange(8)
        else:
            size = rng.choice((2, 4, 8))
            value = rng.choice((0, 1, 0xFFFF, 0x7FFFFFFF, (1 << 64) - 1, len(data), 1 << 40))
            out[where:where + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return bytes(out)


def _exercise(data: bytes) -> None:
    for attempt in (
        lambda: read_image(data),
        lambda: load_relocatable(data, base_symbols=_IMAGE.symbols,
                                 placement=packed_placement(_IMAGE.layout.text_base + 0x100000)),
        lambda: inspect_elf(data),
    ):
        try:
            attempt()
        except ElfError as error:
            assert error.code.startswith(("ELF_", "RELOC_", "ALT_TABLE")), error.code


@pytest.mark.parametrize("seed", range(60))
def test_mutated_image_raises_only_coded_elf_errors(seed: int) -> None:
    _exercise(mutate(EXE, random.Random(seed)))


@pytest.mark.parametrize("seed", range(60))
def test_mutated_object_raises_only_coded_elf_errors(seed: int) -> None:
    _exercise(mutate(OBJ, random.Random(1000 + seed)))


@pytest.mark.parametrize("data", [b"", b"\x7fELF", b"\x7fELF\x02\x01\x01" + bytes(57),
                                  bytes(64), EXE[:100], OBJ[: len(OBJ) // 2]])
def test_garbage_and_truncations_are_malformed(data: bytes) -> None:
    with pytest.raises(ElfError) as info:
        read_image(data)
    assert info.value.code in ("ELF_MALFORMED", "ELF_WRONG_MACHINE")
