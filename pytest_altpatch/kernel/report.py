"""Rendering an :class:`~.runner.ImageRun` for people (text) and programs (JSON)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final

from pytest_altpatch.a64.disasm import disassemble
from pytest_altpatch.kernel.runner import EntryResult, ImageRun

#: Trace kinds the short timeline leaves out (they are counted instead).
_BULK_KINDS: Final = frozenset({"write", "dc", "ic", "dsb", "isb", "trap", "apply"})
TIMELINE_LINES: Final = 40


def listing(code: bytes, address: int) -> str:
    """The words of ``code`` at ``address`` disassembled, ``; `` between them."""
    return "; ".join(line.text for line in disassemble(code, address)) or "-"


def _cap_text(entry: EntryResult) -> str:
    if entry.entry.is_callback:
        return f"{entry.entry.cap_field} callback"
    return f"{entry.entry.cap} {entry.cap_name or '?'}"


def summary_line(run: ImageRun) -> str:
    """One line of counts: entries, applied, sites and words changed, re-targets."""
    return (f"entries {len(run.entries)}, applied {run.applied}, sites changed "
            f"{run.sites_changed}, words changed {run.words_changed}, branch re-targets "
            f"{run.retargets}, findings {len(run.findings)}")


def timeline(run: ImageRun, lines: int = TIMELINE_LINES) -> list[str]:
    """Non-bulk trace events (start, stubs, log, done, faults) and a count of the rest."""
    shown = [e.render() for e in run.trace if e.kind not in _BULK_KINDS]
    counts = Counter(e.kind for e in run.trace if e.kind in _BULK_KINDS)
    out = shown[:lines]
    if len(shown) > lines:
        out.append(f"... {len(shown) - lines} more")
    out.append("bulk events: " + (", ".join(f"{k} {counts[k]}" for k in sorted(counts))
                                  or "none"))
    if run.trace_dropped:
        out.append(f"(trace dropped {run.trace_dropped} oldest events)")
    return out


def render_text(run: ImageRun, *, all_entries: bool = True) -> str:
    """The full human report of a run."""
    out = [
        f"{run.image}: profile {run.profile} (dialect {run.dialect}, NCAPS {run.ncaps}), "
        f"{len(run.platform)} CPUs, schedule {run.schedule}, seed {run.seed}",
        "platform: " + ", ".join(_grouped(run.platform)),
        "caps on: " + (", ".join(f"{n} {name or '?'}" for n, name in run.caps) or "none"),
        summary_line(run) + f", run ended: {run.reason}",
        "",
        f"{'idx':>4}  {'site':<46} {'cap':<40} {'applied':<7}  before -> after",
    ]
    for entry in run.entries:
        if not all_entries and not entry.applied and entry.before == entry.after:
            continue
        site = f"{entry.entry.site:#x} <{entry.site_symbol}>"
        before = listing(entry.before, entry.entry.site)
        after = listing(entry.after, entry.entry.site)
        change = before if entry.before == entry.after else f"{before}  ->  {after}"
        out.append(f"{entry.index:>4}  {site:<46} {_cap_text(entry):<40} "
                   f"{'yes' if entry.applied else 'no':<7}  {change}")
    out.append("")
    out.append("findings: " + ("none" if not run.findings and not run.stray_writes else ""))
    out.extend(f"  {f.render()}" for f in run.findings)
    out.extend(f"  write outside every site at {va:#x}" for va in run.stray_writes)
    out.append("timeline:")
    out.extend(f"  {line}" for line in timeline(run))
    return "\n".join(out) + "\n"


def _grouped(labels: Iterable[str]) -> list[str]:
    groups: list[tuple[int, str]] = []
    for label in labels:
        if groups and groups[-1][1] == label:
            groups[-1] = (groups[-1][0] + 1, label)
        else:
            groups.append((1, label))
    return [f"{count}x {label}" for count, label in groups]


def to_json(run: ImageRun) -> dict[str, object]:
    """The run as JSON-ready data (bytes as hex strings, addresses as ``0x`` strings)."""
    return {
        "image": run.image,
        "profile": run.profile,
        "dialect": run.dialect,
        "ncaps": run.ncaps,
        "platform": list(run.platform),
        "schedule": run.schedule,
        "seed": run.seed,
        "reason": run.reason,
        "caps": [{"cap": n, "name": name} for n, name in run.caps],
        "summary": {"entries": len(run.entries), "applied": run.applied,
                    "sites_changed": run.sites_changed, "words_changed": run.words_changed,
                    "retargets": run.retargets, "instructions": run.instructions},
        "entries": [
            {
                "index": e.index,
                "site": f"{e.entry.site:#x}",
                "symbol": e.site_symbol,
                "cap": e.entry.cap,
                "cap_name": e.cap_name,
                "callback": e.entry.is_callback,
                "applied": e.applied,
                "before": e.before.hex(),
                "after": e.after.hex(),
                "before_asm": listing(e.before, e.entry.site),
                "after_asm": listing(e.after, e.entry.site),
                "retargeted_words": e.retargeted_words,
            }
            for e in run.entries
        ],
        "findings": [
            {"code": f.code, "message": f.message, "cpu": f.cpu, "pc": f.pc,
             "address": f.address, "step": f.step}
            for f in run.findings
        ],
        "stray_writes": [f"{va:#x}" for va in run.stray_writes],
        "cpu_states": list(run.cpu_states),
        "timeline": timeline(run),
    }


__all__ = ["listing", "render_text", "summary_line", "timeline", "to_json"]
