"""What the harness needs to know about a patcher without holding the patcher itself.

Collection and reports need a patcher's name, version, dialect and features; the
patcher object (and any code its module runs when imported or created) lives in a
supervised worker process, so the session holds only these facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_altpatch.patchers.contract import Patcher


@dataclass(frozen=True)
class PatcherFacts:
    """A patcher's identity and declared features, as plain data."""

    name: str
    version: str
    dialect: str
    features: frozenset[str]
    #: The dialect to ask of the patcher spec to get this patcher again (in a worker).
    asked_dialect: str | None = None
    #: Extra header lines (a native patcher's objects and hashes).
    description: tuple[str, ...] = ()

    @classmethod
    def of(cls, patcher: Patcher | PatcherFacts, asked_dialect: str | None = None
           ) -> PatcherFacts:
        """The facts a patcher declares (copied into plain strings, so they pickle)."""
        describe = getattr(patcher, "describe", None)
        lines = tuple(str(line) for line in describe()) if callable(describe) else ()
        return cls(str(patcher.name), str(patcher.version), str(patcher.dialect),
                   frozenset(str(feature) for feature in patcher.features), asked_dialect,
                   lines)

    @classmethod
    def of_all(cls, patchers: Sequence[Patcher],
               dialects: Sequence[str] | None) -> tuple[PatcherFacts, ...]:
        """Facts for what ``resolve_patchers(spec, dialects)`` returned, in order."""
        if dialects is not None and len(dialects) == len(patchers):
            return tuple(cls.of(p, d) for p, d in zip(patchers, dialects, strict=True))
        return tuple(cls.of(p) for p in patchers)

    def describe(self) -> tuple[str, ...]:
        """The patcher's extra header lines."""
        return self.description


__all__ = ["PatcherFacts"]
