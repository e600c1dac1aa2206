"""Stores to code, fetch checks, cache maintenance and barriers: the guest's side of
the fetch model (:mod:`.ifetch` decides; this module feeds it and reports).

A store to a code page ends its CPU's slice.  Unicorn then re-executes that store (its
PC stays on it), which rewrites the same bytes and is recognised as no change.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final

from pytest_altpatch.a64.classify import CACHE_OPS, barrier
from pytest_altpatch.a64.granule import PAGE_MASK, PAGE_SHIFT
from pytest_altpatch.machine.config import Schedule
from pytest_altpatch.machine.cpu import CpuRuntime, stop
from pytest_altpatch.machine.events import EventLog
from pytest_altpatch.machine.hooks import HOOK_LINE, IDLE_FIRES, HookBook
from pytest_altpatch.machine.ifetch import FetchModel, FetchVerdict
from pytest_altpatch.machine.memory import MemoryMap
from pytest_altpatch.machine.port import FaultFn

_CLEAN_OPS: Final = {"dc cvau": "cvau", "dc cvac": "cvac", "dc civac": "civac"}
_INVALIDATE_OPS: Final = {"ic ivau": "va", "ic ialluis": "all", "ic iallu": "local"}
#: CACHE_OPS is keyed (op1, CRn, CRm, op2); the SYS hook reports those fields.
_SYS_OPS: Final = {key: name for key, name in CACHE_OPS.items()
                   if name in _CLEAN_OPS or name in _INVALIDATE_OPS}


class CodeCoherence:
    """Feeds the fetch model from guest and host events and reports what it finds."""

    def __init__(self, cpus: Sequence[CpuRuntime], memory: MemoryMap, fetch: FetchModel,
                 log: EventLog, hooks: HookBook, schedule: Schedule, fault: FaultFn) -> None:
        self._cpus = cpus
        self._memory = memory
        self._buffer = memory.buffer
        self._translate = memory.translate
        self._fetch = fetch
        self._log = log
        self._event = log.event
        self._hooks = hooks
        self._stops_at_events = schedule.stops_at_events
        self._fault = fault

    # --- stores to code -----------------------------------------------------------------
    def store(self, cpu: int, va: int, pa: int, old: bytes, new: bytes,
              pc: int | None = None) -> None:
        """Feed a store over code pages to the fetch model (the caller does the store)."""
        start = pa & ~3
        end = (pa + len(new) + 3) & ~3
        before = self._buffer[start:end]
        after = bytearray(before)
        after[pa - start:pa - start + len(new)] = new
        log = self._log
        if pc is not None and log.symbolizers:
            log.writers[log.step] = pc  # named only if a finding quotes the write
        step = self._event(cpu, "write", va, f"pa={pa:#x} {old.hex()}->{new.hex()}")
        hooks = self._hooks
        for offset in range(0, end - start, 4):
            old_word = int.from_bytes(before[offset:offset + 4], "little")
            new_word = int.from_bytes(after[offset:offset + 4], "little")
            record = self._fetch.write(cpu, start + offset, old_word, new_word, step)
            if record is None:
                continue
            for alias in self._memory.exec_alias.get(record.pa >> PAGE_SHIFT, ()):
                word_va = (alias << PAGE_SHIFT) | (record.pa & PAGE_MASK)
                for target in self._cpus:
                    hooks.hook_stale_line(target, word_va)
                hooks.hook_barrier_word(word_va, new_word)
            log.progress()

    def store_code(self, cpu: int, va: int, pa: int, old: bytes, new: bytes) -> None:
        """A Python CPU's store over code pages (no store instruction to name)."""
        self.store(cpu, va, pa, old, new)

    def on_code_write(self, uc: Any, access: int, address: int, size: int, value: int,
                      cpu: int) -> None:
        """UC_HOOK_MEM_WRITE over writable mappings of code pages."""
        found = self._translate(address)
        if found is None:
            return
        pa = found[0]
        new = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        old = self._buffer[pa:pa + size]
        if old == new:
            return  # also the re-execution of a store whose slice we ended
        # The store's PC is only kept for naming it in findings (symbolizers).
        pc = self._cpus[cpu].regs.pc() if self._log.symbolizers else None
        self.store(cpu, address, pa, old, new, pc)
        stop(uc, self._cpus[cpu])

    # --- fetch checks -------------------------------------------------------------------
    def on_stale_line(self, uc: Any, address: int, size: int, cpu: int) -> None:
        """UC_HOOK_CODE on a line holding a word stale for ``cpu``."""
        found = self._translate(address)
        if found is None:
            return
        pa = found[0]
        verdict = self._fetch.check_fetch(cpu, pa)
        if verdict is not None:
            self._report_fetch(cpu, address, pa, verdict)
            return
        target = self._cpus[cpu]
        line = address & -HOOK_LINE
        fires = target.idle_lines.get(line)
        if fires is None:
            return
        target.idle_lines[line] = fires + 1
        if fires + 1 == IDLE_FIRES:
            self._hooks.later(target, functools.partial(self._hooks.drop_idle_hook, target, line))

    def _report_fetch(self, cpu: int, va: int, pa: int, verdict: FetchVerdict) -> None:
        write = verdict.write
        detail: dict[str, object] = {
            "pa": pa,
            "writer": write.writer,
            "write_step": write.step,
            "missing": verdict.missing,
            "old": write.old,
            "new": write.new,
        }
        log = self._log
        writer_pc = log.writers.get(write.step)
        writer = log.where(writer_pc) if writer_pc is not None else None
        if writer is not None:
            detail["write_by"] = writer
        if verdict.missing == "clean" and write.erratum_clean_seen:
            detail["note"] = "DC CVAU does not count as a clean on this platform (A53 erratum)"
        if verdict.kind == "cmodx":
            message = (f"executed {write.new:#010x} (was {write.old:#010x}) while cpu"
                       f"{write.writer}'s modification at step {write.step} was unsynchronised")
            log.report("cmodx", message, cpu, pc=va, address=va, detail=detail)
        else:
            message = (f"executed a word written by cpu{write.writer} at step {write.step} "
                       f"before the maintenance sequence completed: missing {verdict.missing}")
            if writer is not None:
                message += f" (the write: {writer})"
            log.report("stale-fetch", message, cpu, pc=va, address=va, detail=detail,
                       kind="fetch-stale")

    # --- maintenance and barriers -------------------------------------------------------
    def dsb(self, cpu: int, step: int) -> None:
        """A DSB by ``cpu`` (trace step ``step``) completes its earlier maintenance."""
        self._fetch.dsb(cpu, step)

    def context_sync(self, cpu: int, step: int) -> None:
        """A context synchronisation event of ``cpu``: refetch, unhook fresh lines."""
        fresh = self._fetch.context_sync(cpu, step)
        if not fresh:
            return
        target = self._cpus[cpu]
        exec_alias = self._memory.exec_alias
        lines: set[int] = set()
        for pa in fresh:
            for alias in exec_alias.get(pa >> PAGE_SHIFT, ()):
                va = (alias << PAGE_SHIFT) | (pa & PAGE_MASK)
                lines.add(va & -HOOK_LINE)
        # Nothing left stale for this CPU (the usual case): every line is fresh.
        some_pending = self._fetch.pending_for(cpu) > 0
        for line in sorted(lines):
            found = self._translate(line)
            if found is None:
                continue
            pa_line = found[0]
            if some_pending and any(self._fetch.is_pending(cpu, pa_line + off)
                                    for off in range(0, HOOK_LINE, 4)):
                continue
            self._hooks.line_fresh(target, line)

    def maintenance(self, cpu: int, name: str, va: int | None, pc: int | None) -> bool:
        """A DC/IC operation by ``cpu`` (at ``pc``; None: the guest CPU's own PC, read
        only if it faults); False when its VA is unmapped (a fault)."""
        pa: int | None = None
        if va is not None:
            found = self._translate(va)
            if found is None:
                target = self._cpus[cpu]
                self._fault(target, "unmapped-access", f"{name} by unmapped address {va:#x}",
                            pc=target.regs.pc() if pc is None else pc, address=va)
                return False
            pa = found[0]
        kind = "dc" if name.startswith("dc") else "ic"
        step = self._event(cpu, kind, va or 0, name)
        if name in _CLEAN_OPS:
            assert pa is not None
            self._fetch.clean(cpu, pa, _CLEAN_OPS[name], step)  # type: ignore[arg-type]
        else:
            self._fetch.invalidate(cpu, pa, _INVALIDATE_OPS[name], step)  # type: ignore[arg-type]
        self._cpus[cpu].progress += 1
        return True

    def on_sys(self, uc: Any, reg: int, cp: Any, cpu: int) -> int:
        """UC_HOOK_INSN for SYS: DC and IC operations."""
        name = _SYS_OPS.get((cp.op1, cp.crn, cp.crm, cp.op2))
        if name is None or cp.op0 != 1:
            return 0
        by_va = name not in ("ic iallu", "ic ialluis")
        if not self.maintenance(cpu, name, cp.val if by_va else None, None):
            stop(uc, self._cpus[cpu])
            return 1
        if self._stops_at_events:
            stop(uc, self._cpus[cpu])
        return 0

    def on_barrier(self, uc: Any, address: int, size: int, cpu: int) -> None:
        """UC_HOOK_CODE on a DSB or ISB word."""
        target = self._cpus[cpu]
        if target.resume_skip == address:
            target.resume_skip = None
            return
        if self.observe_barrier(target, address):
            # Unicorn stops *before* a hooked instruction: skip this hook once on resume.
            target.resume_skip = address
            stop(uc, target)

    def observe_barrier(self, target: CpuRuntime, address: int) -> bool:
        """``target`` is about to run the word at ``address``: if it is a DSB or an ISB,
        trace it and complete what it completes.  True when the schedule ends the slice
        right there (before the barrier runs)."""
        found_pa = self._translate(address)
        if found_pa is None:
            return False
        pa = found_pa[0]
        found = barrier(int.from_bytes(self._buffer[pa:pa + 4], "little"))
        if found is None or found.kind == "dmb":
            return False
        cpu = target.index
        step = self._event(cpu, found.kind, address, found.option)
        if found.kind == "dsb":
            self._fetch.dsb(cpu, step)
        else:
            self.context_sync(cpu, step)
        return self._stops_at_events


__all__ = ["CodeCoherence"]
