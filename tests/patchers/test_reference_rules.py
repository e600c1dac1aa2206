"""The reference patcher's rules, one test per rule, on a recording fake context.

Every expected word below is derived by hand from the Arm ARM encodings:
  B      0x14000000 | imm26            BL  0x94000000 | imm26
  B.cond 0x54000000 | imm19 << 5 | cond
  CBZ X  0xB4000000 | imm19 << 5 | Rt
  TBZ    0x36000000 | b5 << 31 | b40 << 19 | imm14 << 5 | Rt
  ADRP   0x90000000 | immlo << 29 | immhi << 5 | Rd   (imm = page delta >> 12)
  ADR    0x10000000 | immlo << 29 | immhi << 5 | Rd   (imm = byte delta)
  LDR X literal 0x58000000 | imm19 << 5 | Rt
with immN = byte offset / 4 (branches, literals).
"""

from __future__ import annotations

import struct

import pytest
from fake_context import FakeContext, FakeMemory

from pytest_altpatch.errors import PatchError
from pytest_altpatch.patchers.contract import AltRegion, PatchEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher

TEXT = 0x40000
SITE = TEXT + 0x100
REPL = 0x80000
TABLE = 0xC0000
SYNC = 0xD0000
CB_ADDR = 0xE0000
ALIAS_OFFSET = 0x1000000
NOP = 0xD503201F
NCAPS = 8

Entry = tuple[int, int, int, int, int]  # site, target, cap field, site_len, repl_len


def _run(dialect: str, entries: list[Entry], words: dict[int, int], caps: set[int],
         *, boot_caps: frozenset[int] = frozenset(), alias: bool = True,
         cap_names: dict[int, str] | None = None) -> tuple[FakeMemory, FakeContext]:
    memory = FakeMemory(TEXT, TEXT + 0x1000, ALIAS_OFFSET if alias else 0)
    memory.words.update(words)
    table = b""
    for index, (site, target, cap, site_len, repl_len) in enumerate(entries):
        entry_va = TABLE + 12 * index
        table += struct.pack("<iiHBB", site - entry_va, target - (entry_va + 4), cap, site_len,
                             repl_len)
    memory.load(TABLE, table)
    env = PatchEnvironment(
        dialect=dialect,
        region=AltRegion(TABLE, TABLE + len(table), TEXT, TEXT + 0x1000,
                         ALIAS_OFFSET if alias else None, text_phys=0x200000),
        caps=frozenset(caps), boot_caps=boot_caps, ncaps=NCAPS, ncpus=1, sync_va=SYNC,
        dcache_line=64, icache_line=64, callbacks={CB_ADDR: "alt_cb_patch_nops"},
        cap_names=cap_names or {},
    )
    ctx = FakeContext(cpu=0, memory=memory)
    patcher = ReferencePatcher(dialect)
    patcher.apply_boot_alternatives(ctx, env)
    patcher.apply_alternatives_all(ctx, env)
    return memory, ctx


def _site_words(memory: FakeMemory, count: int = 1, site: int = SITE) -> list[int]:
    return [memory.words.get(site + 4 * i, 0) for i in range(count)]


def test_entry_applies_only_when_its_cap_is_on() -> None:
    words = {SITE: NOP, REPL: 0xD503203F}  # yield
    off, _ = _run("linux-6.1", [(SITE, REPL, 3, 4, 4)], words, caps={1})
    on, _ = _run("linux-6.1", [(SITE, REPL, 3, 4, 4)], words, caps={3})
    assert _site_words(off) == [NOP] and _site_words(on) == [0xD503203F]


@pytest.mark.parametrize("dialect", ["linux-4.6", "linux-4.9", "linux-6.1", "xen-4.17", "strict"])
def test_cap_at_or_above_ncaps_never_applies(dialect: str) -> None:
    words = {SITE: NOP, REPL: 0xD503203F}
    memory, _ = _run(dialect, [(SITE, REPL, NCAPS + 1, 4, 4)], words, caps={NCAPS + 1})
    assert _site_words(memory) == [NOP]


def test_length_mismatch_is_refused_with_site_index_and_address() -> None:
    words = {SITE: NOP, REPL: NOP}
    with pytest.raises(PatchError) as exc:
        _run("linux-6.1", [(SITE, REPL, 2, 4, 4), (SITE + 8, REPL, 2, 8, 4)], words, caps={2})
    assert exc.value.code == "LENGTH_MISMATCH"
    assert (exc.value.location.site, exc.value.location.address) == (1, SITE + 8)


def test_callback_with_replacement_length_is_refused() -> None:
    with pytest.raises(PatchError) as exc:
        _run("linux-6.1", [(SITE, CB_ADDR, 0x8000 | 2, 4, 4)], {SITE: 0}, caps={2})
    assert exc.value.code == "CALLBACK_LENGTH"


def test_site_length_gives_number_of_instructions_written_through_the_alias() -> None:
    words = {REPL: 0xD503203F, REPL + 4: 0xD503207F, REPL + 8: 0xAAAAAAAA}
    memory, ctx = _run("linux-6.1", [(SITE, REPL, 2, 8, 8)], words, caps={2})
    assert _site_words(memory, 3) == [0xD503203F, 0xD503207F, 0]
    writes = [va for op, va in ctx.ops if op == "write" and va != SYNC]
    assert writes == [SITE + ALIAS_OFFSET, SITE + 4 + ALIAS_OFFSET]
    assert memory.forbidden_writes == []


@pytest.mark.parametrize(
    ("name", "in_replacement", "at_site"),
    [
        # target REPL + 0x1000; from SITE the offset is 0x81000 - 0x40100 = 0x40F00 -> 0x103C0
        ("b", 0x14000400, 0x140103C0),
        ("bl", 0x94000400, 0x940103C0),
        ("b.ne", 0x54008001, 0x54207801),
        ("cbz x3", 0xB4008003, 0xB4207803),
    ],
)
def test_external_branch_is_retargeted_to_the_same_absolute_target(
    name: str, in_replacement: int, at_site: int
) -> None:
    memory, _ = _run("linux-6.1", [(SITE, REPL, 2, 4, 4)], {REPL: in_replacement}, caps={2})
    assert _site_words(memory) == [at_site], name


def test_external_tbz_is_retargeted() -> None:
    # site 0x40200, replacement 0x40800, target 0x40900: imm14 0x40 -> 0x1C0 (0x700 / 4)
    site, repl = TEXT + 0x200, TEXT + 0x800
    memory, _ = _run("linux-6.1", [(site, repl, 2, 4, 4)], {repl: 0x36280802}, caps={2})
    assert _site_words(memory, site=site) == [0x36283802]


def test_internal_branch_and_branch_to_end_of_block_are_not_relocated() -> None:
    # word 0: b .+8 (end of the 8-byte block, inclusive bound); word 1: b .-4 (internal)
    words = {REPL: 0x14000002, REPL + 4: 0x17FFFFFF}
    memory, _ = _run("linux-6.1", [(SITE, REPL, 2, 8, 8)], words, caps={2})
    assert _site_words(memory, 2) == [0x14000002, 0x17FFFFFF]


ADRP_IN_REPL = 0xF0000500  # adrp x0, 0x123000 at 0x80000: imm 0xA3, immlo 3, immhi 0x28
ADRP_AT_SITE = 0xF0000700  # from page 0x40000: imm 0xE3, immlo 3, immhi 0x38


@pytest.mark.parametrize(("dialect", "expected"), [
    ("linux-4.6", ADRP_IN_REPL), ("xen-4.17", ADRP_IN_REPL),
    ("linux-4.9", ADRP_AT_SITE), ("linux-6.1", ADRP_AT_SITE), ("strict", ADRP_AT_SITE),
])
def test_adrp_is_retargeted_by_pages_only_where_the_dialect_does(dialect: str,
                                                                 expected: int) -> None:
    memory, _ = _run(dialect, [(SITE, REPL, 2, 4, 4)], {REPL: ADRP_IN_REPL}, caps={2},
                     alias=dialect != "xen-4.17")
    assert _site_words(memory) == [expected]


@pytest.mark.parametrize("literal", [0x10000081, 0x58000102])  # adr x1, .+16; ldr x2, .+32
def test_literal_in_replacement_is_refused_from_linux_4_9(literal: int) -> None:
    with pytest.raises(PatchError) as exc:
        _run("linux-4.9", [(SITE, REPL, 2, 4, 4)], {REPL: literal}, caps={2})
    assert exc.value.code == "LITERAL_IN_REPLACEMENT"
    for dialect in ("linux-4.6", "xen-4.17"):
        memory, _ = _run(dialect, [(SITE, REPL, 2, 4, 4)], {REPL: literal}, caps={2},
                         alias=dialect != "xen-4.17")
        assert _site_words(memory) == [literal]


# LDR (literal, SIMD&FP) = opc(31:30) 011 V=1 00 imm19 Rt: S 0x1C000000, D 0x5C000000,
# Q 0x9C000000.  ldr d3, .+8 = 0x5C000000 | 2 << 5 | 3 = 0x5C000043;
# ldr q1, .+16 = 0x9C000000 | 4 << 5 | 1 = 0x9C000081; ldr s0, .+4 = 0x1C000020.
@pytest.mark.parametrize("literal", [0x1C000020, 0x5C000043, 0x9C000081])
def test_simd_fp_literal_is_copied_by_linux_and_refused_by_strict(literal: int) -> None:
    for dialect in ("linux-4.9", "linux-6.1"):
        memory, _ = _run(dialect, [(SITE, REPL, 2, 4, 4)], {REPL: literal}, caps={2})
        assert _site_words(memory) == [literal]
    with pytest.raises(PatchError) as exc:
        _run("strict", [(SITE, REPL, 2, 4, 4)], {REPL: literal}, caps={2})
    assert exc.value.code == "LITERAL_IN_REPLACEMENT"


def test_out_of_range_retarget_truncates_in_linux_and_is_an_error_in_strict() -> None:
    # tbz w2, #5 at 0x80000 to 0x80100; from SITE the offset 0x40000 needs 19 bits:
    # Linux masks imm14 = (0x40000 >> 2) & 0x3FFF = 0.
    memory, _ = _run("linux-6.1", [(SITE, REPL, 2, 4, 4)], {REPL: 0x36280802}, caps={2})
    assert _site_words(memory) == [0x36280002]
    with pytest.raises(PatchError) as exc:
        _run("strict", [(SITE, REPL, 2, 4, 4)], {REPL: 0x36280802}, caps={2})
    assert exc.value.code == "BRANCH_OUT_OF_RANGE" and exc.value.location.address == SITE


def test_linux_6_1_callback_applies_only_if_its_cap_is_on() -> None:
    entry = (SITE, CB_ADDR, 0x8000 | 2, 8, 0)
    off, _ = _run("linux-6.1", [entry], {SITE: 1, SITE + 4: 2}, caps={3})
    on, _ = _run("linux-6.1", [entry], {SITE: 1, SITE + 4: 2}, caps={2})
    assert _site_words(off, 2) == [1, 2] and _site_words(on, 2) == [NOP, NOP]


def test_xen_callback_is_marked_by_ncaps_and_unconditional() -> None:
    memory, ctx = _run("xen-4.17", [(SITE, CB_ADDR, NCAPS, 4, 0)], {SITE: 1}, caps=set(),
                       alias=False)
    assert _site_words(memory) == [NOP]
    assert _maintenance(ctx)[0][0] == "vmap" and _maintenance(ctx)[-1][0] == "vunmap"


def test_two_pass_patches_boot_caps_first_and_never_twice() -> None:
    words = {REPL: 0xD503203F, REPL + 4: 0xD503207F}
    entries = [(SITE, REPL, 1, 4, 4), (SITE + 4, REPL + 4, 2, 4, 4)]
    memory, ctx = _run("linux-6.1", entries, words, caps={1, 2}, boot_caps=frozenset({1}))
    writes = [va - ALIAS_OFFSET for op, va in ctx.ops if op == "write" and va != SYNC]
    assert writes == [SITE, SITE + 4]  # one write each: boot pass, then system pass
    assert _site_words(memory, 2) == [0xD503203F, 0xD503207F]


def _maintenance(ctx: FakeContext) -> list[tuple[str, object]]:
    return [op for op in ctx.ops if op[0] not in ("write",)]


def test_linux_6_1_cleans_each_site_then_invalidates_all_once() -> None:
    _, ctx = _run("linux-6.1", [(SITE, REPL, 2, 4, 4)], {REPL: NOP}, caps={2})
    # The (empty) boot pass ends with the same global sequence, as the kernel's does.
    sync = [("dsb", "ish"), ("ic ialluis", None), ("dsb", "ish"), ("isb", None)]
    assert _maintenance(ctx) == [*sync, ("dc civac", SITE), *sync]


def test_linux_4_9_flushes_each_site_and_uses_civac_with_a53_cache_errata() -> None:
    _, plain = _run("linux-4.9", [(SITE, REPL, 2, 4, 4)], {REPL: NOP}, caps={2})
    assert _maintenance(plain) == [("dc cvau", SITE), ("dsb", "ish"), ("ic ivau", SITE),
                                   ("dsb", "ish"), ("isb", None)]
    _, a53 = _run("linux-4.9", [(SITE, REPL, 2, 4, 4)], {REPL: NOP}, caps={0, 2},
                  cap_names={0: "ARM64_WORKAROUND_CLEAN_CACHE"})
    assert _maintenance(a53)[0] == ("dc civac", SITE)


def test_xen_maps_its_alias_cleans_per_site_then_invalidates() -> None:
    _, ctx = _run("xen-4.17", [(SITE, REPL, 2, 4, 4)], {REPL: NOP}, caps={2}, alias=False)
    assert _maintenance(ctx) == [("vmap", 0x200000), ("dsb", "sy"), ("dc civac", SITE),
                                 ("dsb", "sy"), ("ic ialluis", None), ("dsb", "ish"),
                                 ("isb", None), ("vunmap", 0x7000_0000)]


def test_waiting_cpus_spin_on_the_flag_then_synchronise() -> None:
    memory = FakeMemory(TEXT, TEXT + 0x1000, ALIAS_OFFSET)
    memory.words[SYNC] = 1
    env = PatchEnvironment("linux-6.1", AltRegion(TABLE, TABLE, TEXT, TEXT + 0x1000,
                                                  ALIAS_OFFSET, 0),
                           frozenset(), frozenset(), NCAPS, 2, SYNC, 64, 64)
    ctx = FakeContext(cpu=1, memory=memory)
    ReferencePatcher("linux-6.1").apply_alternatives_all(ctx, env)
    assert ctx.ops == [("isb", None)]


def test_unknown_dialect_is_a_coded_error() -> None:
    with pytest.raises(PatchError) as exc:
        ReferencePatcher("linux-9.9")
    assert exc.value.code == "PATCHER_UNKNOWN"
