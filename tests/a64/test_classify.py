"""Classification questions, checked against capstone's names for the same words."""

from __future__ import annotations

import pytest

from pytest_altpatch.a64.classify import (
    CACHE_OPS,
    Barrier,
    CacheOp,
    barrier,
    cache_op,
    exception_call,
    is_branch_imm,
    is_cmodx_safe,
    is_simd_fp_literal,
    uses_literal,
)

from .capstone_view import CapstoneView

BRANCHES = [0x14000000, 0x94000000, 0x54000000, 0x5400001A, 0x34000000, 0xB5000000,
            0x36000000, 0x37000000]
LITERALS = [0x10000000, 0x90000000, 0x18000000, 0x58000000, 0x98000000, 0xD8000000,
            0x1C000000, 0x5C000000, 0x9C000000]
OTHERS = [0xD65F03C0, 0xD63F0000, 0xD61F0000, 0xD503201F, 0x8B020020, 0xF9400020]


def test_branch_and_literal_sets_are_disjoint_and_exact() -> None:
    for word in BRANCHES:
        assert is_branch_imm(word) and not uses_literal(word)
    for word in LITERALS:
        assert uses_literal(word) and not is_branch_imm(word)
    for word in OTHERS:  # ret, blr, br, nop, add, ldr (unsigned offset)
        assert not is_branch_imm(word) and not uses_literal(word)


def test_only_v1_literal_loads_are_simd_fp() -> None:
    # ldr s0/d0/q0 literal have V (bit 26) set; every other literal form has it clear.
    simd = [0x1C000000, 0x5C000000, 0x9C000000]
    assert [is_simd_fp_literal(w) for w in LITERALS] == [w in simd for w in LITERALS]
    assert all(bool(w & (1 << 26)) == is_simd_fp_literal(w) for w in LITERALS)
    assert not any(is_simd_fp_literal(w) for w in BRANCHES + OTHERS)


# Each word with capstone's mnemonic; the safe ones are exactly the Arm ARM CMODX list.
CMODX = [
    (0x17FFFFFF, "b", True), (0x97FFFFFF, "bl", True), (0xD4200020, "brk", True),
    (0xD4000022, "hvc", True), (0xD5033FDF, "isb", True), (0xD503201F, "nop", True),
    (0xD4000043, "smc", True), (0xD4000061, "svc", True),
    (0x54000000, "b.eq", False), (0xB4000000, "cbz", False), (0xD503203F, "yield", False),
    (0xD503245F, "bti", False), (0xD5033B9F, "dsb", False), (0xD65F03C0, "ret", False),
    (0xD4400000, "hlt", False), (0x10000000, "adr", False),
]


@pytest.mark.parametrize(("word", "mnemonic", "safe"), CMODX, ids=[c[1] for c in CMODX])
def test_cmodx_safe_set_is_exactly_the_architected_list(
    word: int, mnemonic: str, safe: bool, cs: CapstoneView
) -> None:
    assert cs.decode(word, 0)[0] == mnemonic
    assert is_cmodx_safe(word) is safe


@pytest.mark.parametrize("kind", ["dsb", "dmb", "isb"])
@pytest.mark.parametrize("crm", range(16))
def test_barrier_option_agrees_with_capstone(kind: str, crm: int, cs: CapstoneView) -> None:
    # 1101010100 0 00 011 0011 CRm op2 11111; op2 = 100 DSB, 101 DMB, 110 ISB
    op2 = {"dsb": 4, "dmb": 5, "isb": 6}[kind]
    word = 0xD503301F | crm << 8 | op2 << 5
    mnemonic, op_str, _ = cs.decode(word, 0)
    found = barrier(word)
    if mnemonic != kind:  # ssbb, pssbb, dfb share DSB's encoding space
        assert found is None
        return
    # Unnamed options are "#N" in decimal; capstone prints them in hex from 10 up.
    expected = f"#{int(op_str[1:], 0)}" if op_str.startswith("#") else (op_str or "sy")
    assert found == Barrier(kind, expected)  # type: ignore[arg-type]


def test_non_barriers_are_not_barriers() -> None:
    assert barrier(0xD503201F) is None
    assert barrier(0xD50330FF) is None  # sb


def test_every_cache_op_agrees_with_capstone(cs: CapstoneView) -> None:
    for (op1, crn, crm, op2), name in CACHE_OPS.items():
        word = 0xD5080000 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | 7
        assert cache_op(word) == CacheOp(name, 7)
        mnemonic, op_str, _ = cs.decode(word, 0)
        if name != "dc cvadp":  # capstone 5 prints DC CVADP as a generic sys
            assert f"{mnemonic} {op_str}".startswith(name)


def test_other_sys_and_non_sys_words_are_not_cache_ops() -> None:
    assert cache_op(0xD50B7E27) == CacheOp("dc civac", 7)  # op1=3 CRn=7 CRm=14 op2=1
    assert cache_op(0xD5087E07) is None  # op1=0 CRn=7 CRm=14 op2=0: not an operation
    assert cache_op(0xD508871F) is None  # tlbi vmalle1 (CRn=8)
    assert cache_op(0xD503201F) is None


@pytest.mark.parametrize(("word", "call"), [
    (0xD4000001 | 0xFFFF << 5, ("svc", 0xFFFF)),
    (0xD4000002 | 0x12 << 5, ("hvc", 0x12)),
    (0xD4000003, ("smc", 0)),
    (0xD4200000 | 0x800 << 5, ("brk", 0x800)),
    (0xD4400000, None),  # hlt
    (0xD503201F, None),
])
def test_exception_call_decodes_imm16(word: int, call: tuple[str, int] | None,
                                      cs: CapstoneView) -> None:
    assert exception_call(word) == call
    if call is not None:
        mnemonic, op_str, _ = cs.decode(word, 0)
        assert (mnemonic, int(op_str.lstrip("#"), 16)) == call
