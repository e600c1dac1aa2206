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

from typing import TYPE_CHECKING

from pytest_altpatch.lazy import submodule_exports

if TYPE_CHECKING:  # the same names, imported on first use (pytest_altpatch.lazy)
    from pytest_altpatch.image.alt_table import (
        ENTRY_SIZE,
        cap_field_for,
        decode_alt_table,
        encode_alt_entry,
    )
    from pytest_altpatch.image.builder import build_image, extend_numbering
    from pytest_altpatch.image.callbacks import (
        CALLBACKS,
        SMCCC_CONDUIT_SYMBOL,
        SMCCC_CONDUIT_VALUES,
    )
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

_EXPORTS = {
    "alt_table": ("ENTRY_SIZE", "cap_field_for", "decode_alt_table", "encode_alt_entry"),
    "builder": ("build_image", "extend_numbering"),
    "callbacks": ("CALLBACKS", "SMCCC_CONDUIT_SYMBOL", "SMCCC_CONDUIT_VALUES"),
    "elf_reader": ("ElfImage", "load_relocatable", "packed_placement", "read_image"),
    "elf_writer": ("write_image", "write_relocatable"),
    "inspect": ("Inspection", "inspect_elf"),
    "layout": ("default_layout",),
    "model": ("AltEntry", "Image", "ImageLayout", "Section", "SourceMap", "StackRegion"),
    "objects": ("LoadedObject", "LoadedSection", "RelocatableObject"),
    "payload": ("build_payload",),
    "relocations": ("RECIPES", "relocate"),
}
__getattr__, __dir__ = submodule_exports(__name__, _EXPORTS)

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
