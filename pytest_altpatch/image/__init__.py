"""The image layer: lay a case out in memory, and read/write ELF64 AArch64.

Public API::

    build_image(case, *, dialect, numbering, layout=None, harness_text=None,
                ncpus=None) -> Image
    build_payload(payload, image, *, file=None) -> RelocatableObject
    default_layout(dialect, *, placement=None) -> ImageLayout
    encode_alt_entry(entry_address, site, target, cap_field, site_len, repl_len) -> bytes
    decode_alt_table(table, table_va, dialect, ncaps, *, numbering=None) -> tuple[AltEntry]
    write_image(image) -> bytes;  write_relocatable(obj) -> bytes
    read_image(data, *, require_table=True) -> ElfImage
    load_relocatable(data, *, base_symbols, placement, undefined=None) -> LoadedObject
    relocate(rtype, contents, place, target) -> bytes   (the recipe table: RECIPES)
    inspect_elf(data, *, dialect=None, numbering=None, base_image=None) -> Inspection
    CALLBACKS (the callback registry with guest code)
"""

from __future__ import annotations

from pytest_altpatch.image.alt_table import (
    ENTRY_SIZE,
    cap_field_for,
    decode_alt_table,
    encode_alt_entry,
)
from pytest_altpatch.image.builder import build_image, extend_numbering
from pytest_altpatch.image.callbacks import CALLBACKS, SMCCC_CONDUIT_SYMBOL, SMCCC_CONDUIT_VALUES
from pytest_altpatch.image.elf_reader import (
    ElfImage,
    load_relocatable,
    packed_placement,
    read_image,
)
from pytest_altpatch.image.elf_writer import write_image, write_relocatable
from pytest_altpatch.image.inspect import Inspection, inspect_elf
from pytest_altpatch.image.layout import default_layout
from pytest_altpatch.image.model import (
    AltEntry,
    Image,
    ImageLayout,
    Section,
    SourceMap,
    StackRegion,
)
from pytest_altpatch.image.objects import LoadedObject, LoadedSection, RelocatableObject
from pytest_altpatch.image.payload import build_payload
from pytest_altpatch.image.relocations import RECIPES, relocate

__all__ = [
    "CALLBACKS",
    "ENTRY_SIZE",
    "RECIPES",
    "SMCCC_CONDUIT_SYMBOL",
    "SMCCC_CONDUIT_VALUES",
    "AltEntry",
    "ElfImage",
    "Image",
    "ImageLayout",
    "Inspection",
    "LoadedObject",
    "LoadedSection",
    "RelocatableObject",
    "Section",
    "SourceMap",
    "StackRegion",
    "build_image",
    "build_payload",
    "cap_field_for",
    "decode_alt_table",
    "default_layout",
    "encode_alt_entry",
    "extend_numbering",
    "inspect_elf",
    "load_relocatable",
    "packed_placement",
    "read_image",
    "relocate",
    "write_image",
    "write_relocatable",
]
