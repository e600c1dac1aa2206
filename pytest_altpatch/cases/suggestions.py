""""Did you mean ...?" hints for misspelt names (keys, CPUs, capabilities)."""

from __future__ import annotations

from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``name``, if any is reasonably close."""
    pool = sorted(set(candidates))
    lowered = {candidate.lower(): candidate for candidate in pool}
    if name.lower() in lowered:  # a case slip is always the best guess
        return lowered[name.lower()]
    import difflib  # noqa: PLC0415 - only a misspelt name needs it

    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A ready-to-print hint (``did you mean 'cortex-a53'?``) or None."""
    guess = closest(name, candidates)
    return f"did you mean {guess!r}?" if guess is not None else None


__all__ = ["closest", "did_you_mean"]
