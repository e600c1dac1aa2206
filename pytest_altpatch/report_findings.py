"""A finding told for a kernel developer: where in the case it is, what was written,
what ran, and the step that was missing.

The machine records a finding with raw facts (physical address, writer CPU, write step,
old and new words, the first missing step of the maintenance sequence).  A report does
not dump them: it says them once, in words, at the case line they are about, and puts
the missing step into the timeline where it should have been.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pytest_altpatch.a64.disasm import disassemble
from pytest_altpatch.errors import AltpatchError, Location
from pytest_altpatch.findings import Finding

if TYPE_CHECKING:
    from pytest_altpatch.image.model import Image

#: The instruction each missing step would have been, and whose step it is: the
#: writer's (it cleans, invalidates and waits) or the executing CPU's (it synchronises).
MISSING_STEPS: Final[Mapping[str, tuple[str, str]]] = {
    "clean": ("writer", "DC CVAU (CIVAC with A53 errata) of the line"),
    "dsb-after-clean": ("writer", "DSB after the clean"),
    "invalidate": ("writer", "IC IVAU / IC IALLUIS reaching cpu{cpu}"),
    "dsb-after-invalidate": ("writer", "DSB after the invalidate"),
    "context-synchronization": ("executing", "ISB"),
}
#: Detail keys told in words (or of no use to a reader); others are listed compactly.
_TOLD: Final = frozenset({"missing", "old", "new", "pa", "writer", "write_step", "where"})


def case_line_of(image: Image | None, address: int | None,
                 case_path: str | None = None) -> Location | None:
    """The case file line that produced the code at ``address``, if any."""
    if image is None or address is None:
        return None
    span = image.source_map.span_at(address)
    if span is None or not span.line:
        return None
    return Location(file=image.source_map.file or case_path, line=span.line)


def _case_text(location: Location) -> str | None:
    if location.file is None or not location.line:
        return None
    try:
        lines = Path(location.file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return lines[location.line - 1].strip() if location.line <= len(lines) else None


def _instruction(word: object, address: int, symbols: Mapping[str, int]) -> str | None:
    if not isinstance(word, int) or isinstance(word, bool):
        return None
    try:
        lines = disassemble(word.to_bytes(4, "little"), address, symbols)
    except (AltpatchError, OverflowError):
        return f".inst {word:#010x}"
    return lines[0].text if lines else f".inst {word:#010x}"


def missing_step(finding: Finding) -> tuple[int, str] | None:
    """(CPU, instruction) of the step the finding says was missing, for the timeline."""
    step = finding.detail.get("missing")
    if not isinstance(step, str) or step not in MISSING_STEPS or finding.cpu is None:
        return None
    whose, text = MISSING_STEPS[step]
    writer = finding.detail.get("writer")
    cpu = writer if whose == "writer" and isinstance(writer, int) else finding.cpu
    return cpu, f"{text.format(cpu=finding.cpu)}  <- missing"


def story(finding: Finding, image: Image | None, case_path: str | None) -> list[str]:
    """The finding in a few sentences (no raw detail keys)."""
    out: list[str] = []
    symbols = image.symbols if image is not None else {}
    address = finding.address if finding.address is not None else finding.pc
    place = case_line_of(image, address, case_path)
    if address is not None and image is not None:
        name = image.symbolize(address)
        if place is not None:
            text = _case_text(place)
            out.append(f"at {name}, from case line {place.line}"
                       + (f": {text}" if text else ""))
        else:
            out.append(f"at {name}")
    detail = finding.detail
    old = _instruction(detail.get("old"), address or 0, symbols)
    new = _instruction(detail.get("new"), address or 0, symbols)
    writer, write_step = detail.get("writer"), detail.get("write_step")
    if new is not None:
        who = f"cpu{writer}" if isinstance(writer, int) else "a CPU"
        when = f" at step {write_step}" if isinstance(write_step, int) else ""
        change = f"{old} -> {new}" if old is not None else new
        out.append(f"{who} wrote{when}: {change}")
    missing = missing_step(finding)
    if missing is not None:
        cpu, text = missing
        out.append(f"cpu{finding.cpu} executed it before the write was synchronised for it: "
                   f"the missing step is {text.removesuffix('  <- missing')} on cpu{cpu}")
    extra = {key: value for key, value in sorted(detail.items()) if key not in _TOLD}
    if extra:
        out.append(", ".join(f"{key}: {_value(key, value)}" for key, value in extra.items()))
    return out


def _value(key: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and key in (
            "address", "va", "pc", "word", "target", "site", "alias"):
        return f"{value:#x}"
    return str(value)


def short_name(finding: Finding, image: Image | None) -> str:
    """``stale-fetch at site_b on cpu1``: the finding in a few words, for summaries."""
    address = finding.address if finding.address is not None else finding.pc
    text = finding.code
    if image is not None and address is not None:
        text += f" at {image.symbolize(address)}"
    if finding.cpu is not None:
        text += f" on cpu{finding.cpu}"
    return text


__all__ = ["MISSING_STEPS", "case_line_of", "missing_step", "short_name", "story"]
