"""A payload assembled by GNU as loads and patches exactly like the one we build.

The payload of ``late/payload-branch-to-base`` is written out by hand in GNU syntax
(its ``.altinstructions`` entry spelled field by field, as the kernel macros emit
it), assembled with ``aarch64-linux-gnu-as`` and loaded through the same loader,
validation, patcher and livepatch switch as our own build.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Final

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Case, ProbeSpec
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.late import LateFlowError, LoadedPayload, load_payload, switch
from pytest_altpatch.scenarios.runner import boot
from pytest_altpatch.scenarios.session import Booted, Session

AS: Final = shutil.which("aarch64-linux-gnu-as")
pytestmark = pytest.mark.skipif(AS is None, reason="aarch64-linux-gnu-as is not installed")

CASE: Final = bundled_corpus() / "cases" / "late" / "payload-branch-to-base.yaml"
#: Xen's LIVEPATCH_FEATURE is capability 4 (corpus/catalog/numberings.yaml, xen-4.17).
LIVEPATCH_FEATURE: Final = 4

PAYLOAD_SOURCE: Final = f"""\
    .text
    .globl  new_greet
    .type   new_greet, %function
new_greet:
    stp     x29, x30, [sp, #-16]!
    mov     x0, #5
    .globl  site_call
site_call:
661: nop
662:
    ldp     x29, x30, [sp], #16
    ret

    .section .altinstr_replacement, "ax"
663: bl     add_ten
664:

    .section .altinstructions, "a"
    .word   661b - .            // site, PC-relative
    .word   663b - .            // replacement, PC-relative
    .hword  {LIVEPATCH_FEATURE}  // capability
    .byte   662b - 661b         // site length
    .byte   664b - 663b         // replacement length
"""

BAD_TABLE_SOURCE: Final = f"""\
    .text
site:
661: nop
662:
    ret
    .section .altinstr_replacement, "ax"
663: mov    x0, #2
664:
    .section .altinstructions, "a"
    .word   661b - .
    .word   663b - .
    .hword  {LIVEPATCH_FEATURE}
    .byte   662b - 661b
    .byte   664b - 663b
    .word   0                   // four stray bytes: 16 is not a multiple of 12
"""


def _assemble(source: str, tmp_path: Path) -> bytes:
    assert AS is not None
    src, obj = tmp_path / "payload.s", tmp_path / "payload.o"
    src.write_text(source)
    subprocess.run([AS, "-o", str(obj), str(src)], check=True, capture_output=True)
    return obj.read_bytes()


def _session(case: Case) -> Booted:
    outcome, booted = boot(case, load_catalog(), ReferencePatcher("xen-4.17"), hotplug=False)
    assert outcome.error is None and booted is not None
    booted.session.new_findings()
    return booted


def _text_now(session: Session, payload: LoadedPayload) -> bytes:
    assert session.machine is not None
    text = payload.loaded.section(".text")
    assert text is not None
    return session.machine.read_phys(payload.section_pa[".text"], len(text.content))


def test_gnu_as_payload_is_patched_like_our_own(tmp_path: Path) -> None:
    case = load_case(CASE, load_catalog())
    spec = case.payloads[0]
    ours_session, gnu_session = _session(case), _session(case)
    ours = load_payload(ours_session, spec, 0)
    gnu = load_payload(gnu_session, spec, 0, object_bytes=_assemble(PAYLOAD_SOURCE, tmp_path))
    assert gnu.loaded.symbols["new_greet"] == ours.loaded.symbols["new_greet"]
    # GNU as places its empty .data/.bss in between, so the replacement section lands
    # elsewhere; the patched .text must not depend on that.
    assert _text_now(gnu_session.session, gnu) == _text_now(ours_session.session, ours)
    site = gnu.loaded.symbols["site_call"]
    offset = site - gnu.loaded.symbols["new_greet"]
    # site_call = 0xa00008, add_ten = 0x200008: offset -0x800000, imm26 = 0x3e00000,
    # BL = 0x94000000 | 0x3e00000 = 0x97e00000.
    assert _text_now(gnu_session.session, gnu)[offset:offset + 4] == struct.pack("<I", 0x97E00000)
    probe = ProbeSpec(call="greet", cpus="all", args={}, result={"x0": 15})
    for booted, payload in ((ours_session, ours), (gnu_session, gnu)):
        assert switch(booted, [payload], revert=False) is None
        session = booted.session
        runs = session.run_probes([probe], session.online)
        assert [r.registers[0] for r in runs] == [15] * len(session.online)
        assert session.new_findings() == ()


def test_gnu_as_payload_with_a_ragged_table_is_refused(tmp_path: Path) -> None:
    case = load_case(CASE, load_catalog())
    session = _session(case)
    with pytest.raises(LateFlowError) as caught:
        load_payload(session, case.payloads[0], 0,
                     object_bytes=_assemble(BAD_TABLE_SOURCE, tmp_path))
    assert caught.value.code == "ALT_TABLE_SIZE"

