"""MIDR matching: ranges, REVIDR fixes, several entries per capability, masks."""

from __future__ import annotations

from pytest_altpatch.cases.model import (
    MIDR_ARCHITECTURE_MASK,
    MIDR_IMPLEMENTER_MASK,
    Catalog,
    Erratum,
    MidrRange,
    RevidrFix,
    midr_model,
    midr_rv,
)

# Cortex-A57: implementer 0x41, part 0xD07 (hand-computed: 0x41 << 24 | 0xF << 16 | 0xD07 << 4).
A57 = 0x410FD070
A53 = 0x410FD030


def test_model_value_is_computed_from_fields() -> None:
    assert midr_model(0x41, 0xD07) == A57


def test_range_end_is_inclusive_and_next_revision_is_out() -> None:
    r0p0_to_r1p2 = MidrRange(A57, midr_rv(0, 0), midr_rv(1, 2))
    assert r0p0_to_r1p2.contains(0x411FD072)  # r1p2: the real A57 r1p2 MIDR
    assert not r0p0_to_r1p2.contains(0x411FD073)  # r1p3
    assert r0p0_to_r1p2.contains(A57)  # r0p0, the start


def test_r0p15_sorts_below_r1p0() -> None:
    from_r1p0 = MidrRange(A57, midr_rv(1, 0), midr_rv(0xF, 0xF))
    assert not from_r1p0.contains(A57 | 0xF)  # r0p15
    assert from_r1p0.contains(A57 | 1 << 20)  # r1p0
    up_to_r0p15 = MidrRange(A57, 0, midr_rv(0, 15))
    assert up_to_r0p15.contains(A57 | 0xF)
    assert not up_to_r0p15.contains(A57 | 1 << 20)


def test_revidr_fix_excludes_only_that_revision_with_that_bit() -> None:
    fixed = MidrRange(A53, 0, midr_rv(0, 4), fixed=(RevidrFix(midr_rv(0, 4), 0x100),))
    assert not fixed.contains(A53 | 4, revidr=0x100)
    assert not fixed.contains(A53 | 4, revidr=0x300)  # any bit of the mask
    assert fixed.contains(A53 | 4, revidr=0x200)  # another bit is not the fix
    assert fixed.contains(A53 | 4, revidr=0)
    assert fixed.contains(A53 | 3, revidr=0x100)  # the fix names r0p4 only


def test_catalog_843419_uses_revidr_bit_8(catalog: Catalog) -> None:
    erratum = catalog.errata["arm-843419"]
    assert erratum.affects(0x410FD034, revidr=0)
    assert not erratum.affects(0x410FD034, revidr=1 << 8)
    assert not erratum.affects(0x410FD035)  # r0p5 is past the range


def test_any_of_several_entries_turns_the_capability_on(catalog: Catalog) -> None:
    erratum = catalog.errata["arm-843419"]
    brahma_b53_r0p0 = 0x420F1000
    assert len(erratum.matches) == 2
    assert erratum.affects(brahma_b53_r0p0)
    assert not erratum.affects(brahma_b53_r0p0 | 1)  # Brahma r0p1 is not listed
    multi = Erratum("x", "x", "CAP", "local-cpu-erratum",
                    (MidrRange(A57, 0, 0), MidrRange(A53, 0, midr_rv(0, 2))))
    assert multi.affects(A53 | 2) and multi.affects(A57) and not multi.affects(A57 | 1)


def test_architecture_field_must_match() -> None:
    every_a57 = MidrRange(A57)
    assert every_a57.contains(A57 | 0x00300002)
    # Same implementer and part, architecture field 0x0 instead of 0xF.
    assert not every_a57.contains(A57 & ~MIDR_ARCHITECTURE_MASK)
    assert not every_a57.contains((A57 & ~MIDR_IMPLEMENTER_MASK) | 0x42 << 24)


def test_kryo_part_family_matches_any_0x2xx_part(catalog: Catalog) -> None:
    erratum = catalog.errata["qcom-falkor-e1003"]
    kryo_entry = erratum.matches[1]
    assert kryo_entry.model_mask == 0xFF0FF000  # implementer, architecture, part & 0xf00
    for part in (0x200, 0x201, 0x205, 0x211, 0x2FF):
        assert erratum.affects(midr_model(0x51, part) | 1 << 20 | 3)
    assert not erratum.affects(midr_model(0x51, 0x300))
    assert not erratum.affects(midr_model(0x51, 0xC00))  # Falkor (not V1) is not listed
    assert erratum.affects(midr_model(0x51, 0x800))  # Falkor V1 r0p0
    assert not erratum.affects(midr_model(0x51, 0x800) | 1)  # Falkor V1 r0p1
