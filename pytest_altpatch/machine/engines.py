"""Unicorn instances, initialised ahead of need where a process can afford it.

Unicorn initialises an instance lazily, on its first use: the CPU model, the TCG
context and its translation buffer, about 2 ms per instance.  A worker server makes
spare instances once (:func:`prepare_engines`) before it forks a child per item, so
each child starts with initialised, never-used engines instead of paying for them per
CPU.  A spare is exactly a fresh instance that has been initialised: nothing has been
mapped, hooked or run on it, and each is handed out once.
"""

from __future__ import annotations

from typing import Any

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_QUERY_MODE
from unicorn import arm64_const as arm64

from pytest_altpatch.machine.cpu import Uc

#: Translation buffer size -> spare initialised instances of that size.
_SPARES: dict[int, list[Any]] = {}


def _initialised(code_buffer: int) -> Any:
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM, arm64.UC_CPU_ARM64_MAX)
    uc.ctl_set_tcg_buffer_size(code_buffer)  # (only before initialisation)
    uc.query(UC_QUERY_MODE)  # a read-only query that makes unicorn initialise now
    return uc


def new_engine(code_buffer: int) -> Any:
    """An initialised, never-used instance with a ``code_buffer``-byte translation
    buffer: a spare if one is left, else a new one."""
    spares = _SPARES.get(code_buffer)
    if spares:
        return spares.pop()
    return _initialised(code_buffer)


def prepare_engines(count: int, code_buffer: int) -> None:
    """Keep ``count`` spare instances of ``code_buffer`` bytes ready in this process."""
    spares = _SPARES.setdefault(code_buffer, [])
    while len(spares) < count:
        spares.append(_initialised(code_buffer))


def spare_engines(code_buffer: int) -> int:
    """How many spares of ``code_buffer`` bytes are ready."""
    return len(_SPARES.get(code_buffer, ()))


__all__ = ["new_engine", "prepare_engines", "spare_engines"]
