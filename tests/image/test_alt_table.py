"""The 12-byte ``.altinstructions`` entry: layout, self-relative offsets, callback marking."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_altpatch.cases.model import DIALECTS
from pytest_altpatch.errors import ElfError
from pytest_altpatch.image.alt_table import (
    cap_field_for,
    decode_alt_table,
    encode_alt_entry,
)


def test_entry_bytes_are_self_relative_offsets_cap_and_lengths() -> None:
    # Hand derivation: entry at 0x1000, site 0x800 -> 0x800 - 0x1000 = -0x800;
    # replacement 0x2000 relative to the second field at 0x1004 -> 0xffc.
    raw = encode_alt_entry(0x1000, 0x800, 0x2000, 5, 8, 8)
    assert raw == bytes.fromhex("00f8ffff" "fc0f0000" "0500" "08" "08")


def test_decode_reads_offsets_relative_to_each_field() -> None:
    raw = struct.pack("<iiHBB", -16, 32, 7, 4, 4) + struct.pack("<iiHBB", 0, 0, 1, 8, 8)
    first, second = decode_alt_table(raw, 0x4000, "linux-4.9", ncaps=10)
    assert (first.site, first.target, first.cap, first.site_len) == (0x4000 - 16, 0x4024, 7, 4)
    assert (second.entry_address, second.site, second.target) == (0x400C, 0x400C, 0x4010)
    assert second.index == 1


@pytest.mark.parametrize(
    ("dialect", "field", "is_callback", "cap"),
    [
        ("linux-6.1", 0x8003, True, 3),  # bit 15 marks a callback, low bits keep the cap
        ("strict", 0x8000, True, 0),
        ("linux-6.1", 0x0003, False, 3),
        ("linux-4.9", 12, True, 12),  # cap field == NCAPS (12) is a callback
        ("linux-4.9", 13, False, 13),  # above NCAPS is just an out-of-range cap
        ("xen-4.17", 12, True, 12),
        ("linux-4.6", 12, False, 12),  # no callbacks at all in 4.6
        ("linux-4.6", 0x8001, False, 0x8001),
    ],
)
def test_callback_marking_per_dialect(dialect: str, field: int, is_callback: bool,
                                      cap: int) -> None:
    raw = struct.pack("<iiHBB", 0, 0, field, 4, 0)
    (entry,) = decode_alt_table(raw, 0, dialect, ncaps=12)  # type: ignore[arg-type]
    assert (entry.is_callback, entry.cap, entry.cap_field) == (is_callback, cap, field)


def test_cap_field_for_callbacks_follows_the_dialect() -> None:
    assert cap_field_for("linux-6.1", 3, is_callback=True, ncaps=40) == 0x8003
    assert cap_field_for("xen-4.17", 3, is_callback=True, ncaps=18) == 18
    with pytest.raises(ValueError, match="no callback"):
        cap_field_for("linux-4.6", 3, is_callback=True, ncaps=30)


def test_truncated_table_is_a_coded_error() -> None:
    with pytest.raises(ElfError) as info:
        decode_alt_table(bytes(13), 0x1000, "linux-6.1", ncaps=3)
    assert info.value.code == "ALT_TABLE_SIZE"


def test_offsets_beyond_s32_are_refused() -> None:
    with pytest.raises(ValueError, match="s32"):
        encode_alt_entry(0, 1 << 31, 0, 0, 4, 4)
    encode_alt_entry(0, (1 << 31) - 1, 0, 0, 4, 4)  # the last reachable byte is fine


@settings(max_examples=150, deadline=None)
@given(
    entry=st.integers(0, (1 << 40) - 1).map(lambda v: v & ~3),
    site_delta=st.integers(-(1 << 31), (1 << 31) - 1),
    target_delta=st.integers(-(1 << 31), (1 << 31) - 1),
    field=st.integers(0, 0xFFFF),
    site_len=st.integers(0, 255),
    repl_len=st.integers(0, 255),
    dialect=st.sampled_from(DIALECTS),
)
def test_decode_inverts_encode(entry: int, site_delta: int, target_delta: int, field: int,
                               site_len: int, repl_len: int, dialect: str) -> None:
    site, target = entry + site_delta, entry + 4 + target_delta
    raw = encode_alt_entry(entry, site, target, field, site_len, repl_len)
    (decoded,) = decode_alt_table(raw, entry, dialect, ncaps=40)  # type: ignore[arg-type]
    mask = (1 << 64) - 1
    assert decoded.site == site & mask and decoded.target == target & mask
    assert (decoded.cap_field, decoded.site_len, decoded.repl_len) == (field, site_len, repl_len)
