"""The coverage line at the end of a session: how many items ran, and how many were
not applicable, by what the patcher lacks.

A patcher that declares little would otherwise come out green with most of the corpus
skipped.  Items carry their applicability in ``user_properties`` (which xdist ships to
the controller with every report; :func:`pytest_altpatch.pipeline.missing_parts` names
it), so the count is right with or without workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

#: The ``user_properties`` key holding why an item is not applicable ("" when it is).
NOT_APPLICABLE_PROPERTY: Final = "altpatch_not_applicable"
CASE_PROPERTY: Final = "altpatch_case"


@dataclass
class Tally:
    """Items run and items not applicable, counted from test reports."""

    ran: int = 0
    failed: int = 0
    not_applicable: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, when: str, outcome: str, properties: Sequence[tuple[str, object]]) -> None:
        """Count one report of an altpatch item (``when``: setup, call, teardown)."""
        values = dict(properties)
        if CASE_PROPERTY not in values:
            return
        reasons = str(values.get(NOT_APPLICABLE_PROPERTY, ""))
        if reasons:
            # Skipped at setup, or failed at call under --altpatch-strict: count once.
            if (when == "setup" and outcome == "skipped") or when == "call":
                self.not_applicable += 1
                self.by_reason.update(reasons.split(","))
            return
        if when == "call":
            self.ran += 1
            self.failed += outcome == "failed"

    def line(self, *, strict: bool) -> str | None:
        """``altpatch coverage: 11 items run (1 failed), 35 not applicable: ...``."""
        if not (self.ran or self.not_applicable):
            return None
        text = f"altpatch coverage: {self.ran} item(s) run"
        if self.failed:
            text += f" ({self.failed} failed)"
        text += f", {self.not_applicable} not applicable"
        if self.by_reason:
            parts = [f"{count} {_describe(reason)}"
                     for reason, count in sorted(self.by_reason.items(),
                                                 key=lambda kv: (-kv[1], kv[0]))]
            text += ": " + ", ".join(parts)
        if self.not_applicable and not strict:
            text += " (--altpatch-strict makes them fail)"
        return text


def _describe(reason: str) -> str:
    kind, _, name = reason.partition(":")
    if kind == "feature":
        return f"lacking {name}"
    if kind == "dialect":
        return "written for other dialects"
    return "without expectations in that mode"


__all__ = ["CASE_PROPERTY", "NOT_APPLICABLE_PROPERTY", "Tally"]
