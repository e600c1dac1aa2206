# unicorn ships without type information.
# mypy: disable-error-code="no-untyped-call,attr-defined"
"""The callbacks' guest code does what the Linux ABI says, run on unicorn.

cb(alt = x0, origptr = x1, updptr = x2, nr_inst = x3) writes only through updptr.
NOP = 0xd503201f, HVC #0 = 0xd4000002, SMC #0 = 0xd4000003 (Arm ARM encodings).
"""

from __future__ import annotations

import pytest
import unicorn
import unicorn.arm64_const as regs
from conftest import make_case, numbering_for

from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.callbacks import SMCCC_CONDUIT_SYMBOL, SMCCC_CONDUIT_VALUES
from pytest_altpatch.image.model import Image

NOP, HVC, SMC, SENTINEL = 0xD503201F, 0xD4000002, 0xD4000003, 0x11111111
ALIAS = 0x10_0000  # a writable scratch page standing in for the site's alias
RETURN = 0x20_0000  # x30: the callback returns here and emulation stops


def _image() -> Image:
    return build_image(make_case("fn: ret\n"), dialect="linux-6.1",
                       numbering=numbering_for("linux-6.1"))


def _run(image: Image, name: str, nr_inst: int, conduit: int | None = None) -> tuple[list[int],
                                                                                     str | None]:
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
    for section in image.sections:
        start = section.va & ~0xFFF
        size = (section.end - start + 0xFFF) & ~0xFFF
        uc.mem_map(start, max(size, 0x1000))
        uc.mem_write(section.va, section.content)
    for page in (ALIAS, RETURN):
        uc.mem_map(page, 0x1000)
    uc.mem_write(ALIAS, SENTINEL.to_bytes(4, "little") * 8)
    if conduit is not None:
        uc.mem_write(image.symbols[SMCCC_CONDUIT_SYMBOL], conduit.to_bytes(4, "little"))
    trapped: list[str] = []

    def on_interrupt(_uc: object, intno: int, _data: object) -> None:
        trapped.append(f"intr{intno}")
        uc.emu_stop()

    uc.hook_add(unicorn.UC_HOOK_INTR, on_interrupt)
    uc.reg_write(regs.UC_ARM64_REG_X0, image.alt_table_start)
    uc.reg_write(regs.UC_ARM64_REG_X1, image.symbols["fn"])
    uc.reg_write(regs.UC_ARM64_REG_X2, ALIAS)
    uc.reg_write(regs.UC_ARM64_REG_X3, nr_inst)
    uc.reg_write(regs.UC_ARM64_REG_X30, RETURN)
    uc.emu_start(image.symbols[name], RETURN, count=1000)
    raw = uc.mem_read(ALIAS, 32)
    return ([int.from_bytes(raw[i:i + 4], "little") for i in range(0, 32, 4)],
            trapped[0] if trapped else None)


def test_patch_nops_writes_nop_into_every_slot_through_the_alias() -> None:
    written, trap = _run(_image(), "alt_cb_patch_nops", 3)
    assert trap is None
    assert written == [NOP, NOP, NOP] + [SENTINEL] * 5


@pytest.mark.parametrize(("conduit", "expected"), [
    ("hvc", HVC), ("smc", SMC), ("none", SENTINEL),
])
def test_smccc_conduit_writes_hvc_or_smc_per_the_conduit_word(conduit: str,
                                                              expected: int) -> None:
    written, trap = _run(_image(), "arm64_update_smccc_conduit", 1,
                         SMCCC_CONDUIT_VALUES[conduit])
    assert trap is None
    assert written == [expected] + [SENTINEL] * 7


def test_smccc_conduit_on_a_longer_site_bugs() -> None:
    written, trap = _run(_image(), "arm64_update_smccc_conduit", 2, SMCCC_CONDUIT_VALUES["hvc"])
    assert trap is not None  # brk #0x800, the kernel's BUG()
    assert written == [SENTINEL] * 8
