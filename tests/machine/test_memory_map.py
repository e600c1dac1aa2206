"""The mapping table on its own (no unicorn): translate, aliases, what it announces."""

from __future__ import annotations

import pytest

from pytest_altpatch.a64.granule import PAGE_SIZE
from pytest_altpatch.machine import MachineError, Perms
from pytest_altpatch.machine.memory import MemoryMap


class _Recorder:
    """A MappingListener that writes down what the table tells it."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def exec_page_added(self, page: int, pa_page: int) -> None:
        self.calls.append(("exec+", page, pa_page))

    def exec_page_removed(self, page: int) -> None:
        self.calls.append(("exec-", page))

    def code_loaded(self, page: int, pa_page: int) -> None:
        self.calls.append(("loaded", page, pa_page))

    def engine_map(self, va: int, size: int, prot: int, pointer: int) -> None:
        self.calls.append(("map", va, size))

    def engine_unmap(self, va: int, size: int) -> None:
        self.calls.append(("unmap", va, size))

    def engine_protect(self, va: int, size: int, prot: int) -> None:
        self.calls.append(("protect", va, size))

    def refresh_write_hooks(self) -> None:
        self.calls.append(("refresh",))


def _table() -> tuple[MemoryMap, _Recorder]:
    memory = MemoryMap(16 * PAGE_SIZE)
    recorder = _Recorder()
    memory.listener = recorder
    return memory, recorder


def test_two_aliases_of_one_page_translate_to_the_same_physical_byte() -> None:
    memory, _ = _table()
    memory.map(0x400000, 2 * PAGE_SIZE, PAGE_SIZE, "r-x")
    alias = memory.vmap(2 * PAGE_SIZE + 0x10, 8)
    assert memory.translate(0x400010) == (2 * PAGE_SIZE + 0x10, Perms.R | Perms.X)
    assert memory.translate(alias) == (2 * PAGE_SIZE + 0x10, Perms.R | Perms.W)
    assert memory.translate(0x400000 + PAGE_SIZE) is None


def test_read_virtual_crosses_pages_through_the_table() -> None:
    memory, _ = _table()
    memory.load_phys(3 * PAGE_SIZE - 2, b"abcd")
    memory.map(0x500000, 2 * PAGE_SIZE, 2 * PAGE_SIZE, "rw-")
    assert memory.read_virtual(0x500000 + PAGE_SIZE - 2, 4) == b"abcd"
    assert memory.read_virtual(0x500000 + 2 * PAGE_SIZE - 2, 4) is None


def test_an_executable_alias_is_announced_once_and_withdrawn_on_protect() -> None:
    memory, recorder = _table()
    memory.map(0x400000, 0, PAGE_SIZE, "r-x")
    memory.protect(0x400000, PAGE_SIZE, "r-x")
    memory.protect(0x400000, PAGE_SIZE, "rw-")
    announced = [call for call in recorder.calls if call[0] in ("exec+", "exec-")]
    assert announced == [("exec+", 0x400, 0), ("exec-", 0x400)]
    assert memory.exec_alias[0] == []
    assert 0 in memory.code_pages  # once code, stores to it stay tracked


def test_writable_code_ranges_coalesce_adjacent_pages_of_code_only() -> None:
    memory, _ = _table()
    memory.map(0x400000, 0, 2 * PAGE_SIZE, "r-x")
    memory.map(0x600000, 0, 2 * PAGE_SIZE, "rw-")
    memory.map(0x600000 + 2 * PAGE_SIZE, 4 * PAGE_SIZE, PAGE_SIZE, "rw-")
    assert memory.writable_code_ranges() == [(0x600000, 0x600000 + 2 * PAGE_SIZE - 1)]
    memory.declare_code(4 * PAGE_SIZE, 1)
    assert memory.writable_code_ranges() == [(0x600000, 0x600000 + 3 * PAGE_SIZE - 1)]


def test_loading_over_an_executable_page_tells_each_alias() -> None:
    memory, recorder = _table()
    memory.map(0x400000, PAGE_SIZE, PAGE_SIZE, "r-x")
    memory.map(0x800000, PAGE_SIZE, PAGE_SIZE, "r-x")
    recorder.calls.clear()
    memory.load_phys(PAGE_SIZE + 8, b"\0" * 4)
    assert recorder.calls == [("loaded", 0x400, 1), ("loaded", 0x800, 1)]


def test_a_table_without_a_listener_refuses_to_map() -> None:
    memory = MemoryMap(PAGE_SIZE)
    with pytest.raises(MachineError) as raised:
        memory.map(0x400000, 0, PAGE_SIZE, "r--")
    assert raised.value.code == "MACHINE_STATE"

