"""Readable reports of what a conformance run found.

Everything here turns frozen values (a case, an outcome, the judge's verdict) into
text for people: the pytest failure section, ``altpatch run`` and ``altpatch show``.
Nothing here decides whether a case passed, and nothing here prints: callers do.

A failure report answers, in order: which case line set the expectation that failed;
what was expected against what happened (streams side by side with addresses,
encodings and symbolised disassembly, the first differing instruction marked; the
finding with a per-CPU timeline around it; error codes and phases); and the one
command that reproduces the run outside pytest.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from pytest_altpatch.a64.disasm import disassemble
from pytest_altpatch.errors import AltpatchError, Location
from pytest_altpatch.findings import Finding
from pytest_altpatch.image.model import symbolize
from pytest_altpatch.machine.trace import render_timeline
from pytest_altpatch.report_findings import missing_step, short_name, story

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Case
    from pytest_altpatch.image.model import AltEntry, Image
    from pytest_altpatch.judge import Discrepancy, Verdict
    from pytest_altpatch.scenarios.outcome import Outcome, PhaseOutcome

#: Lines of case source shown above and below the line an expectation comes from.
EXCERPT_CONTEXT: Final = 2

#: Finding detail keys whose integer values are addresses or encodings (shown in hex);
#: other integers (steps, CPU numbers, counts) are shown in decimal.
HEX_DETAIL_KEYS: Final = frozenset({"address", "pa", "va", "pc", "old", "new", "word",
                                    "target", "site", "alias"})

#: Markers in the side-by-side stream diff.
MARK_FIRST: Final = ">"
MARK_OTHER: Final = "!"


# --------------------------------------------------------------------------- style


@dataclass(frozen=True)
class Style:
    """How to decorate text: ANSI colour for terminals that want it, else nothing."""

    colour: bool = False

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and text else text

    def heading(self, text: str) -> str:
        """A section heading (bold)."""
        return self._wrap("1", text)

    def bad(self, text: str) -> str:
        """Something that is wrong (red)."""
        return self._wrap("31", text)

    def good(self, text: str) -> str:
        """Something that holds (green)."""
        return self._wrap("32", text)

    def dim(self, text: str) -> str:
        """Context the eye may skip (faint)."""
        return self._wrap("2", text)


PLAIN: Final = Style(colour=False)


def style_for(stream: TextIO, environ: Mapping[str, str] | None = None) -> Style:
    """Colour only on a terminal, with ``NO_COLOR`` unset and ``TERM`` not ``dumb``."""
    env = os.environ if environ is None else environ
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return PLAIN
    isatty = getattr(stream, "isatty", None)
    return Style(colour=bool(isatty and isatty()))


# --------------------------------------------------------------------------- reproduce


def display_path(path: str | Path, cwd: Path | None = None) -> str:
    """``path`` relative to ``cwd`` (default: the working directory) when below it."""
    base = Path.cwd() if cwd is None else cwd
    absolute = Path(path) if Path(path).is_absolute() else base / path
    try:
        return str(absolute.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(absolute)


def reproduce_command(
    case_path: str | Path,
    *,
    mode: str,
    patcher: str,
    schedule: str,
    seed: int,
    dialect: str | None = None,
    cwd: Path | None = None,
) -> str:
    """The ``altpatch show`` command line that replays one run, ready to paste in a shell."""
    words = ["altpatch", "show", display_path(case_path, cwd), "--mode", mode,
             "--patcher", patcher]
    if dialect:
        words += ["--dialect", dialect]
    words += ["--schedule", schedule, "--seed", str(seed)]
    return " ".join(shlex.quote(word) for word in words)


# --------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class _Row:
    """One disassembled word for a listing column: encoding and text, or absent."""

    address: int
    encoding: str
    text: str


def _disassemble(code: bytes, base: int, symbols: Mapping[str, int]) -> list[_Row]:
    """Word-by-word disassembly; raw encodings if the address cannot be disassembled."""
    try:
        lines = disassemble(code, base, symbols)
    except AltpatchError:  # e.g. a misaligned label: show the words, not a crash
        return [_Row(base + offset, code[offset:offset + 4][::-1].hex(), ".word")
                for offset in range(0, len(code), 4)]
    # A trailing partial word is shown as its bytes; whole words as 8 hex digits.
    return [_Row(line.address, f"{line.word:08x}" if not line.text.startswith(".byte")
                 else code[line.address - base:][::-1].hex(), line.text) for line in lines]


def _symbolize(symbols: Mapping[str, int], address: int) -> str:
    return symbolize(symbols, address)


def case_excerpt(location: Location, *, context: int = EXCERPT_CONTEXT,
                 fallback_file: str | None = None) -> list[str]:
    """The case source around ``location.line``, numbered, the line itself marked."""
    file = location.file or fallback_file
    if file is None or not location.line:
        return []
    try:
        lines = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    first = max(1, location.line - context)
    last = min(len(lines), location.line + context)
    width = len(str(last))
    return [f"{MARK_FIRST if number == location.line else ' '} {number:>{width}} | "
            f"{lines[number - 1]}" for number in range(first, last + 1)]


def where(location: Location, fallback_file: str | None = None) -> str:
    """``file:line:col`` (and the JSON path) of an expectation, as compilers print it."""
    if location.file is None and fallback_file is not None:
        location = Location(file=fallback_file, line=location.line, column=location.column,
                            json_path=location.json_path)
    head = location.file or "?"
    if location.line:
        head += f":{location.line}"
        if location.column:
            head += f":{location.column}"
    return f"{head} ({location.json_path})" if location.json_path else head


def stream_diff(expected: bytes, actual: bytes, address: int,
                symbols: Mapping[str, int], style: Style = PLAIN) -> list[str]:
    """Expected and actual words side by side, the first differing row marked ``>``.

    Each row shows the symbolised address, the VA, then encoding and disassembly of
    the expected word and of the word found; later differing rows are marked ``!``.
    """
    left = _disassemble(expected, address, symbols)
    right = _disassemble(actual, address, symbols) if actual else []
    rows = max(len(left), len(right))
    places = [_symbolize(symbols, address + 4 * index) for index in range(rows)]
    place_width = max([len("where"), *map(len, places)])
    left_width = max([len("expected"), *(len(f"{r.encoding}  {r.text}") for r in left)])
    header = (f"  {'where':<{place_width}}  {'address':<18}  {'expected':<{left_width}}"
              f"  | actual")
    out = [style.dim(header)]
    first_seen = False
    for index in range(rows):
        want = left[index] if index < len(left) else None
        got = right[index] if index < len(right) else None
        want_text = f"{want.encoding}  {want.text}" if want else "(nothing)"
        got_text = f"{got.encoding}  {got.text}" if got else "(nothing)"
        differs = want is None or got is None or want.encoding != got.encoding
        mark = " "
        if differs:
            mark = MARK_OTHER if first_seen else MARK_FIRST
            first_seen = True
        line = (f"{mark} {places[index]:<{place_width}}  {address + 4 * index:#018x}  "
                f"{want_text:<{left_width}}  | {got_text}")
        out.append(style.bad(line) if differs else line)
    return out


def finding_timeline(outcome: Outcome, finding: Finding) -> str | None:
    """The per-CPU timeline excerpt around ``finding``, with the missing step (if the
    finding names one) as a row of its own, if the run recorded a trace."""
    if finding.step is None or not outcome.trace:
        return None
    return render_timeline(outcome.trace, finding.step, missing=missing_step(finding))


def finding_lines(outcome: Outcome, finding: Finding, style: Style = PLAIN,
                  case_path: str | None = None) -> list[str]:
    """A finding, the case line of the code it concerns, what was written and what was
    missing (in words), and its timeline."""
    out = [style.bad(finding.render())]
    out += ["  " + line for line in story(finding, outcome.image, case_path)]
    timeline = finding_timeline(outcome, finding)
    if timeline:
        out.append(style.heading(f"  timeline around step {finding.step}:"))
        out += ["    " + line for line in timeline.splitlines()]
    return out


def error_comparison(detail: Mapping[str, object]) -> list[str]:
    """Expected against actual error code and phase, as a small table."""
    rows = [("", "code", "phase"),
            ("expected", str(detail.get("expected_code") or "(no error)"),
             str(detail.get("expected_phase") or "-")),
            ("actual", str(detail.get("actual_code") or "(no error)"),
             str(detail.get("actual_phase") or "-"))]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    out = ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
           .rstrip() for row in rows]
    if detail.get("where"):
        out.append(f"  raised at: {detail['where']}")
    return out


def discrepancy_lines(case: Case, outcome: Outcome, discrepancy: Discrepancy,
                      style: Style = PLAIN) -> list[str]:
    """Everything about one discrepancy: where the expectation is, and what differed."""
    out = [style.heading(f"{discrepancy.code} ({discrepancy.phase}) at "
                         f"{where(discrepancy.location, case.path)}")]
    finding = discrepancy.finding
    if finding is None or discrepancy.message != finding.render():
        out.append(f"  {discrepancy.message}")  # else the finding lines below say it
    out += ["  " + line for line in case_excerpt(discrepancy.location, fallback_file=case.path)]
    detail = discrepancy.detail
    symbols = outcome.image.symbols if outcome.image is not None else {}
    if discrepancy.code == "stream-mismatch" and isinstance(detail.get("expected"), bytes):
        expected = detail["expected"]
        actual = detail.get("actual", b"")
        address = detail.get("address")
        if isinstance(expected, bytes) and isinstance(actual, bytes) and isinstance(address, int):
            out.append(f"  stream at {detail.get('label')} ({address:#x}), "
                       f"{len(expected) // 4} instruction(s):")
            out += ["  " + line for line in stream_diff(expected, actual, address, symbols, style)]
    elif discrepancy.code in ("error-mismatch", "missing-error", "unexpected-error"):
        out += error_comparison(detail)
    elif discrepancy.code == "caps-mismatch":
        per_cpu = detail.get("per_cpu")
        if isinstance(per_cpu, Sequence):
            out += [f"  cpu{index} detected: {', '.join(caps) or '(none)'}"
                    for index, caps in enumerate(per_cpu) if isinstance(caps, Sequence)]
    if discrepancy.finding is not None:
        out += ["  " + line for line in finding_lines(outcome, discrepancy.finding, style,
                                                      case.path)]
    return out


def run_heading(case: Case, outcome: Outcome) -> str:
    """One line naming the run: case, mode, schedule, seed and patcher."""
    return (f"case {case.id} ({case.path}): mode {outcome.mode}, schedule {outcome.schedule} "
            f"seed {outcome.seed}, patcher {outcome.patcher} ({outcome.dialect})")


def summary_line(verdict: Verdict, image: Image | None = None) -> str:
    """``N expectations failed: code, code x2`` (the line pytest's short summary shows);
    a finding is named (``unexpected-finding stale-fetch at site_b on cpu1``)."""
    counts: dict[str, int] = {}
    for discrepancy in verdict.discrepancies:
        code = discrepancy.code
        if discrepancy.finding is not None:
            code += f" {short_name(discrepancy.finding, image)}"
        counts[code] = counts.get(code, 0) + 1
    codes = ", ".join(code if n == 1 else f"{code} x{n}" for code, n in counts.items())
    total = len(verdict.discrepancies)
    return f"{total} expectation{'s' if total != 1 else ''} failed: {codes}"


def render_failure(case: Case, outcome: Outcome, verdict: Verdict, *, reproduce: str,
                   style: Style = PLAIN) -> str:
    """The whole failure report of one run: heading, each discrepancy, reproduce line."""
    out = [summary_line(verdict, outcome.image), run_heading(case, outcome)]
    for number, discrepancy in enumerate(verdict.discrepancies, start=1):
        body = discrepancy_lines(case, outcome, discrepancy, style)
        out.append("")
        out.append(f"[{number}] {body[0]}")
        out += body[1:]
    out += ["", f"reproduce: {reproduce}"]
    return "\n".join(out)


def render_load_error(error: AltpatchError) -> str:
    """A file that cannot be loaded, as ``file:line:col: CODE: message`` plus its source."""
    location = error.location
    head = location.file or "?"
    if location.line:
        head += f":{location.line}"
        if location.column:
            head += f":{location.column}"
    out = [f"{head}: {error.code}: {error.message}"]
    if error.hint:
        out.append(f"  hint: {error.hint}")
    if location.json_path:
        out.append(f"  at {location.json_path}")
    out += ["  " + line for line in case_excerpt(location)]
    return "\n".join(out)


# --------------------------------------------------------------------------- show


def _section_table(image: Image) -> list[str]:
    rows = [(s.name, f"{s.va:#x}", f"{len(s.content):#x}", s.perms, s.kind)
            for s in image.sections]
    header = ("section", "address", "size", "perms", "kind")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def _listing(code: bytes, base: int, symbols: Mapping[str, int],
             changed: Iterable[int] = (), style: Style = PLAIN) -> list[str]:
    marked = set(changed)
    out = []
    for row in _disassemble(code, base, symbols):
        text = (f"{'*' if row.address in marked else ' '} {_symbolize(symbols, row.address):<28} "
                f"{row.address:#018x}  {row.encoding}  {row.text}")
        out.append(style.bad(text) if row.address in marked else text)
    return out


def _entry_heading(image: Image, entry: AltEntry) -> str:
    cap = entry.cap_name or f"cap {entry.cap}"
    kind = "callback" if entry.is_callback else "replacement"
    return (f"site #{entry.index} at {image.symbolize(entry.site)} ({entry.site:#x}), "
            f"{entry.site_len} bytes, {cap} (field {entry.cap_field:#06x}), {kind} "
            f"{image.symbolize(entry.target)}")


def _site_table(image: Image, style: Style) -> list[str]:
    out: list[str] = []
    for entry in image.alt_entries:
        out.append(style.heading("  " + _entry_heading(image, entry)))
        try:
            site = image.read(entry.site, entry.site_len)
        except KeyError:
            out.append("    (site lies outside every section)")
            continue
        out.append("    site:")
        out += ["      " + line for line in _listing(site, entry.site, image.symbols)]
        if entry.is_callback:
            continue
        try:
            replacement = image.read(entry.target, entry.repl_len)
        except KeyError:
            out.append("    (replacement lies outside every section)")
            continue
        out.append("    replacement:")
        out += ["      " + line for line in _listing(replacement, entry.target, image.symbols)]
    return out or ["  (no alternatives entries)"]


def _payload_site_table(outcome: Outcome, style: Style) -> list[str]:
    """Each payload entry's site and replacement as loaded (before any patching)."""
    built = next((p for p in outcome.phases if p.phase == "load"), None)
    sections = [s for s in built.sections if s.kind == "payload"] if built else []

    def original(address: int, size: int) -> bytes | None:
        for section in sections:
            if section.va <= address and address + size <= section.va + len(section.before):
                return section.before[address - section.va:address - section.va + size]
        return None

    out: list[str] = []
    for payload, entry in outcome.payload_entries:
        cap = entry.cap_name or f"cap {entry.cap}"
        kind = "callback" if entry.is_callback else "replacement"
        out.append(style.heading(
            f"  {payload} site #{entry.index} at {symbolize(outcome.symbols, entry.site)} "
            f"({entry.site:#x}), {entry.site_len} bytes, {cap}, {kind} "
            f"{symbolize(outcome.symbols, entry.target)}"))
        parts = [("site", entry.site, entry.site_len)]
        if not entry.is_callback:
            parts.append(("replacement", entry.target, entry.repl_len))
        for label, address, size in parts:
            code = original(address, size)
            if code is None:
                out.append(f"    ({label} lies outside the payload's sections)")
                continue
            out.append(f"    {label}:")
            out += ["      " + line for line in _listing(code, address, outcome.symbols)]
    return out


def _patched_streams(image: Image, phase: PhaseOutcome, style: Style) -> list[str]:
    out: list[str] = []
    for entry in image.alt_entries:
        try:
            before = image.read(entry.site, entry.site_len)
        except KeyError:
            continue
        after = phase.read(entry.site, entry.site_len)
        if after is None:
            continue
        changed = [entry.site + offset for offset in range(0, len(after), 4)
                   if after[offset:offset + 4] != before[offset:offset + 4]]
        state = f"{len(changed)} word(s) changed" if changed else "unchanged"
        out.append(style.heading(f"  site #{entry.index} at {image.symbolize(entry.site)}: "
                                 f"{state}"))
        out += ["    " + line for line in _listing(after, entry.site, image.symbols, changed,
                                                    style)]
    return out or ["  (no sites)"]


def _show_case(case: Case, outcome: Outcome, style: Style) -> list[str]:
    out = [style.heading(f"case {case.id}: {case.title}"), f"  file: {case.path}"]
    out += [f"  ref: {ref}" for ref in case.refs]
    out.append(f"  run: mode {outcome.mode}, schedule {outcome.schedule} seed {outcome.seed}, "
               f"patcher {outcome.patcher} ({outcome.dialect})")
    out.append(style.heading("platform"))
    out += [f"  cpu{index}: {cpu.label}  midr={cpu.midr:#010x} revidr={cpu.revidr:#x} "
            f"ctr={cpu.ctr:#010x}" for index, cpu in enumerate(case.platform)]
    return out


def _show_image(outcome: Outcome, style: Style) -> list[str]:
    image = outcome.image
    if image is None:
        out = [style.heading("image"), "  (not built)"]
    else:
        out = [style.heading(f"image ({image.dialect})"), *_section_table(image),
               style.heading("alternatives"), *_site_table(image, style)]
    if outcome.payload_entries:
        out.append(style.heading("payload alternatives"))
        out += _payload_site_table(outcome, style)
    return out


def _show_phase(image: Image | None, phase: PhaseOutcome, style: Style) -> list[str]:
    out = [style.heading(f"after {phase.phase}"),
           f"  capabilities: {', '.join(phase.caps) or '(none)'}"]
    out += [f"  cpu{index} detected: {', '.join(caps) or '(none)'}"
            for index, caps in enumerate(phase.caps_per_cpu)]
    if image is not None:
        out += _patched_streams(image, phase, style)
    for probe in phase.probes:
        registers = " ".join(f"x{n}={value:#x}" for n, value in enumerate(probe.registers))
        state = "returned" if probe.completed else style.bad("did not return")
        out.append(f"  probe {probe.call} on cpu{probe.cpu}: {state} {registers}")
    return out


def _show_problems(case: Case, outcome: Outcome, style: Style) -> list[str]:
    """The findings, then the run's error (if any)."""
    out = [style.heading("findings")]
    if outcome.findings:
        for finding in outcome.findings:
            out += ["  " + line for line in finding_lines(outcome, finding, style, case.path)]
    else:
        out.append("  (none)")
    if outcome.error is not None:
        error = outcome.error
        out.append(style.heading("error"))
        out.append(style.bad(f"  {error.code} ({error.phase}): {error.message}"))
        if str(error.location):
            out.append(f"  at {error.location}")
    return out


def _show_timeline(outcome: Outcome, style: Style, trace_lines: int) -> list[str]:
    if not outcome.trace:
        return []
    shown = outcome.trace[-trace_lines:] if trace_lines else outcome.trace
    earlier = len(outcome.trace) - len(shown) + outcome.trace_dropped
    return [style.heading("timeline" + (f" (last {len(shown)} events, {earlier} "
                                        "earlier)" if earlier else "")),
            *("  " + event.render() for event in shown)]


def _show_verdict(case: Case, outcome: Outcome, verdict: Verdict, style: Style) -> list[str]:
    out = [style.heading("verdict")]
    if verdict.passed:
        out.append(style.good("  PASS"))
    else:
        out.append(style.bad(f"  FAIL: {len(verdict.discrepancies)} expectation(s) failed"))
        for discrepancy in verdict.discrepancies:
            out += ["  " + line for line in discrepancy_lines(case, outcome, discrepancy, style)]
    return out


def render_show(case: Case, outcome: Outcome, verdict: Verdict, *, style: Style = PLAIN,
                trace_lines: int = 80) -> str:
    """Everything ``altpatch show`` prints about one run of one case."""
    out = _show_case(case, outcome, style) + _show_image(outcome, style)
    for phase in outcome.phases:
        out += _show_phase(outcome.image, phase, style)
    out += _show_problems(case, outcome, style)
    out += _show_timeline(outcome, style, trace_lines)
    out += _show_verdict(case, outcome, verdict, style)
    return "\n".join(out)


__all__ = [
    "PLAIN",
    "Style",
    "case_excerpt",
    "discrepancy_lines",
    "display_path",
    "error_comparison",
    "finding_lines",
    "finding_timeline",
    "render_failure",
    "render_load_error",
    "render_show",
    "reproduce_command",
    "run_heading",
    "stream_diff",
    "style_for",
    "summary_line",
    "where",
]
