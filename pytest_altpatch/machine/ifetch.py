"""The instruction-fetch model: which modified words each CPU may not yet execute.

This is pure bookkeeping over physical addresses (no unicorn), the single authority
on staleness.  The architecture (Arm ARM B2.2.5 and the cache maintenance rules; see
conformance.md §5) lets a CPU execute a modified location only after, in order:

1. ``clean``: a D-side clean to PoU of the location (DC CVAU/CVAC/CIVAC by VA, any
   alias), unless the writing CPU has CTR_EL0.IDC=1;
2. ``dsb-after-clean``: a DSB on a CPU that issued such a clean, after the clean
   (with IDC=1: a DSB on the writer after the write);
3. ``invalidate``: an I-side invalidate reaching the executing CPU, issued after step 2
   (IC IVAU and IC IALLUIS reach every CPU, IC IALLU only its issuer), unless the
   executing CPU has CTR_EL0.DIC=1;
4. ``dsb-after-invalidate``: a DSB on the CPU that issued that invalidate;
5. ``context-synchronization``: an ISB (or exception return) on the executing CPU.

Staleness is tracked per 4-byte word (an instruction), so executing an unmodified
word next to a modified one is not a finding.  Maintenance by VA covers a line: a clean
covers the line of min(issuer's DminLine, writer's DminLine) around the address (the
dirty data sits in the writer's cache), an IC IVAU covers on each receiving CPU the line
of min(issuer's IminLine, receiver's IminLine).  A stride taken from bigger lines than a
CPU really has therefore leaves words stale.  With ``clean_cache_erratum`` (Cortex-A53
826319/827319/824069/819472) DC CVAU does not count as a clean; DC CIVAC and CVAC do.

A CPU that executes a word still pending for it gets one verdict per write:
``stale-fetch`` naming the first missing step, or ``cmodx`` when the execution races
the modification (another CPU wrote it, the executing CPU has not context-synchronised
since the write and the writer's part of the sequence is not complete); a race where
old and new words are both CMODX-safe (B, BL, BRK, HVC, ISB, NOP, SMC, SVC) is allowed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from pytest_altpatch import collector
from pytest_altpatch.a64.classify import is_cmodx_safe

#: The maintenance steps in the order the architecture requires them.
MAINTENANCE_STEPS: Final = (
    "clean",
    "dsb-after-clean",
    "invalidate",
    "dsb-after-invalidate",
    "context-synchronization",
)

MissingStep = Literal[
    "clean", "dsb-after-clean", "invalidate", "dsb-after-invalidate", "context-synchronization"
]
CleanKind = Literal["cvau", "cvac", "civac"]

WORD: Final = 4


@dataclass(frozen=True)
class LineGeometry:
    """One CPU's cache facts from its CTR_EL0."""

    dminline: int
    iminline: int
    idc: bool
    dic: bool


@dataclass
class PendingWrite:
    """One modified word and how far its maintenance sequence has come."""

    pa: int
    writer: int
    step: int
    old: int
    new: int
    clean_needed: bool
    #: CPUs that issued a counting clean after the write, with the step of that clean.
    cleaners: dict[int, int] = field(default_factory=dict)
    #: Step at which steps 1-2 completed (None while not complete).
    cleaned_at: int | None = None
    #: CPUs for which the word is still not executable.
    pending: set[int] = field(default_factory=set)
    #: Per receiving CPU: issuers of an invalidate that reached it after ``cleaned_at``.
    invalidators: dict[int, set[int]] = field(default_factory=dict)
    #: Per receiving CPU: step at which steps 3-4 completed.
    invalidated_at: dict[int, int] = field(default_factory=dict)
    #: (cpu, verdict kind) already reported, so each write is reported once per CPU.
    reported: set[tuple[int, str]] = field(default_factory=set)
    #: Whether a clean was seen that did not count because of the A53 erratum.
    erratum_clean_seen: bool = False
    #: Whether an invalidate came after a clean but before the DSB completing it.
    early_invalidate: bool = False


@dataclass(frozen=True)
class FetchVerdict:
    """Why executing a word is a finding: ``kind`` is ``stale-fetch`` or ``cmodx``."""

    kind: Literal["stale-fetch", "cmodx"]
    write: PendingWrite
    missing: MissingStep


class FetchModel:
    """Per-word, per-CPU staleness of modified code (see the module docstring)."""

    def __init__(self, geometry: Sequence[LineGeometry], *, clean_cache_erratum: bool) -> None:
        self._geometry = tuple(geometry)
        self._erratum = clean_cache_erratum
        self._writes: dict[int, PendingWrite] = {}
        self._pending_count = [0] * len(self._geometry)
        self._last_sync = [-1] * len(self._geometry)
        #: Per CPU: words a DSB by it may complete a step of (a superset; re-checked).
        self._dsb_interest: list[set[int]] = [set() for _ in self._geometry]

    def set_clean_cache_erratum(self, on: bool) -> None:
        """Whether DC CVAU stops counting as a clean, for maintenance from now on."""
        self._erratum = on

    # --- queries -------------------------------------------------------------------
    def in_flux(self) -> bool:
        """Whether any modified word is still stale for some CPU."""
        return bool(self._writes)

    def pending_for(self, cpu: int) -> int:
        """How many modified words ``cpu`` may not yet execute."""
        return self._pending_count[cpu]

    def is_pending(self, cpu: int, pa: int) -> bool:
        """Whether the word at ``pa`` is still stale for ``cpu``."""
        write = self._writes.get(pa & ~3)
        return write is not None and cpu in write.pending

    def pending_words(self) -> Iterator[PendingWrite]:
        """Every write still pending for some CPU, in address order."""
        for pa in sorted(self._writes):
            yield self._writes[pa]

    def first_missing(self, write: PendingWrite, cpu: int) -> MissingStep:
        """The first step of the sequence ``cpu`` still lacks for ``write``."""
        if write.cleaned_at is None:
            return "clean" if write.clean_needed and not write.cleaners else "dsb-after-clean"
        if not self._geometry[cpu].dic and cpu not in write.invalidated_at:
            if write.invalidators.get(cpu):
                return "dsb-after-invalidate"
            # An invalidate between the clean and its DSB did not count: name the DSB.
            return "dsb-after-clean" if write.early_invalidate else "invalidate"
        return "context-synchronization"

    def check_fetch(self, cpu: int, pa: int) -> FetchVerdict | None:
        """The verdict for ``cpu`` executing the word at ``pa`` now (None: allowed).

        A verdict is returned once per (write, CPU, kind); later executions of the same
        stale word return None so a spinning CPU is reported once.
        """
        write = self._writes.get(pa & ~3)
        if write is None or cpu not in write.pending:
            return None
        missing = self.first_missing(write, cpu)
        racing = (
            cpu != write.writer
            and self._last_sync[cpu] < write.step
            and missing != "context-synchronization"
        )
        if racing and is_cmodx_safe(write.old) and is_cmodx_safe(write.new):
            return None
        kind: Literal["stale-fetch", "cmodx"] = "cmodx" if racing else "stale-fetch"
        if (cpu, kind) in write.reported:
            return None
        write.reported.add((cpu, kind))
        return FetchVerdict(kind, write, missing)

    # --- events ----------------------------------------------------------------------
    def write(self, cpu: int, pa: int, old: int, new: int, step: int) -> PendingWrite | None:
        """``cpu`` stored ``new`` over ``old`` in the word at ``pa``; returns the record.

        A store that leaves the word unchanged is not a modification.  A second store
        to a word still pending restarts its sequence but keeps the oldest old word
        (a racing CPU may still hold that one).
        """
        pa &= ~3
        previous = self._writes.get(pa)
        if old == new:
            return None
        if previous is not None:
            old = previous.old
            self._drop(previous)
        record = PendingWrite(
            pa=pa,
            writer=cpu,
            step=step,
            old=old,
            new=new,
            clean_needed=not self._geometry[cpu].idc,
            pending=set(range(len(self._geometry))),
        )
        self._writes[pa] = record
        for index in record.pending:
            self._pending_count[index] += 1
        if not record.clean_needed:
            self._dsb_interest[cpu].add(pa)
        return record

    def clean(self, cpu: int, pa: int, kind: CleanKind, step: int) -> None:
        """``cpu`` ran ``DC <kind>`` by a VA that translates to ``pa``."""
        counts = not (self._erratum and kind == "cvau")
        issuer_line = self._geometry[cpu].dminline
        for write in self._in_line(pa, issuer_line):
            if write.cleaned_at is not None or not write.clean_needed:
                continue
            line = min(issuer_line, self._geometry[write.writer].dminline)
            if (write.pa & -line) != (pa & -line):
                continue
            if counts:
                write.cleaners.setdefault(cpu, step)
                self._dsb_interest[cpu].add(write.pa)
            else:
                write.erratum_clean_seen = True

    def invalidate(self, cpu: int, pa: int | None, scope: Literal["va", "all", "local"],
                   step: int) -> None:
        """``cpu`` ran IC IVAU (scope ``va``, by ``pa``), IC IALLUIS or IC IALLU."""
        receivers = [cpu] if scope == "local" else list(range(len(self._geometry)))
        if pa is not None and scope == "va":
            self._invalidate(cpu, pa, scope, receivers,
                             list(self._in_line(pa, self._geometry[cpu].iminline)))
            return
        # Every word's record may gain a set per receiver: hundreds of thousands of
        # acyclic objects after a large patch, which the cyclic collector's passes
        # would make superlinear in the words written.
        with collector.paused():
            self._invalidate(cpu, pa, scope, receivers, list(self._writes.values()))

    def _invalidate(self, cpu: int, pa: int | None, scope: str, receivers: list[int],
                    candidates: list[PendingWrite]) -> None:
        """Record the invalidate on each candidate word for each receiver it reaches."""
        for write in candidates:
            if write.cleaned_at is None:
                # An invalidate before the clean completed may be refilled stale.
                write.early_invalidate = write.early_invalidate or bool(write.cleaners) \
                    or not write.clean_needed
                continue
            for receiver in receivers:
                if receiver not in write.pending or receiver in write.invalidated_at:
                    continue
                if pa is not None and scope == "va":
                    line = min(self._geometry[cpu].iminline, self._geometry[receiver].iminline)
                    if (write.pa & -line) != (pa & -line):
                        continue
                write.invalidators.setdefault(receiver, set()).add(cpu)
                self._dsb_interest[cpu].add(write.pa)

    def dsb(self, cpu: int, step: int) -> None:
        """``cpu`` ran a DSB: completes cleans and invalidates it issued earlier."""
        # Only words this CPU cleaned, invalidated or wrote unclean can change: every
        # step a DSB completes was recorded in _dsb_interest when it was issued.
        interest, self._dsb_interest[cpu] = self._dsb_interest[cpu], set()
        for pa in interest:
            write = self._writes.get(pa)
            if write is None:
                continue
            if write.cleaned_at is None:
                if cpu in write.cleaners or (not write.clean_needed and cpu == write.writer):
                    write.cleaned_at = step
                continue
            for receiver, issuers in write.invalidators.items():
                if cpu in issuers and receiver not in write.invalidated_at:
                    write.invalidated_at[receiver] = step

    def context_sync(self, cpu: int, step: int) -> list[int]:
        """``cpu`` context-synchronised; returns the words that became fresh for it."""
        self._last_sync[cpu] = step
        if not self._pending_count[cpu]:
            return []
        fresh: list[int] = []
        dic = self._geometry[cpu].dic
        for write in list(self._writes.values()):
            if cpu not in write.pending or write.cleaned_at is None:
                continue
            if dic or cpu in write.invalidated_at:
                write.pending.discard(cpu)
                self._pending_count[cpu] -= 1
                fresh.append(write.pa)
                if not write.pending:
                    del self._writes[write.pa]
        return fresh

    # --- helpers ---------------------------------------------------------------------
    def _in_line(self, pa: int, line: int) -> Iterator[PendingWrite]:
        base = pa & -line
        if len(self._writes) < line // WORD:
            for write in list(self._writes.values()):
                if base <= write.pa < base + line:
                    yield write
            return
        for word in range(base, base + line, WORD):
            found = self._writes.get(word)
            if found is not None:
                yield found

    def _drop(self, write: PendingWrite) -> None:
        for index in write.pending:
            self._pending_count[index] -= 1
        del self._writes[write.pa]


__all__ = [
    "MAINTENANCE_STEPS",
    "FetchModel",
    "FetchVerdict",
    "LineGeometry",
    "MissingStep",
    "PendingWrite",
]
