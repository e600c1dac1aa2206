"""The one CPU numbering of a case (INTERPRETING.md §2).

The platform CPUs count from 0 in the order written, then the late (hot-plugged) CPUs
follow in order: with a 2-CPU platform, ``late_cpus[0]`` is CPU 2.  Probes,
``expect.hotplug[].cpu``, the machine, outcomes and reports all use these numbers;
ask this module instead of adding ``len(case.platform)`` anywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_altpatch.cases.model import Case, CpuInstance


@dataclass(frozen=True)
class CpuNumbering:
    """The CPUs of one case under the §2 numbering."""

    platform: tuple[CpuInstance, ...]
    late: tuple[CpuInstance, ...] = ()

    @classmethod
    def of(cls, case: Case) -> CpuNumbering:
        """The numbering of ``case``'s platform and late CPUs."""
        return cls(case.platform, case.late_cpus)

    @property
    def count(self) -> int:
        """How many CPUs the case has, boot and late."""
        return len(self.platform) + len(self.late)

    @property
    def late_numbers(self) -> range:
        """The numbers of the late CPUs, in hot-plug order."""
        return range(len(self.platform), self.count)

    def late_number(self, late_index: int) -> int:
        """The CPU number of ``late_cpus[late_index]``."""
        return len(self.platform) + late_index

    def is_late(self, cpu: int) -> bool:
        """Whether CPU ``cpu`` is one of the late CPUs."""
        return len(self.platform) <= cpu < self.count

    def instance(self, cpu: int) -> CpuInstance:
        """The platform or late CPU numbered ``cpu``."""
        cpus = (*self.platform, *self.late)
        return cpus[cpu]

    def numbers_labelled(self, label: str, *, late_only: bool = False) -> list[int]:
        """The numbers of the CPUs written as ``label`` (``"cortex-a53/r0p2"``)."""
        candidates: Sequence[int] = self.late_numbers if late_only else range(self.count)
        return [cpu for cpu in candidates if self.instance(cpu).label == label]

    def describe(self, cpu: int) -> str:
        """``cpu2 (late cortex-a53/r0p2)``: the number with what it is."""
        if not 0 <= cpu < self.count:
            return f"cpu{cpu}"
        where = "late " if self.is_late(cpu) else ""
        return f"cpu{cpu} ({where}{self.instance(cpu).label})"


def cpu_numbering(case: Case) -> CpuNumbering:
    """The §2 numbering of ``case`` (platform CPUs from 0, then late CPUs in order)."""
    return CpuNumbering.of(case)


def cpu_instance(case: Case, cpu: int) -> CpuInstance:
    """The CPU of ``case`` numbered ``cpu`` under §2."""
    return CpuNumbering.of(case).instance(cpu)


__all__ = ["CpuNumbering", "cpu_instance", "cpu_numbering"]
