"""The judge: compare an :class:`Outcome` with a case's expectations.

A case passes only if every expectation holds: the capabilities chosen (exactly),
each expected stream (byte for byte, assembled at the label's address with the
image's symbols), each probe's registers on every CPU it names, no findings beyond
those the case expects (and every expected one seen), the expected error (code and
phase) for negative cases, and no byte outside the patched sites changed.  The judge
never mutates the outcome; each discrepancy names the case line it comes from.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from pytest_altpatch import collector
from pytest_altpatch.a64 import assemble
from pytest_altpatch.a64.asm import SymbolTable
from pytest_altpatch.cases.model import Case, ErrorExpectation, PhaseExpectation
from pytest_altpatch.errors import AltpatchError, ErrorInfo, Location
from pytest_altpatch.findings import Finding
from pytest_altpatch.image import kept_images
from pytest_altpatch.kept import KeptEntries
from pytest_altpatch.plain_data import dumps
from pytest_altpatch.scenarios.outcome import Outcome, PhaseOutcome, ProbeOutcome

#: Section kinds whose bytes only the patcher's sites may change.
_GUARDED_KINDS = frozenset({"text", "replacement", "alt-table", "rodata", "harness"})


@dataclass(frozen=True)
class Discrepancy:
    """One expectation that did not hold."""

    code: str  # a judge finding code (stream-mismatch, unexpected-finding, ...)
    message: str
    phase: str
    location: Location = field(default_factory=Location)
    finding: Finding | None = None  # the machine finding concerned, if any
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one outcome."""

    discrepancies: tuple[Discrepancy, ...]

    @property
    def passed(self) -> bool:
        """True when no expectation failed."""
        return not self.discrepancies

    @property
    def codes(self) -> tuple[str, ...]:
        """The discrepancy codes, in order."""
        return tuple(d.code for d in self.discrepancies)


def judge(case: Case, outcome: Outcome) -> Verdict:
    """Compare ``outcome`` with ``case``'s expectations for the outcome's mode."""
    with collector.paused():  # comparing makes no cycles; what it allocates dies with it
        return _judge(case, outcome)


def prepare(case: Case, symbols: Mapping[str, int]) -> None:
    """Assemble ``case``'s expected streams at their labels in ``symbols`` (an image's)
    now, so judging an outcome with those symbols later finds them assembled.  For a
    caller with time to spare while the item runs, as ``altpatch run`` has; what does
    not assemble is left for the judge.

    What it assembled is kept between runs (:mod:`pytest_altpatch.kept`), keyed by the
    case, the symbols and the code that assembles (:func:`kept_images.code_fingerprint`:
    this package's sources and the assembler engines): read back, it loads no engine
    (a 200-site case: 35 ms to assemble with keystone loaded, 1 ms to read back)."""
    global _prepared
    key = _kept_key(case, symbols)
    table = _read_kept(key) if key is not None else None
    if table is None:
        table = _assembled_expectations(case, symbols)
        if key is not None:
            _KEPT.keep(key, tuple((source, address, code)
                                  for (source, address), code in table.items()))
    _prepared = (dict(symbols), table)


#: What :func:`prepare` made or read back: the symbols, and each expected choice's
#: bytes by (source, address).
_prepared: tuple[dict[str, int], dict[tuple[str, int], bytes]] | None = None
_KEPT: Final = KeptEntries("expected-streams", 16 * 1024 * 1024)
_KEPT_FORMAT: Final = 1


def _assembled_expectations(case: Case, symbols: Mapping[str, int]
                            ) -> dict[tuple[str, int], bytes]:
    with contextlib.suppress(AltpatchError):
        symbols = SymbolTable(symbols)
    late = case.expect.late
    phases = (case.expect.boot_cpu, case.expect.boot,
              *((late.load, late.apply, late.revert) if late is not None else ()))
    table: dict[tuple[str, int], bytes] = {}
    for expectation in phases:
        for stream in expectation.text if expectation is not None else ():
            address = symbols.get(stream.label)
            if address is None:
                continue
            for source in stream.choices:
                with contextlib.suppress(AltpatchError):
                    table[(source, address)] = assemble(source, base=address,
                                                        symbols=symbols).code
    return table


def _kept_key(case: Case, symbols: Mapping[str, int]) -> str | None:
    if not _KEPT.enabled():
        return None
    digest = kept_images.case_digest(case)
    if digest is None:
        return None
    return hashlib.sha256(f"{_KEPT_FORMAT}\n".encode() + kept_images.code_fingerprint()
                          + digest + dumps(tuple(sorted(symbols.items())))).hexdigest()


def _read_kept(key: str) -> dict[tuple[str, int], bytes] | None:
    kept = _KEPT.load(key)
    if not isinstance(kept, tuple) or not all(
            isinstance(row, tuple) and len(row) == 3 and isinstance(row[0], str)
            and isinstance(row[1], int) and isinstance(row[2], bytes) for row in kept):
        return None
    return {(source, address): code for source, address, code in kept}


def _choices(sources: Iterable[str], address: int, symbols: Mapping[str, int],
             prepared: Mapping[tuple[str, int], bytes] | None = None) -> list[bytes]:
    """Each expected choice assembled at ``address`` (``prepared``: as assembled before
    with the same symbols, where it was)."""
    return [(prepared or {}).get((source, address))
            or assemble(source, base=address, symbols=symbols).code for source in sources]


def _judge(case: Case, outcome: Outcome) -> Verdict:
    found: list[Discrepancy] = []
    expected_error = _expected_error(case, outcome.mode)
    found += _judge_error(case, expected_error, outcome.error)
    if outcome.mode == "boot" and case.expect.boot_cpu is not None:
        found += _judge_phase(case, outcome, "boot-cpu", case.expect.boot_cpu,
                              "expect.boot_cpu")
    if outcome.mode == "boot" and case.expect.boot is not None:
        found += _judge_phase(case, outcome, "boot", case.expect.boot, "expect.boot")
    if outcome.mode == "late" and case.expect.late is not None:
        late = case.expect.late
        for name, expectation in (("load", late.load), ("apply", late.apply),
                                  ("revert", late.revert)):
            if expectation is not None:
                found += _judge_phase(case, outcome, name, expectation, f"expect.late.{name}")
    found += _judge_hotplug(case, outcome)
    return Verdict(tuple(found))


# --------------------------------------------------------------------------- errors


def _expected_error(case: Case, mode: str) -> ErrorExpectation | None:
    if case.expect.error is not None:
        return case.expect.error
    phases: list[PhaseExpectation | None] = []
    if mode == "boot":
        phases += [case.expect.boot_cpu, case.expect.boot]
    elif case.expect.late is not None:
        late = case.expect.late
        phases += [late.load, late.apply, late.revert]
    for expectation in phases:
        if expectation is not None and expectation.error is not None:
            return expectation.error
    return None


def _judge_error(case: Case, expected: ErrorExpectation | None,
                 actual: ErrorInfo | None) -> list[Discrepancy]:
    if expected is None:
        if actual is None:
            return []
        # Placed where the error is, when it is in the case file (an assembler or build
        # error names its line); otherwise at the case.
        where = actual.location if actual.location.file == case.path and \
            actual.location.line else case.location
        return [Discrepancy("unexpected-error", f"{actual.code} ({actual.phase}): {actual.message}",
                            actual.phase, where,
                            detail={"actual_code": actual.code, "actual_phase": actual.phase,
                                    "where": str(actual.location)})]
    if actual is None:
        return [Discrepancy("missing-error",
                            f"expected {expected.code} in phase {expected.phase}, no error",
                            expected.phase, expected.location,
                            detail={"expected_code": expected.code,
                                    "expected_phase": expected.phase})]
    if (actual.code, actual.phase) not in expected.choices:
        return [Discrepancy("error-mismatch",
                            f"expected {expected.code} ({expected.phase}), got {actual.code} "
                            f"({actual.phase}): {actual.message}",
                            expected.phase, expected.location,
                            detail={"expected_code": expected.code,
                                    "expected_phase": expected.phase,
                                    "actual_code": actual.code, "actual_phase": actual.phase,
                                    "where": str(actual.location)})]
    return []


# --------------------------------------------------------------------------- phases


def _judge_phase(case: Case, outcome: Outcome, name: str, expectation: PhaseExpectation,
                 json_path: str) -> list[Discrepancy]:
    phase = outcome.phase(name)
    if phase is None:
        if outcome.error is not None:
            return []  # the run ended earlier; the error check has spoken
        return [Discrepancy("missing-error", f"phase {name} never ran", name,
                            case.location_of(json_path))]
    found: list[Discrepancy] = []
    if expectation.caps is not None:
        want, got = set(expectation.caps), set(phase.caps)
        if want != got:
            found.append(Discrepancy(
                "caps-mismatch",
                f"capabilities: expected {sorted(want)}, got {sorted(got)} "
                f"(missing {sorted(want - got)}, extra {sorted(got - want)})",
                name, case.location_of(f"{json_path}.caps"),
                detail={"expected": sorted(want), "actual": sorted(got),
                        "per_cpu": [list(c) for c in phase.caps_per_cpu]}))
    if expectation.caps is not None and phase.patcher_caps is not None:
        want, got = set(expectation.caps), set(phase.patcher_caps)
        if want != got:
            found.append(Discrepancy(
                "patcher-caps-mismatch",
                f"the patcher's own detection decided {sorted(got)}, expected {sorted(want)} "
                f"(missing {sorted(want - got)}, extra {sorted(got - want)})",
                name, case.location_of(f"{json_path}.caps"),
                detail={"expected": sorted(want), "actual": sorted(got)}))
    found += _judge_streams(case, outcome, phase, expectation, json_path)
    found += _judge_probes(case, phase, expectation, json_path)
    found += _judge_findings(case, phase, expectation, json_path, outcome)
    found += _judge_unexpected_writes(case, phase)
    return found


def _judge_streams(case: Case, outcome: Outcome, phase: PhaseOutcome,
                   expectation: PhaseExpectation, json_path: str) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    symbols: Mapping[str, int] = outcome.symbols or (
        outcome.image.symbols if outcome.image is not None else {})
    prepared = _prepared[1] if _prepared is not None and _prepared[0] == symbols else None
    with contextlib.suppress(AltpatchError):  # checked once, not once per stream
        symbols = SymbolTable(symbols)
    for stream in expectation.text:
        where = stream.location if stream.location.line else case.location_of(
            f"{json_path}.text.{stream.label}")
        address = symbols.get(stream.label)
        if address is None:
            found.append(Discrepancy("stream-mismatch", f"label {stream.label!r} is not defined",
                                     phase.phase, where, detail={"label": stream.label}))
            continue
        try:
            allowed = _choices(stream.choices, address, symbols, prepared)
        except AltpatchError as exc:
            found.append(Discrepancy("stream-mismatch",
                                     f"expected stream for {stream.label!r} does not assemble: "
                                     f"{exc.render()}", phase.phase, where,
                                     detail={"label": stream.label}))
            continue
        if any(phase.read(address, len(choice)) == choice for choice in allowed):
            continue
        expected = allowed[0]  # any_of: the report diffs against the first choice
        actual = phase.read(address, len(expected))
        if actual != expected:
            found.append(Discrepancy(
                "stream-mismatch", f"stream at {stream.label} ({address:#x}) differs",
                phase.phase, where,
                detail={"label": stream.label, "address": address, "expected": expected,
                        "actual": actual if actual is not None else b""}))
    return found


def _judge_probes(case: Case, phase: PhaseOutcome, expectation: PhaseExpectation,
                  json_path: str) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    runs_of: dict[int, list[ProbeOutcome]] = {}
    for probe_run in phase.probes:
        runs_of.setdefault(probe_run.probe_index, []).append(probe_run)
    for index, spec in enumerate(expectation.probes):
        where = spec.location if spec.location.line else case.location_of(
            f"{json_path}.probes.{index}")
        runs = runs_of.get(index, [])
        if not runs:
            found.append(Discrepancy("probe-mismatch", f"probe {spec.call} did not run",
                                     phase.phase, where, detail={"call": spec.call}))
        for run in runs:
            if spec.fault is not None:
                if not any(f.code == spec.fault for f in run.findings):
                    how = (f"raised {', '.join(sorted({f.code for f in run.findings}))} "
                           "instead") if run.findings else "returned without one"
                    found.append(Discrepancy(
                        "probe-mismatch", f"probe {spec.call} on cpu{run.cpu}: expected the "
                        f"fault {spec.fault}, but it {how}", phase.phase, where,
                        finding=run.findings[0] if run.findings else None,
                        detail={"call": spec.call, "cpu": run.cpu}))
                continue
            if not run.completed:
                found.append(Discrepancy(
                    "probe-mismatch", f"probe {spec.call} on cpu{run.cpu} did not return",
                    phase.phase, where, finding=run.findings[0] if run.findings else None,
                    detail={"call": spec.call, "cpu": run.cpu}))
                continue
            wrong = {reg: (want, run.registers[int(reg[1:])])
                     for reg, want in sorted(spec.result.items())
                     if run.registers[int(reg[1:])] != want & 0xFFFF_FFFF_FFFF_FFFF}
            if wrong:
                text = ", ".join(f"{reg}: expected {want:#x}, got {got:#x}"
                                 for reg, (want, got) in wrong.items())
                found.append(Discrepancy(
                    "probe-mismatch", f"probe {spec.call} on cpu{run.cpu}: {text}",
                    phase.phase, where, detail={"call": spec.call, "cpu": run.cpu,
                                                "registers": dict(wrong)}))
    return found


def _finding_place(case: Case, outcome: Outcome, finding: Finding,
                   probe: Location | None, fallback: Location) -> Location:
    """The case line a finding is about: the line whose code it concerns (a site's
    macro line), else the probe that ran into it, else the phase's expectations."""
    from pytest_altpatch.report_findings import case_line_of  # noqa: PLC0415

    address = finding.address if finding.address is not None else finding.pc
    line = case_line_of(outcome.image, address, case.path)
    if line is not None:  # the image was built from this case: its lines are the case's
        return Location(file=case.path, line=line.line)
    return probe if probe is not None and probe.line else fallback


def _judge_findings(case: Case, phase: PhaseOutcome, expectation: PhaseExpectation,
                    json_path: str, outcome: Outcome) -> list[Discrepancy]:
    # A probe's expected fault (``fault: ro-write``) is judged with the probe, not here.
    faults = {index: spec.fault for index, spec in enumerate(expectation.probes)}
    probe_at = {index: spec.location for index, spec in enumerate(expectation.probes)}
    observed: list[tuple[Finding, Location | None]] = [(f, None) for f in phase.findings]
    observed += [(f, probe_at.get(p.probe_index)) for p in phase.probes for f in p.findings
                 if f.code != faults.get(p.probe_index)]
    allowed = set(expectation.findings)
    found: list[Discrepancy] = []
    reported: set[str] = set()
    for finding, probe in observed:
        if finding.code not in allowed and finding.code not in reported:
            reported.add(finding.code)  # the first of each code carries the story
            found.append(Discrepancy(
                "unexpected-finding", finding.render(), phase.phase,
                _finding_place(case, outcome, finding, probe, case.location_of(json_path)),
                finding=finding))
    seen = {f.code for f, _ in observed}
    for code in expectation.findings:
        if code not in seen:
            found.append(Discrepancy("missing-finding", f"expected finding {code} did not occur",
                                     phase.phase, case.location_of(f"{json_path}.findings"),
                                     detail={"expected": code}))
    return found


def _merged(ranges: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """The union of half-open ``ranges`` as sorted, disjoint (starts, ends)."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _outside(merged: tuple[list[int], list[int]], address: int) -> bool:
    starts, ends = merged
    slot = bisect.bisect_right(starts, address) - 1
    return slot < 0 or address >= ends[slot]


def _changed_bytes(before: bytes, after: bytes) -> Iterator[tuple[int, int, int]]:
    """(offset, old, new) of every byte that differs, skipping equal 4 KiB blocks."""
    for block in range(0, len(before), 4096):
        if before[block:block + 4096] == after[block:block + 4096]:
            continue
        for offset in range(block, min(block + 4096, len(before))):
            if before[offset] != after[offset]:
                yield offset, before[offset], after[offset]


def _judge_unexpected_writes(case: Case, phase: PhaseOutcome) -> list[Discrepancy]:
    patchable: tuple[list[int], list[int]] | None = None
    for section in phase.sections:
        if section.kind not in _GUARDED_KINDS or section.before == section.after:
            continue
        if patchable is None:
            patchable = _merged(phase.patchable)
        for offset, old, new in _changed_bytes(section.before, section.after):
            address = section.va + offset
            if _outside(patchable, address):
                return [Discrepancy(
                    "unexpected-write",
                    f"byte at {address:#x} in {section.name} changed ({old:#04x} -> {new:#04x}) "
                    "outside every patched site", phase.phase, case.location,
                    detail={"address": address, "section": section.name})]
    return []


# --------------------------------------------------------------------------- hotplug


def _judge_hotplug(case: Case, outcome: Outcome) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    actual = {h.cpu: h for h in outcome.hotplug}
    for expected in case.expect.hotplug:
        got = actual.get(expected.cpu)
        where = expected.location
        if got is None:
            if outcome.error is None:
                found.append(Discrepancy("hotplug-mismatch",
                                         f"late cpu{expected.cpu} was never brought up",
                                         "hotplug", where))
            continue
        verdict = "accepted" if got.accepted else "refused"
        if verdict != expected.verdict or (expected.code and got.code not in expected.codes):
            found.append(Discrepancy(
                "hotplug-mismatch",
                f"late cpu{expected.cpu}: expected {expected.verdict}"
                f"{' ' + expected.code if expected.code else ''}, got {verdict}"
                f"{' ' + got.code if got.code else ''} ({got.message})",
                "hotplug", where))
        if got.patcher_accepted is None:
            continue
        own = "accepted" if got.patcher_accepted else "refused"
        if own != expected.verdict or (expected.code
                                       and got.patcher_code not in expected.codes):
            found.append(Discrepancy(
                "patcher-hotplug-mismatch",
                f"late cpu {expected.cpu}: the patcher's own check {own} it"
                f"{' with ' + got.patcher_code if got.patcher_code else ''}, expected "
                f"{expected.verdict}{' ' + expected.code if expected.code else ''}",
                "hotplug", where))
    return found


__all__ = ["Discrepancy", "Verdict", "judge", "prepare"]
