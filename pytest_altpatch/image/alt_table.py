"""The ``.altinstructions`` entry: 12 bytes, encoded and decoded per dialect.

Layout (identical in Linux >= 4.6 and Xen): ``s32`` offset to the site and ``s32``
offset to the replacement (or callback function), each relative to the address of
the field itself; ``u16`` capability field; ``u8`` site length; ``u8`` replacement
length; little-endian, no padding.  What the capability field means differs:

* ``bit15``: a callback sets bit 15 and keeps its real capability in the low bits
  (Linux >= 6.1; also the project's ``strict`` dialect);
* ``ncaps``: a callback stores ``NCAPS`` itself and has no capability of its own
  (Linux 4.17 to 6.0, Xen);
* ``none``: there are no callback entries (Linux 4.6).

Which marking a dialect uses is its :func:`~pytest_altpatch.dialects.traits` row's
``callbacks``.
"""

from __future__ import annotations

import struct
from typing import Final

from pytest_altpatch.cases.model import CapNumbering
from pytest_altpatch.dialects import CB_BIT, Dialect, traits
from pytest_altpatch.errors import ElfError, Location
from pytest_altpatch.image.model import AltEntry

ENTRY_SIZE: Final = 12
_ENTRY: Final = struct.Struct("<iiHBB")
_S32_MIN: Final = -(1 << 31)
_S32_MAX: Final = (1 << 31) - 1


def offset_fits(entry_field_address: int, target: int) -> bool:
    """Whether ``target`` is reachable as an s32 offset from a field at that address."""
    return _S32_MIN <= target - entry_field_address <= _S32_MAX


def cap_field_for(
    dialect: Dialect, cap: int, *, is_callback: bool, ncaps: int
) -> int:
    """The u16 capability field for an entry (raises ValueError if the dialect can't).

    ``cap`` is ignored for callbacks in ``ncaps`` dialects, where the field is NCAPS.
    """
    marking = traits(dialect).callbacks
    if not is_callback:
        return cap
    if marking == "bit15":
        return CB_BIT | cap
    if marking == "ncaps":
        return ncaps
    raise ValueError(f"dialect {dialect} has no callback alternatives")


def encode_alt_entry(
    entry_address: int,
    site: int,
    target: int,
    cap_field: int,
    site_len: int,
    repl_len: int,
) -> bytes:
    """The 12 bytes of an entry placed at ``entry_address`` (ValueError if unencodable)."""
    site_offset = site - entry_address
    target_offset = target - (entry_address + 4)
    for what, offset in (("site", site_offset), ("replacement", target_offset)):
        if not _S32_MIN <= offset <= _S32_MAX:
            raise ValueError(f"{what} offset {offset:#x} does not fit in s32")
    if not 0 <= cap_field <= 0xFFFF:
        raise ValueError(f"capability field {cap_field} does not fit in u16")
    for what, length in (("site", site_len), ("replacement", repl_len)):
        if not 0 <= length <= 0xFF:
            raise ValueError(f"{what} length {length} does not fit in u8")
    return _ENTRY.pack(site_offset, target_offset, cap_field, site_len, repl_len)


def split_cap_field(dialect: Dialect, cap_field: int, ncaps: int) -> tuple[int, bool]:
    """``(cap, is_callback)`` for a raw capability field, per the dialect's marking."""
    marking = traits(dialect).callbacks
    if marking == "bit15":
        return cap_field & ~CB_BIT, bool(cap_field & CB_BIT)
    if marking == "ncaps":
        return cap_field, cap_field == ncaps
    return cap_field, False


def decode_alt_entry(
    raw: bytes,
    entry_address: int,
    dialect: Dialect,
    ncaps: int,
    *,
    index: int = 0,
    numbering: CapNumbering | None = None,
) -> AltEntry:
    """Decode one 12-byte entry that sits at ``entry_address``."""
    if len(raw) != ENTRY_SIZE:
        raise ElfError(
            "ALT_TABLE_SIZE",
            f"an alternatives entry is {ENTRY_SIZE} bytes, not {len(raw)}",
            location=Location(site=index, address=entry_address),
        )
    site_offset, target_offset, cap_field, site_len, repl_len = _ENTRY.unpack(raw)
    cap, is_callback = split_cap_field(dialect, cap_field, ncaps)
    cap_name = None if numbering is None or (is_callback and cap == ncaps) else (
        numbering.name(cap)
    )
    return AltEntry(
        index=index,
        entry_address=entry_address,
        site=(entry_address + site_offset) & ((1 << 64) - 1),
        target=(entry_address + 4 + target_offset) & ((1 << 64) - 1),
        cap_field=cap_field,
        cap=cap,
        cap_name=cap_name,
        is_callback=is_callback,
        site_len=site_len,
        repl_len=repl_len,
    )


def decode_alt_table(
    table: bytes,
    table_va: int,
    dialect: Dialect,
    ncaps: int,
    *,
    numbering: CapNumbering | None = None,
) -> tuple[AltEntry, ...]:
    """Decode a whole table placed at ``table_va``.

    Raises :class:`ElfError` ``ALT_TABLE_SIZE`` when the size is not a multiple of 12.
    """
    if len(table) % ENTRY_SIZE:
        raise ElfError(
            "ALT_TABLE_SIZE",
            f"alternatives table of {len(table)} bytes is not a multiple of {ENTRY_SIZE}",
            location=Location(address=table_va, section=".altinstructions"),
        )
    return tuple(
        decode_alt_entry(
            table[offset:offset + ENTRY_SIZE],
            table_va + offset,
            dialect,
            ncaps,
            index=offset // ENTRY_SIZE,
            numbering=numbering,
        )
        for offset in range(0, len(table), ENTRY_SIZE)
    )


__all__ = [
    "ENTRY_SIZE",
    "cap_field_for",
    "decode_alt_entry",
    "decode_alt_table",
    "encode_alt_entry",
    "offset_fits",
    "split_cap_field",
]
