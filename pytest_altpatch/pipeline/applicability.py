"""Whether a case can run against a patcher in a mode, and if not, why."""

from __future__ import annotations

from pytest_altpatch.cases.model import Case
from pytest_altpatch.cases.modes import has_mode
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.patchers.facts import PatcherFacts


def not_applicable(case: Case, patcher: Patcher | PatcherFacts, mode: str) -> str | None:
    """Why ``case`` cannot run against ``patcher`` in ``mode``, or None if it can."""
    missing = [name for name in case.requires if name not in patcher.features]
    if missing:
        return f"{patcher.name} does not declare feature(s): {', '.join(missing)}"
    if patcher.dialect not in case.dialects:
        return (f"case is written for {', '.join(case.dialects)}; "
                f"{patcher.name} implements {patcher.dialect}")
    if not has_mode(case, mode):
        return f"case has no {mode} expectations"
    return None


def missing_parts(case: Case, patcher: Patcher | PatcherFacts, mode: str) -> tuple[str, ...]:
    """What keeps ``patcher`` from running ``case`` in ``mode``, one word each:
    ``feature:NAME`` per missing feature, else ``dialect``, else ``mode``."""
    missing = tuple(f"feature:{name}" for name in case.requires if name not in patcher.features)
    if missing:
        return missing
    if patcher.dialect not in case.dialects:
        return ("dialect",)
    if not has_mode(case, mode):
        return ("mode",)
    return ()


__all__ = ["missing_parts", "not_applicable"]
