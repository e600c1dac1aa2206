"""How many instructions unicorn ran in its last ``emu_start``, where it can be read.

Why: unicorn limits an ``emu_start`` to ``count`` instructions with a code hook of its
own, and runs that at about half its free speed; any further ``UC_HOOK_CODE`` on the
instance (on any address, executed or not) halves it again.  The machine must see
every DSB and ISB, so it hooked each such word and paid that twice over on every CPU.
unicorn's *exits* stop emulation before chosen addresses at no cost, but an exit says
nothing about how many instructions ran before it, and the machine's schedules are
instruction-exact: a slice that meets a barrier must go on for the rest of its count.

unicorn keeps that number (the counter its count hook advances) in its engine
structure, which its API does not export.  :func:`instruction_counter` finds the
counter's place once per process by running known instruction counts on a scratch
engine, and accepts it only if one place, and only one, agrees with every probe: a
stop at an exit after k instructions reads k, a count of n run to its end reads n+1,
with and without another code hook.  Anywhere that does not hold (another unicorn, an
unknown layout), it returns None and the machine hooks barriers as before; both ways
give the same instruction-exact schedules.  What it found (the place, or that there is
none) is kept in the user cache, keyed by unicorn's installed files, so a process
after the first reads it back instead of looking (:mod:`pytest_altpatch.kept`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import sys
from collections.abc import Callable
from typing import Any, Final

import unicorn as _unicorn
from unicorn import UC_ARCH_ARM64, UC_HOOK_CODE, UC_MODE_ARM
from unicorn import arm64_const as arm64

from pytest_altpatch.kept import KeptEntries, installed_stamps

Uc: Any = _unicorn.__dict__["Uc"]

#: Setting this to 1 makes the machine hook barriers with code hooks (for comparison).
NO_EXITS_ENV: Final = "ALTPATCH_NO_EXITS"
#: How far into the engine structure the counter is looked for (bytes).
_SEARCH: Final = 2048
_NOP: Final = (0xD503201F).to_bytes(4, "little")
_BASE: Final = 0x10000
#: (instructions before the exit, count given): one stop at an exit, one run to its count.
_PROBES: Final = ((37, 1000), (53, 1000), (101, 1000), (1000, 77), (1000, 210))
#: Where a process found the counter is kept for the next (a few bytes per unicorn).
_KEPT: Final = KeptEntries("unicorn-counter", 64 * 1024)
_KEPT_FORMAT: Final = 1


def _scratch() -> Any:
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(_BASE, 0x2000)
    uc.mem_write(_BASE, _NOP * (0x2000 // 4))
    uc.ctl_exits_enabled(True)
    return uc


def _run(uc: Any, exit_after: int, count: int) -> tuple[int, bytes]:
    """Run to the exit after ``exit_after`` NOPs or ``count`` instructions; what the
    counter must then read, and the engine structure's first bytes."""
    uc.ctl_set_exits([_BASE + 4 * exit_after])
    uc.emu_start(_BASE, 0, 0, count)
    executed = (uc.reg_read(arm64.UC_ARM64_REG_PC) - _BASE) // 4
    expected = executed if executed == exit_after else count + 1
    return expected, ctypes.string_at(uc._uch.value, _SEARCH)


def _calibrate() -> int | None:
    """The offset of the counter in the engine structure, or None.

    One scratch engine runs every probe without a code hook and then again with one
    (added in between); the first probe's candidates are every place that agrees, and
    each later probe keeps those of them that still do."""
    uc = _scratch()
    candidates: list[int] | None = None
    for with_code_hook in (False, True):
        if with_code_hook:
            uc.hook_add(UC_HOOK_CODE, lambda *_: None, None, _BASE + 0x1FF0, _BASE + 0x1FF3)
        for exit_after, count in _PROBES:
            expected, raw = _run(uc, exit_after, count)
            places = range(0, _SEARCH - 4, 4) if candidates is None else candidates
            candidates = [offset for offset in places
                          if int.from_bytes(raw[offset:offset + 4], "little") == expected]
            if not candidates:
                return None
    if candidates is None or len(candidates) != 1:
        return None
    return candidates[0]


def _kept_key() -> str:
    """What the counter's place depends on: unicorn's files as installed (its library
    among them, by name, size and modification time) and this interpreter."""
    digest = hashlib.sha256(f"{_KEPT_FORMAT} {sys.version_info[:3]} {sys.platform}\n".encode())
    digest.update(installed_stamps("unicorn"))
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _offset() -> int | None:
    if os.environ.get(NO_EXITS_ENV) == "1":
        return None
    key = _kept_key()
    kept = _KEPT.load(key)  # (None, and keep() does nothing, with caching off)
    if isinstance(kept, tuple) and len(kept) == 1 and (kept[0] is None or (
            isinstance(kept[0], int) and 0 <= kept[0] < _SEARCH)):
        return kept[0]
    try:
        found = _calibrate()
    except Exception:  # not kept: the next process looks again
        return None
    _KEPT.keep(key, (found,))
    return found


def prepare() -> None:
    """Find the counter now (read back from the user cache where a process found it
    before, about 0.5 ms; else about 5 ms): a worker server does while it warms up, so
    the children it forks start with it."""
    _offset()


def instruction_counter(uc: Any) -> Callable[[], int] | None:
    """A function reading how many instructions ``uc``'s last ``emu_start`` ran (its
    count + 1 when the count ran out), or None where that cannot be known."""
    offset = _offset()
    if offset is None:
        return None
    cell = ctypes.c_uint32.from_address(uc._uch.value + offset)
    return lambda: cell.value


__all__ = ["NO_EXITS_ENV", "instruction_counter", "prepare"]
