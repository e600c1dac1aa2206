"""What the harness needs to know about a patcher without holding the patcher itself.

Collection and reports need a patcher's name, version, dialect and features; the
patcher object (and any code its module runs when imported or created) lives in a
supervised worker process, so the session holds only these facts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_altpatch.patchers.contract import Patcher


@dataclass(frozen=True)
class PatcherFacts:
    """A patcher's identity and declared features, as plain data."""

    name: str
    version: str
    dialect: str
    features: frozenset[str]

    @classmethod
    def of(cls, patcher: Patcher | PatcherFacts) -> PatcherFacts:
        """The facts a patcher declares (copied into plain strings, so they pickle)."""
        return cls(str(patcher.name), str(patcher.version), str(patcher.dialect),
                   frozenset(str(feature) for feature in patcher.features))


__all__ = ["PatcherFacts"]
