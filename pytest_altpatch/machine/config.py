"""Machine configuration: CPUs, permissions, budgets and schedules (plain frozen data).

Nothing here touches unicorn; the values are validated once, when they are built, so
the machine itself can trust them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from pytest_altpatch.errors import AltpatchError, Location
from pytest_altpatch.machine.sysregs import ID_REGISTERS

#: Every virtual address the machine accepts is below this bound.
VA_LIMIT: Final = 1 << 47
MAX_CPUS: Final = 256
#: Bounds of a unicorn instance's translation buffer (unicorn keeps about 1 MiB anyway).
MIN_CODE_BUFFER: Final = 1 << 20
MAX_CODE_BUFFER: Final = 4 << 20
#: Host bytes of translated code per guest code byte, with room to spare.
_TRANSLATION_GROWTH: Final = 16


def code_buffer_size(code_bytes: int) -> int:
    """Translation buffer for a CPU that may run ``code_bytes`` of guest code.

    A full buffer only costs a flush and retranslation, never a different result, so
    this bounds memory for many CPUs without changing what a run does.
    """
    wanted = max(0, code_bytes) * _TRANSLATION_GROWTH
    return min(MAX_CODE_BUFFER, max(MIN_CODE_BUFFER, -(-wanted // MIN_CODE_BUFFER)
                                    * MIN_CODE_BUFFER))


class MachineError(AltpatchError):
    """A caller asked the machine for something impossible (bad config, bad mapping)."""


class Perms(enum.Flag):
    """Mapping permissions; parse ``"r-x"``-style strings with :meth:`parse`."""

    NONE = 0
    R = 1
    W = 2
    X = 4

    @classmethod
    def parse(cls, perms: Perms | str) -> Perms:
        """``"r-x"``, ``"r--"``, ``"rw-"`` (or a Perms value) as Perms."""
        if isinstance(perms, Perms):
            value = perms
        elif isinstance(perms, str) and re.fullmatch(r"[r-][w-][x-]", perms):
            value = cls.NONE
            for char, flag in zip(perms, (cls.R, cls.W, cls.X), strict=True):
                if char != "-":
                    value |= flag
        else:
            raise MachineError("MACHINE_MAPPING", f"permissions {perms!r} are not like 'r-x'")
        if value not in ALLOWED_PERMS:
            # W+X would let unicorn's own self-modifying-code detection bypass the model;
            # no mapping is writable without being readable.
            raise MachineError(
                "MACHINE_MAPPING", f"permissions {value.text} are not one of r-x, r--, rw-"
            )
        return value

    @property
    def text(self) -> str:
        """The ``"r-x"`` spelling."""
        flags = (Perms.R, Perms.W, Perms.X)
        return "".join(
            char if flag in self else "-" for char, flag in zip("rwx", flags, strict=True)
        )


ALLOWED_PERMS: Final = frozenset({Perms.R | Perms.X, Perms.R, Perms.R | Perms.W})

# CTR_EL0 fields (Arm ARM D17.2.34): (shift, width).
_CTR_IMINLINE: Final = (0, 4)
_CTR_DMINLINE: Final = (16, 4)
_CTR_IDC_BIT: Final = 28
_CTR_DIC_BIT: Final = 29


def _field(value: int, where: tuple[int, int]) -> int:
    shift, width = where
    return (value >> shift) & ((1 << width) - 1)


@dataclass(frozen=True)
class CpuConfig:
    """What one CPU reports about itself: ID registers served to guest MRS.

    ``id_regs`` maps lower-case register names (``"id_aa64isar0_el1"``, ...) to values;
    registers of the ID space that are not listed read as zero.
    """

    midr: int
    revidr: int
    mpidr: int
    ctr: int
    id_regs: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in (("midr", self.midr), ("revidr", self.revidr), ("mpidr", self.mpidr),
                            ("ctr", self.ctr)):
            _check_u64(name, value)
        for name, value in self.id_regs.items():
            if name not in ID_REGISTERS:
                raise MachineError(
                    "MACHINE_CONFIG",
                    f"unknown ID register {name!r}",
                    hint="one of " + ", ".join(sorted(ID_REGISTERS)),
                )
            _check_u64(name, value)

    @property
    def dminline(self) -> int:
        """Smallest D-cache line in bytes (CTR_EL0.DminLine)."""
        return 4 << _field(self.ctr, _CTR_DMINLINE)

    @property
    def iminline(self) -> int:
        """Smallest I-cache line in bytes (CTR_EL0.IminLine)."""
        return 4 << _field(self.ctr, _CTR_IMINLINE)

    @property
    def idc(self) -> bool:
        """CTR_EL0.IDC: a D-side clean is not needed for I/D coherence."""
        return bool((self.ctr >> _CTR_IDC_BIT) & 1)

    @property
    def dic(self) -> bool:
        """CTR_EL0.DIC: an I-side invalidate is not needed for I/D coherence."""
        return bool((self.ctr >> _CTR_DIC_BIT) & 1)


def _check_u64(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise MachineError("MACHINE_CONFIG", f"{name} = {value!r} is not a 64-bit unsigned value")


@dataclass(frozen=True)
class Budget:
    """Limits of one run (or probe).

    ``instructions`` counts guest instructions granted to slices plus Python context
    operations; ``seconds`` is a host-time safety net (the only wall-clock input, and it
    only ever ends a run that would otherwise not end); ``hang_checks`` is how many
    consecutive hang checks (one every ``hang_check_rounds`` scheduling rounds) must see
    every CPU repeat a known state before the run ends as a hang.
    """

    instructions: int = 50_000_000
    seconds: float = 120.0
    hang_checks: int = 24
    hang_check_rounds: int = 16

    def __post_init__(self) -> None:
        if self.instructions <= 0 or self.seconds <= 0 or self.hang_checks <= 0 \
                or self.hang_check_rounds <= 0:
            raise MachineError("MACHINE_CONFIG", f"budget values must be positive: {self}")


ScheduleKind = Literal["rr", "random", "adversarial", "pct"]

#: Quantum bounds of ``random:SEED``: each slice draws its length from this range.
RANDOM_QUANTUM: Final = (1, 256)
#: How many times its quantum an ``rr`` slice may grow to while CPUs cannot interact.
QUIET_GROWTH: Final = 64
#: Guest quantum of ``adversarial`` (Python CPUs always get one operation per slice).
ADVERSARIAL_QUANTUM: Final = 16
#: Guest instructions in one step of ``pct:SEED`` when no patching event ends it sooner.
PCT_STEP_QUANTUM: Final = 16
#: The longest a ``pct`` guest step grows to while CPUs cannot interact: the longest
#: slice of ``rr:100``, the machine's default schedule.
PCT_QUIET_STEP: Final = 100 * QUIET_GROWTH


@dataclass(frozen=True)
class Schedule:
    """How CPUs take turns.

    * ``rr:K``: round robin over the runnable CPUs in index order; each slice is K guest
      instructions or K Python context operations.  Slices are K wherever CPUs can
      interact; while they cannot (every running CPU runs guest code, no modification
      of code is in flight, and a whole round passed without a traced event), the
      slices of the next round double, up to ``QUIET_GROWTH`` times K, and fall back
      to K at the next event (see :mod:`.scheduler`).
    * ``random:SEED``: the same round robin, but every slice length is drawn from
      RANDOM_QUANTUM by a generator seeded with SEED and the machine's ``seed``.
    * ``adversarial``: round robin with 16-instruction guest slices and one-operation
      Python slices, and a guest slice also ends right after every "patching event"
      (a store to a code page, DC/IC maintenance, DSB, ISB or host service), so every
      other CPU runs a slice between each memory operation of the CPU that patches.
    * ``pct:SEED``: a priority schedule, one step at a time (:mod:`.priority`);
      ``pct:0`` runs every other CPU ahead of CPU0 (the patching CPU), ``pct:1`` behind.
      A guest step is ``PCT_STEP_QUANTUM`` instructions wherever CPUs can interact;
      after a cycle in which every CPU spun without an event (under the same
      conditions as ``rr``'s growth), the steps of the next double, up to
      ``PCT_QUIET_STEP``, and fall back at the next event.
    """

    kind: ScheduleKind
    quantum: int = 100
    seed: int = 0

    @classmethod
    def parse(cls, text: Schedule | str) -> Schedule:
        """``"rr:K"``, ``"random:SEED"``, ``"pct:SEED"`` or ``"adversarial"``."""
        if isinstance(text, Schedule):
            return text
        match = re.fullmatch(r"(rr|random|pct):(\d+)|(adversarial)", text.strip()) \
            if isinstance(text, str) else None
        if match is None:
            raise MachineError(
                "MACHINE_SCHEDULE",
                f"schedule {text!r} is not rr:K, random:SEED, pct:SEED or adversarial",
                location=Location(),
            )
        if match.group(3):
            return cls("adversarial", ADVERSARIAL_QUANTUM)
        number = int(match.group(2))
        if match.group(1) == "rr":
            if not 1 <= number <= 10_000_000:
                raise MachineError("MACHINE_SCHEDULE", f"rr quantum {number} is out of range")
            return cls("rr", number)
        if match.group(1) == "pct":
            return cls("pct", PCT_STEP_QUANTUM, number)
        return cls("random", RANDOM_QUANTUM[1], number)

    @property
    def stops_at_events(self) -> bool:
        """Whether a guest slice ends right after every patching event."""
        return self.kind in ("adversarial", "pct")

    def __str__(self) -> str:
        if self.kind == "rr":
            return f"rr:{self.quantum}"
        if self.kind in ("random", "pct"):
            return f"{self.kind}:{self.seed}"
        return "adversarial"


__all__ = [
    "ADVERSARIAL_QUANTUM",
    "MAX_CODE_BUFFER",
    "MAX_CPUS",
    "MIN_CODE_BUFFER",
    "PCT_QUIET_STEP",
    "PCT_STEP_QUANTUM",
    "QUIET_GROWTH",
    "RANDOM_QUANTUM",
    "VA_LIMIT",
    "Budget",
    "CpuConfig",
    "MachineError",
    "Perms",
    "Schedule",
    "code_buffer_size",
]
