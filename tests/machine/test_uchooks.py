"""CodeHooks: many code ranges on one shared C callback behave like Uc.hook_add."""

from __future__ import annotations

from typing import Any

import pytest
import unicorn
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM
from unicorn import arm64_const as arm64

from pytest_altpatch.a64.granule import PAGE_SIZE
from pytest_altpatch.machine.uchooks import CodeHooks

BASE = 0x10000
NOP = 0xD503201F  # HINT #0
RET = 0xD65F03C0  # RET X30
RETURN_TO = 0x20000  # outside the mapping: emu_start stops there (until address)


def _engine() -> Any:
    uc = unicorn.__dict__["Uc"](UC_ARCH_ARM64, UC_MODE_ARM, arm64.UC_CPU_ARM64_MAX)
    uc.mem_map(BASE, PAGE_SIZE)
    words = [NOP, NOP, NOP, RET]
    uc.mem_write(BASE, b"".join(w.to_bytes(4, "little") for w in words))
    uc.reg_write(arm64.UC_ARM64_REG_X30, RETURN_TO)
    return uc


def test_each_added_range_fires_with_its_user_data_and_deleted_ones_do_not() -> None:
    uc = _engine()
    seen: list[tuple[int, int]] = []
    hooks = CodeHooks(uc, lambda _uc, address, _size, data: seen.append((address, data)), 7)
    hooks.add(BASE + 4, BASE + 7)  # the second NOP only
    gone = hooks.add(BASE + 8, BASE + 11)  # the third, deleted before running
    uc.hook_del(gone)
    uc.emu_start(BASE, RETURN_TO)
    assert seen == [(BASE + 4, 7)]


def test_a_raising_handler_stops_the_run_and_raises_from_emu_start() -> None:
    uc = _engine()

    def handler(_uc: Any, _address: int, _size: int, _data: int) -> None:
        raise RuntimeError("handler failed")

    CodeHooks(uc, handler, 0).add(BASE, BASE + 3)
    with pytest.raises(RuntimeError, match="handler failed"):
        uc.emu_start(BASE, RETURN_TO)
