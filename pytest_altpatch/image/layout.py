"""Default link addresses and replacement placement, per dialect.

Where text starts and where replacements go are the dialect's ``text_base`` and
``placement`` (:func:`~pytest_altpatch.dialects.traits`); the offsets are here.

Every address stays below 2**40 (the machine maps VAs below 2**47).  Sections are
page-aligned and far enough apart that the interesting PC-relative cases happen:
data is 32 MiB above text, beyond ADR's +-1 MiB but within ADRP's +-4 GiB and B's
+-128 MiB.  A separate ``.altinstr_replacement`` starts on the first page after text
(Xen's linker script: ``. = ALIGN(PAGE_SIZE)`` then the replacements), so even TBZ
(+-32 KiB) in a replacement can reach text labels of a small case.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from pytest_altpatch.dialects import Dialect, ReplacementPlacement, traits
from pytest_altpatch.image.model import ImageLayout

MIB: Final = 1 << 20

#: Offsets of each region from the text base.
TABLE_OFFSET: Final = 6 * MIB
RODATA_OFFSET: Final = 8 * MIB
DATA_OFFSET: Final = 32 * MIB
STACK_OFFSET: Final = 40 * MIB
HARNESS_OFFSET: Final = 48 * MIB


def default_layout(
    dialect: Dialect, *, placement: ReplacementPlacement | None = None
) -> ImageLayout:
    """The default layout of ``dialect`` (optionally with the other placement)."""
    row = traits(dialect)
    base = row.text_base
    return ImageLayout(
        text_base=base,
        replacement_base=None,
        table_base=base + TABLE_OFFSET,
        rodata_base=base + RODATA_OFFSET,
        data_base=base + DATA_OFFSET,
        stack_base=base + STACK_OFFSET,
        harness_base=base + HARNESS_OFFSET,
        replacement_placement=placement or row.placement,
    )


def rebased(layout: ImageLayout, text_base: int) -> ImageLayout:
    """``layout`` moved so text starts at ``text_base`` (other regions keep offsets)."""
    delta = text_base - layout.text_base
    return replace(
        layout,
        text_base=text_base,
        replacement_base=None if layout.replacement_base is None
        else layout.replacement_base + delta,
        table_base=layout.table_base + delta,
        rodata_base=layout.rodata_base + delta,
        data_base=layout.data_base + delta,
        stack_base=layout.stack_base + delta,
        harness_base=layout.harness_base + delta,
    )


__all__ = [
    "DATA_OFFSET",
    "HARNESS_OFFSET",
    "RODATA_OFFSET",
    "STACK_OFFSET",
    "TABLE_OFFSET",
    "default_layout",
    "rebased",
]
