"""Run a patcher's own detection and late-CPU check, for the judge to compare.

Both entries are optional (features ``cpu-detection`` and ``late-cpu-check``).  What
they decide is recorded in the outcome and judged against the case; the harness's
own resolution (:mod:`pytest_altpatch.patchers.capabilities`) still drives patching
and bring-up, so one detection bug is one discrepancy, not a cascade.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from pytest_altpatch.errors import ErrorInfo, Location
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import (
    DetectingPatcher,
    DetectionEnvironment,
    DetectionTables,
    LateCpuChecker,
    LateCpuEnvironment,
)
from pytest_altpatch.scenarios.session import Booted, Session

DETECTION_FEATURE: Final = "cpu-detection"
LATE_CPU_FEATURE: Final = "late-cpu-check"


def detection_tables(session: Session) -> DetectionTables:
    """The catalog's tables as the dialect under test is built with them.

    Capabilities are named as the catalog names them (a dialect's own spelling, such
    as Xen's ``ARM64_WORKAROUND_AT_SPECULATE``, is an alias of the same number).
    """
    numbering = session.image.numbering
    semantics = session.traits.semantics
    catalog = session.catalog
    errata = tuple(e for _, e in sorted(catalog.errata.items()) if semantics in e.tables)
    features = tuple(f for _, f in sorted(catalog.features.items()))
    names = (*(e.capability for e in errata), *(f.capability for f in features),
             *(c.name for c in session.case.caps))
    numbers = {name: n for name in names if (n := numbering.number(name)) is not None}
    return DetectionTables(
        dialect=session.dialect, ncaps=numbering.ncaps, numbers=numbers,
        errata=tuple(e for e in errata if e.capability in numbers),
        features=tuple(f for f in features if f.capability in numbers),
        extra=session.case.caps,
    )


def declares(session: Session, feature: str) -> bool:
    """Whether the patcher under test declares ``feature``."""
    return feature in session.patcher.features


def _unsupported(session: Session, entry: str, feature: str) -> ErrorInfo:
    return ErrorInfo("PATCHER_UNSUPPORTED",
                     f"{session.patcher.name} declares {feature} but has no {entry} entry",
                     "boot", Location())


def run_detection(session: Session, cpus: Sequence[int]) -> ErrorInfo | None:
    """``detect_capabilities`` on each of ``cpus`` in turn; updates ``session.detected``."""
    if not declares(session, DETECTION_FEATURE):
        return None
    patcher = session.patcher
    if not isinstance(patcher, DetectingPatcher):
        return _unsupported(session, "detect_capabilities", DETECTION_FEATURE)
    tables = detection_tables(session)
    for cpu in cpus:
        env = DetectionEnvironment(tables=tables, decided=session.detected or frozenset())
        answer: list[object] = []

        def body(ctx: CpuContext, env: DetectionEnvironment = env,
                 answer: list[object] = answer) -> None:
            answer.append(patcher.detect_capabilities(ctx, env))

        _, error = session.run_patcher([cpu], body)
        if error is not None:
            return error
        if not answer:
            return None  # the CPU faulted: the findings tell it
        numbers = _numbers(answer[0])
        if numbers is None:
            return ErrorInfo("PATCHER_BAD_RESULT",
                             f"cpu{cpu}: detect_capabilities returned {answer[0]!r}, not a "
                             "collection of capability numbers", "boot", Location())
        session.detected = numbers
    return None


def _numbers(value: object) -> frozenset[int] | None:
    if not isinstance(value, Collection) or isinstance(value, (str, bytes)):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        return None
    return frozenset(value)


def cap_names(session: Session, numbers: Collection[int]) -> tuple[str, ...]:
    """Capability names for ``numbers`` (``#N`` for a number the dialect does not use)."""
    numbering = session.image.numbering
    by_number = {n: name for name, n in detection_tables(session).numbers.items()}
    return tuple(sorted(by_number.get(n) or numbering.name(n) or f"#{n}" for n in numbers))


@dataclass(frozen=True)
class PatcherVerdict:
    """What the patcher's own late-CPU check said (None: it has no check)."""

    accepted: bool | None
    code: str | None = None
    error: ErrorInfo | None = None


def late_cpu_check(booted: Booted, cpu: int) -> PatcherVerdict:
    """``verify_late_cpu`` on the hot-plugged CPU ``cpu``, before it joins."""
    session = booted.session
    if not declares(session, LATE_CPU_FEATURE):
        return PatcherVerdict(None)
    patcher = session.patcher
    if not isinstance(patcher, LateCpuChecker):
        return PatcherVerdict(None, error=_unsupported(session, "verify_late_cpu",
                                                       LATE_CPU_FEATURE))
    boot = session.readings[0]
    options = session.case.options
    env = LateCpuEnvironment(tables=detection_tables(session), caps=booted.env.caps,
                             boot_midr=boot.midr, boot_ctr=boot.ctr,
                             hmp_unsafe=options.hmp_unsafe,
                             park_dcache_mismatch=options.park_dcache_mismatch)
    answer: list[object] = []

    def body(ctx: CpuContext) -> None:
        answer.append(patcher.verify_late_cpu(ctx, env))

    _, error = session.run_patcher([cpu], body)
    if error is not None:
        return PatcherVerdict(None, error=error)
    if not answer:
        return PatcherVerdict(None)
    code = answer[0]
    if code is not None and not (isinstance(code, str) and code.startswith("LATE_CPU_")):
        return PatcherVerdict(None, error=ErrorInfo(
            "PATCHER_BAD_RESULT", f"cpu{cpu}: verify_late_cpu returned {code!r}, not None or "
            "a LATE_CPU_* code", "hotplug", Location()))
    return PatcherVerdict(code is None, code)


__all__ = [
    "DETECTION_FEATURE",
    "LATE_CPU_FEATURE",
    "PatcherVerdict",
    "cap_names",
    "declares",
    "detection_tables",
    "late_cpu_check",
    "run_detection",
]
