"""Unicorn hook bookkeeping and translation-cache upkeep, behind the mapping table.

Hooks are narrow so plain guest code runs at unicorn speed: stores are hooked only over
writable mappings of code pages, code hooks sit only on DSB/ISB words of executable
mappings, on code traps and, per CPU, on the 64-byte lines holding words stale for
that CPU.  Unicorn state of an instance is never changed while it emulates
(``ctl_remove_cache`` inside a memory hook loses the store): :meth:`HookBook.soon`
defers mapping changes to the end of the slice, and a CPU's hooks and translations
change just before its own next slice (:meth:`HookBook.later`, :meth:`HookBook.ready`):
only then can they matter, so a CPU that does not run guest code while others patch
(a Python rendezvous, an idle CPU) pays for none of the lines that went stale and
fresh again meanwhile, and its dropped translations are merged into few ranges.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_WRITE

from pytest_altpatch.a64.classify import barrier
from pytest_altpatch.a64.granule import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from pytest_altpatch.machine.cpu import CpuRuntime, stop
from pytest_altpatch.machine.ifetch import FetchModel
from pytest_altpatch.machine.memory import PROBE_TRAP_VA, MemoryMap

#: A barrier entry whose hook is asked for and not yet on the engine.
PENDING: Final = -1
#: A barrier entry observed by an exit of the engine rather than a code hook.
EXIT: Final = -2

#: Granule of the per-CPU stale-line code hooks.
HOOK_LINE: Final = 64
#: A stale-line hook outlives its line's staleness until it has fired this many times
#: with nothing to report: adding and deleting a unicorn hook costs far more than a
#: harmless callback, and a patch-and-call loop re-arms the same lines every time.
IDLE_FIRES: Final = 256
#: Translations to drop closer than this are dropped as one range (see HookBook.ready):
#: sites of one image sit a few words apart, and each removal walks unicorn's cache.
_DROP_MERGE_GAP: Final = 256
#: At most this many such kept hooks per CPU: unicorn's translation time grows with
#: the number of code hooks, so after a large patch the fresh lines are unhooked.
IDLE_KEEP: Final = 16

# DSB or ISB words (little-endian bytes): op2 in {100, 110}, any CRm; refined by
# a64.classify.barrier.
_BARRIER_BYTES: Final = re.compile(rb"[\x9f\xdf][\x30-\x3f]\x03\xd5")

#: The store hook's callback: (uc, access, address, size, value, cpu).
WriteHook = Callable[[Any, int, int, int, int, int], None]


def _observed_barrier(word: int) -> bool:
    """Whether ``word`` is a barrier the fetch model observes (a DSB or an ISB)."""
    found = barrier(word)
    return found is not None and found.kind != "dmb"


class HookBook:
    """Which unicorn hooks each CPU has, kept in step with the mapping table and the
    fetch model; also the queue of engine changes that wait for the end of a slice."""

    def __init__(self, cpus: Sequence[CpuRuntime], memory: MemoryMap, fetch: FetchModel) -> None:
        self._cpus = cpus
        self._memory = memory
        self._fetch = fetch
        #: The CPU emulating now (engine changes wait), or None between slices.
        self.running: int | None = None
        self._after_slice: list[Callable[[], object]] = []
        self._write_ranges: list[tuple[int, int]] = []
        #: The callback of the store hooks over code pages (set when the machine is wired).
        self.on_code_write: WriteHook | None = None

    # --- deferral -----------------------------------------------------------------------
    def soon(self, action: Callable[[], object]) -> None:
        """Run ``action`` now, or after the current slice if a CPU is emulating."""
        if self.running is None:
            action()
        else:
            self._after_slice.append(action)

    def drain(self) -> None:
        """Run the actions deferred during the slice that just ended."""
        while self._after_slice:
            actions, self._after_slice = self._after_slice, []
            for action in actions:
                action()

    # --- per-CPU engine work, done before that CPU's next slice ---------------------------
    @staticmethod
    def later(cpu: CpuRuntime, action: Callable[[], object]) -> None:
        """Change ``cpu``'s engine (hooks) just before it next emulates, in order."""
        cpu.engine_work.append(action)

    @staticmethod
    def drop_later(cpu: CpuRuntime, low: int, high: int) -> None:
        """Drop ``cpu``'s translations of [low, high) before it next emulates."""
        cpu.engine_drops.append((low, high))

    @staticmethod
    def ready(cpu: CpuRuntime) -> None:
        """Do ``cpu``'s waiting engine work (called just before it emulates).

        Hook changes run in the order they were asked for (the order of callbacks on
        one instruction follows it); the translations to drop are merged first, since
        dropping more than needed only costs a retranslation."""
        while cpu.engine_work:
            work, cpu.engine_work = cpu.engine_work, []
            for action in work:
                action()
        if cpu.exits_changed:
            cpu.exits_changed = False
            cpu.uc.ctl_set_exits([PROBE_TRAP_VA, *(va for va, handle in cpu.barrier_hooks.items()
                                                   if handle == EXIT)])
        if not cpu.engine_drops:
            return
        drops, cpu.engine_drops = sorted(cpu.engine_drops), []
        low, high = drops[0]
        remove = cpu.uc.ctl_remove_cache
        for start, end in drops[1:]:
            if start <= high + _DROP_MERGE_GAP:
                high = max(high, end)
                continue
            remove(low, high)
            low, high = start, end
        remove(low, high)

    def drop_translations(self, va: int, size: int) -> None:
        """Drop every CPU's translations of [va, va+size) (each before its next slice)."""
        for cpu in self._cpus:
            self.drop_later(cpu, va, va + size)

    # --- the mapping table's listener ---------------------------------------------------
    def engine_map(self, va: int, size: int, prot: int, pointer: int) -> None:
        """Map [va, va+size) onto host memory at ``pointer`` in every CPU."""
        def apply() -> None:
            for cpu in self._cpus:
                cpu.uc.mem_map_ptr(va, size, prot, pointer)
        self.soon(apply)

    def engine_unmap(self, va: int, size: int) -> None:
        """Unmap [va, va+size) in every CPU."""
        def apply() -> None:
            for cpu in self._cpus:
                cpu.uc.mem_unmap(va, size)
        self.soon(apply)

    def engine_protect(self, va: int, size: int, prot: int) -> None:
        """Change the protection of [va, va+size) in every CPU."""
        def apply() -> None:
            for cpu in self._cpus:
                cpu.uc.mem_protect(va, size, prot)
        self.soon(apply)

    def exec_page_added(self, page: int, pa_page: int) -> None:
        """A VA page became executable: scan it for barriers, hook its stale words."""
        va = page << PAGE_SHIFT
        self.scan_barriers(page, pa_page)
        for write in self._fetch.pending_words():
            if write.pa >> PAGE_SHIFT == pa_page:
                for cpu in sorted(write.pending):
                    self.hook_stale_line(self._cpus[cpu], va + (write.pa & PAGE_MASK))

    def exec_page_removed(self, page: int) -> None:
        """A VA page is no longer executable: drop its barrier and stale-line hooks."""
        low, high = page << PAGE_SHIFT, (page + 1) << PAGE_SHIFT
        for cpu in self._cpus:
            for va in [v for v in cpu.idle_lines if low <= v < high]:
                del cpu.idle_lines[va]
            removed: list[int] = []
            for hooks in (cpu.barrier_hooks, cpu.stale_hooks):
                for va in [v for v in hooks if low <= v < high]:
                    handle = hooks.pop(va)
                    removed.append(handle)
                    if handle >= 0:
                        self.later(cpu, functools.partial(cpu.uc.hook_del, handle))
            if removed:  # exits there go too; with the last other hook, hooks go
                self.later(cpu, functools.partial(self._hooks_removed, cpu, EXIT in removed))

    def code_loaded(self, page: int, pa_page: int) -> None:
        """The host rewrote an executable page: find new barriers, drop translations."""
        self.scan_barriers(page, pa_page)
        self.drop_translations(page << PAGE_SHIFT, PAGE_SIZE)

    def refresh_write_hooks(self) -> None:
        """Hook stores exactly on writable mappings of code pages."""
        ranges = self._memory.writable_code_ranges()
        if ranges == self._write_ranges:
            return
        self._write_ranges = ranges
        on_code_write = self.on_code_write

        def rehook(cpu: CpuRuntime) -> None:
            for handle in cpu.write_hooks:
                cpu.uc.hook_del(handle)
            cpu.write_hooks = [
                cpu.uc.hook_add(UC_HOOK_MEM_WRITE, on_code_write, cpu.index, low, high)
                for low, high in ranges
            ]
            cpu.uc.ctl_flush_tb()
        for cpu in self._cpus:
            self.later(cpu, functools.partial(rehook, cpu))

    # --- barrier, stale-line and trap hooks ---------------------------------------------
    def scan_barriers(self, page: int, pa_page: int) -> None:
        """Hook every DSB/ISB word of the executable VA page ``page``."""
        pa = pa_page << PAGE_SHIFT
        text = self._memory.buffer[pa:pa + PAGE_SIZE]
        for match in _BARRIER_BYTES.finditer(text):
            offset = match.start()
            if offset % 4 == 0:
                word = int.from_bytes(text[offset:offset + 4], "little")
                self.hook_barrier_word((page << PAGE_SHIFT) + offset, word)

    def hook_barrier_word(self, va: int, word: int) -> None:
        """Hook the word at ``va`` on every CPU if it is a DSB or an ISB."""
        if not _observed_barrier(word):
            return
        for cpu in self._cpus:
            if va not in cpu.barrier_hooks:
                cpu.barrier_hooks[va] = PENDING
                self.later(cpu, functools.partial(self._add_barrier_hook, cpu, va))

    def _add_barrier_hook(self, cpu: CpuRuntime, va: int) -> None:
        if cpu.barrier_hooks.get(va) == PENDING:
            if cpu.barrier_exits:
                cpu.barrier_hooks[va] = EXIT
                cpu.exits_changed = True
            else:
                assert cpu.barrier_hook_ranges is not None
                cpu.barrier_hooks[va] = cpu.barrier_hook_ranges.add(va, va + 3)
            cpu.uc.ctl_remove_cache(va, va + 4)

    # --- barriers by exits while no other code hook is on the engine ----------------------
    # One UC_HOOK_CODE anywhere on an engine halves unicorn's counted speed; exits cost
    # nothing.  An engine with no stale-line or trap hook therefore stops at an exit
    # before each barrier word (the scheduler observes and takes it, see
    # Scheduler._run_by_exits); before such a hook is added, its barrier words become
    # code hooks again, registered first, so the callbacks on one instruction run in the
    # order they would have had the barrier hooks been there all along.
    def _barriers_by_hooks(self, cpu: CpuRuntime) -> None:
        """Engine work: observe barriers by code hooks (another code hook is coming)."""
        if not cpu.barrier_exits:
            return
        cpu.barrier_exits = False
        assert cpu.barrier_hook_ranges is not None
        for va, handle in cpu.barrier_hooks.items():
            if handle == EXIT:
                cpu.barrier_hooks[va] = cpu.barrier_hook_ranges.add(va, va + 3)
                cpu.engine_drops.append((va, va + 4))
        cpu.exits_changed = True

    def _barriers_by_exits(self, cpu: CpuRuntime) -> None:
        """Engine work: observe barriers by exits again, once no other code hook is left
        (a hooked word that is no longer a DSB or ISB keeps its hook: it fires idle)."""
        if cpu.barrier_exits or cpu.executed is None or cpu.stale_hooks or cpu.trap_hooks:
            return
        cpu.barrier_exits = True
        drops: list[tuple[int, int]] = []
        for va, handle in cpu.barrier_hooks.items():
            if handle >= 0 and self._still_barrier(va):
                cpu.uc.hook_del(handle)
                cpu.barrier_hooks[va] = EXIT
                drops.append((va, va + 4))
        cpu.exits_changed = True
        if all(handle < 0 for handle in cpu.barrier_hooks.values()):
            # Unicorn's own count hook is now the engine's only code hook, which it
            # calls inline from translations made from now on; those made while
            # another code hook was on walk the hook list per instruction (about
            # 1.3x slower), wherever they are, so all of them go.
            cpu.uc.ctl_flush_tb()
            cpu.engine_drops.clear()
        else:
            cpu.engine_drops.extend(drops)

    def _hooks_removed(self, cpu: CpuRuntime, exits: bool) -> None:
        """Engine work after hooks of a page were dropped (``exits``: some were exits)."""
        cpu.exits_changed = cpu.exits_changed or exits
        self._barriers_by_exits(cpu)

    def _still_barrier(self, va: int) -> bool:
        word = self._memory.word_at(va)
        return word is not None and _observed_barrier(word)

    def hook_stale_line(self, cpu: CpuRuntime, va: int) -> None:
        """Hook the line holding ``va`` for ``cpu`` (a word there is stale for it)."""
        line = va & -HOOK_LINE
        if cpu.idle_lines.pop(line, None) is not None and any(
                word in cpu.barrier_hooks for word in range(line, line + HOOK_LINE, 4)):
            # Stale again, beside a barrier hook: hook anew, so the two callbacks run in
            # the order they would if the kept hook had been deleted when it went idle.
            old = cpu.stale_hooks.pop(line)
            if old != PENDING:
                self.later(cpu, functools.partial(cpu.uc.hook_del, old))
        if line not in cpu.stale_hooks:
            cpu.stale_hooks[line] = PENDING
            self.later(cpu, functools.partial(self._barriers_by_hooks, cpu))

            def add() -> None:
                if cpu.stale_hooks.get(line) == PENDING:
                    assert cpu.stale_hook_ranges is not None
                    cpu.stale_hooks[line] = cpu.stale_hook_ranges.add(line, line + HOOK_LINE - 1)
            self.later(cpu, add)
        self.drop_later(cpu, va & ~3, (va & ~3) + 4)

    def line_fresh(self, cpu: CpuRuntime, line: int) -> None:
        """No word of ``line`` is stale for ``cpu`` any more: keep its hook idle (up to
        IDLE_KEEP lines) or unhook it; either way drop the old translation."""
        if line not in cpu.stale_hooks:
            return
        if line in cpu.idle_lines or len(cpu.idle_lines) < IDLE_KEEP:
            # Fresh: drop the old translation now; the hook stays until idle.
            cpu.idle_lines.setdefault(line, 0)
            self.drop_later(cpu, line, line + HOOK_LINE)
            return
        handle = cpu.stale_hooks.pop(line)
        if handle != PENDING:
            self.later(cpu, functools.partial(cpu.uc.hook_del, handle))
        self.later(cpu, functools.partial(self._barriers_by_exits, cpu))
        self.drop_later(cpu, line, line + HOOK_LINE)

    def drop_idle_hook(self, cpu: CpuRuntime, line: int) -> None:
        """Delete a kept stale-line hook that is still idle (not re-armed meanwhile)."""
        if cpu.idle_lines.get(line, 0) < IDLE_FIRES:
            return
        del cpu.idle_lines[line]
        handle = cpu.stale_hooks.pop(line, None)
        if handle is not None and handle != PENDING:
            cpu.uc.hook_del(handle)
        cpu.uc.ctl_remove_cache(line, line + HOOK_LINE)
        self._barriers_by_exits(cpu)

    def add_trap_hooks(self, va: int) -> None:
        """Hook the word at ``va`` on every CPU for a code trap."""
        for cpu in self._cpus:
            self.later(cpu, functools.partial(self._add_trap_hook, cpu, va))

    def _add_trap_hook(self, cpu: CpuRuntime, va: int) -> None:
        self._barriers_by_hooks(cpu)
        cpu.trap_hooks[va] = cpu.uc.hook_add(UC_HOOK_CODE, self.on_code_trap, cpu.index,
                                             va, va + 3)
        cpu.uc.ctl_remove_cache(va, va + 4)

    def on_code_trap(self, uc: Any, address: int, size: int, cpu: int) -> None:
        """A CPU is about to run a trapped word: stop it (the scheduler takes the trap)."""
        target = self._cpus[cpu]
        if target.trap_skip == address:
            target.trap_skip = None
            return
        target.trap_hit = address
        stop(uc, target)


__all__ = ["EXIT", "HOOK_LINE", "IDLE_FIRES", "IDLE_KEEP", "PENDING", "HookBook", "WriteHook"]
