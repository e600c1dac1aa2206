"""The instruction-fetch rules, exercised by tiny guest programs on the machine."""

from __future__ import annotations

import pytest

from pytest_altpatch.a64.granule import PAGE_SIZE
from pytest_altpatch.machine import Machine

from . import rig
from .a64words import Program

FULL = ("dc", "dsb", "ic", "dsb", "isb")
PATCHER = rig.TEXT_VA + PAGE_SIZE
WAITER = rig.TEXT_VA + 2 * PAGE_SIZE


def run_patch(built: Machine, steps: tuple[str, ...], *, isb_on_waiter: bool = True,
              clean: str = "cvau", targets: tuple[int, ...] = (rig.FN_VA,),
              new: int = rig.NEW_WORD) -> tuple[int, list[str]]:
    """CPU0 patches fn through a vmap alias with ``steps`` and sets the flag; CPU1 waits
    for the flag and calls fn.  Returns CPU1's result and the finding codes."""
    alias = built.vmap(rig.FN_PA, 0x100)
    rig.load(built, rig.patcher(PATCHER, steps, alias=alias, clean=clean, targets=targets,
                                new=new))
    rig.load(built, rig.waiter(WAITER, isb=isb_on_waiter))
    built.start_cpu(0, PATCHER, sp=rig.stack(0))
    built.start_cpu(1, WAITER, sp=rig.stack(1))
    result = built.run()
    assert result.reason == "stopped"
    assert [c.state for c in result.cpus] == ["done", "done"]
    return int(result.cpus[1].result), [f.code for f in result.findings]  # type: ignore[call-overload]


def stale(built: Machine) -> list[str]:
    return [str(f.detail["missing"]) for f in built.findings if f.code == "stale-fetch"]


def test_full_sequence_makes_the_new_word_visible_without_findings() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)])
    value, codes = run_patch(built, FULL)
    assert value == 2
    assert codes == []


@pytest.mark.parametrize(
    ("steps", "missing"),
    [
        (("dsb", "ic", "dsb", "isb"), "clean"),
        (("dc", "ic", "dsb", "isb"), "dsb-after-clean"),
        (("dc", "dsb", "dsb", "isb"), "invalidate"),
        (("dc", "dsb", "ic", "isb"), "dsb-after-invalidate"),
    ],
    ids=["no-clean", "no-dsb-after-clean", "no-invalidate", "no-dsb-after-invalidate"],
)
def test_each_missing_writer_step_is_a_stale_fetch_naming_it(
    steps: tuple[str, ...], missing: str
) -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)])
    run_patch(built, steps)
    assert stale(built) == [missing]
    finding = next(f for f in built.findings if f.code == "stale-fetch")
    assert finding.cpu == 1
    assert finding.address == rig.FN_VA
    assert finding.detail["writer"] == 0
    write_step = finding.detail["write_step"]
    writes = [e for e in built.trace if e.kind == "write"]
    assert [e.step for e in writes] == [write_step]
    assert writes[0].cpu == 0


def test_missing_isb_on_the_executing_cpu_is_a_stale_fetch() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)])
    run_patch(built, FULL, isb_on_waiter=False)
    assert stale(built) == ["context-synchronization"]


def test_self_modifying_cpu_needs_its_own_isb() -> None:
    built = rig.machine([rig.cpu()])
    alias = built.vmap(rig.FN_PA, 4)
    program = Program(PATCHER)
    patch = rig.patcher(PATCHER, ("dc", "dsb", "ic", "dsb"), alias=alias)
    # Drop the final flag store + done, call fn instead (no ISB on this CPU).
    program.words = patch.words[:-4]
    program.emit(lambda pc: rig.bl(pc, rig.FN_VA) if hasattr(rig, "bl") else 0)
    program.emit(rig.done())
    rig.load(built, program)
    built.start_cpu(0, PATCHER, sp=rig.stack(0))
    built.run()
    assert stale(built) == ["context-synchronization"]


def test_idc_and_dic_permit_the_shortened_sequences() -> None:
    idc = rig.machine([rig.cpu(rig.CTR_IDC), rig.cpu(rig.CTR_IDC, index=1)])
    assert run_patch(idc, ("dsb", "ic", "dsb", "isb")) == (2, [])
    dic = rig.machine([rig.cpu(rig.CTR_DIC), rig.cpu(rig.CTR_DIC, index=1)])
    assert run_patch(dic, ("dc", "dsb", "isb")) == (2, [])
    both = rig.CTR_64 | 3 << 28
    idc_dic = rig.machine([rig.cpu(both), rig.cpu(both, index=1)])
    assert run_patch(idc_dic, ("dsb", "isb")) == (2, [])


def test_idc_still_needs_the_dsb_and_dic_still_needs_the_clean() -> None:
    idc = rig.machine([rig.cpu(rig.CTR_IDC), rig.cpu(rig.CTR_IDC, index=1)])
    run_patch(idc, ("ic", "dsb", "isb"))
    assert stale(idc) == ["dsb-after-clean"]
    dic = rig.machine([rig.cpu(rig.CTR_DIC), rig.cpu(rig.CTR_DIC, index=1)])
    run_patch(dic, ("dsb", "isb"))
    assert stale(dic) == ["clean"]


def test_64_byte_stride_on_a_32_byte_line_cpu_leaves_a_stale_word() -> None:
    # CPU0 (the patcher) really has 32-byte lines but strides 64 bytes (one DC and one
    # IC for a 64-byte line): the word 32 bytes in is neither cleaned nor invalidated.
    built = rig.machine([rig.cpu(rig.CTR_32), rig.cpu(index=1)])
    second = rig.FN_PA + 0x20
    built.load_phys(second, (rig.OLD_WORD).to_bytes(4, "little") + rig.RET.to_bytes(4, "little"))
    alias = built.vmap(rig.FN_PA, 0x100)
    program = Program(PATCHER)
    program.emit(rig.mov64(1, alias + 0x20), rig.mov64(2, rig.NEW_WORD), rig.str_w(2, 1))
    program.emit(rig.mov64(3, rig.FN_VA), rig.dc_cvau(3), rig.DSB_ISH, rig.ic_ivau(3),
                 rig.DSB_ISH)
    program.emit(rig.mov64(4, rig.FLAG_VA), rig.movz(5, 1, wide=False), rig.str_w(5, 4),
                 rig.done())
    rig.load(built, program)
    rig.load(built, rig.waiter(WAITER, call=rig.FN_VA + 0x20))
    built.start_cpu(0, PATCHER, sp=rig.stack(0))
    built.start_cpu(1, WAITER, sp=rig.stack(1))
    built.run()
    assert stale(built) == ["clean"]


def test_64_byte_stride_is_enough_when_every_cpu_has_64_byte_lines() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)])
    second = rig.FN_PA + 0x20
    built.load_phys(second, (rig.OLD_WORD).to_bytes(4, "little") + rig.RET.to_bytes(4, "little"))
    alias = built.vmap(rig.FN_PA, 0x100)
    program = Program(PATCHER)
    program.emit(rig.mov64(1, alias + 0x20), rig.mov64(2, rig.NEW_WORD), rig.str_w(2, 1))
    program.emit(rig.mov64(3, rig.FN_VA), rig.dc_cvau(3), rig.DSB_ISH, rig.ic_ivau(3),
                 rig.DSB_ISH)
    program.emit(rig.mov64(4, rig.FLAG_VA), rig.movz(5, 1, wide=False), rig.str_w(5, 4),
                 rig.done())
    rig.load(built, program)
    rig.load(built, rig.waiter(WAITER, call=rig.FN_VA + 0x20))
    built.start_cpu(0, PATCHER, sp=rig.stack(0))
    built.start_cpu(1, WAITER, sp=rig.stack(1))
    result = built.run()
    assert result.findings == ()
    assert result.cpus[1].result == 2


def test_dc_cvau_is_not_a_clean_with_the_a53_erratum_but_dc_civac_is() -> None:
    affected = rig.machine([rig.A53, rig.A72], clean_cache_erratum=True)
    run_patch(affected, FULL)
    assert stale(affected) == ["clean"]
    assert "A53" in str(next(f for f in affected.findings if f.code == "stale-fetch").detail)
    fixed = rig.machine([rig.A53, rig.A72], clean_cache_erratum=True)
    assert run_patch(fixed, FULL, clean="civac") == (2, [])
    unaffected = rig.machine([rig.A53, rig.A72])
    assert run_patch(unaffected, FULL) == (2, [])


def test_clean_by_the_alias_va_counts() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)])
    alias = built.vmap(rig.FN_PA, 0x100)
    rig.load(built, rig.patcher(PATCHER, ("dc",), alias=alias, targets=(alias,)))
    # Reuse the flag-less part: the generated program cleans by the alias VA; then the
    # rest of the sequence by the text VA.
    program = rig.patcher(PATCHER, ("dc", "dsb", "ic", "dsb"), alias=alias, targets=(alias,))
    rig.load(built, program)
    rig.load(built, rig.waiter(WAITER))
    built.start_cpu(0, PATCHER, sp=rig.stack(0))
    built.start_cpu(1, WAITER, sp=rig.stack(1))
    result = built.run()
    assert result.findings == ()
    assert result.cpus[1].result == 2


def test_ic_ialluis_reaches_every_cpu() -> None:
    built = rig.machine([rig.cpu(), rig.cpu(index=1)])
    value, codes = run_patch(built, ("dc", "dsb", "ialluis", "dsb", "isb"))
    assert (value, codes) == (2, [])
