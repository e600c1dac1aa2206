"""The 4 KiB translation granule: the page ADRP counts in and the machine maps in.

One constant and one pair of helpers for the whole package; nothing else spells 4096,
``>> 12`` or ``& ~0xfff`` for a page.
"""

from __future__ import annotations

from typing import Final

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PAGE_MASK: Final = PAGE_SIZE - 1


def page_base(address: int) -> int:
    """The base address of the page holding ``address``."""
    return address & ~PAGE_MASK


def page_number(address: int) -> int:
    """The page frame number of ``address`` (its address shifted by PAGE_SHIFT)."""
    return address >> PAGE_SHIFT


def align_up(value: int, alignment: int = PAGE_SIZE) -> int:
    """``value`` rounded up to a multiple of ``alignment`` (a power of two)."""
    return (value + alignment - 1) & ~(alignment - 1)


def is_page_aligned(value: int) -> bool:
    """Whether ``value`` is a multiple of PAGE_SIZE."""
    return not value & PAGE_MASK


__all__ = ["PAGE_MASK", "PAGE_SHIFT", "PAGE_SIZE", "align_up", "is_page_aligned",
           "page_base", "page_number"]
