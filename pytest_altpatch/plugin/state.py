"""What the switched-on plugin knows for one pytest process, kept in the config's stash.

Both the plugin's hooks and nodes and the fixtures read it through :func:`plugin_state`,
so neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from pytest_altpatch.plugin.settings import Settings
from pytest_altpatch.tally import Tally

if TYPE_CHECKING:
    from pytest_altpatch.pipeline import CorpusState, PatcherUnderTest, ScheduleChoice


@dataclass
class AltpatchState:
    """What the switched-on plugin knows for this pytest process."""

    settings: Settings
    #: Each patcher under test (one per dialect): what the session knows of it, and the
    #: patcher object only with ``--altpatch-inprocess`` (else it lives in the workers).
    patchers: tuple[PatcherUnderTest, ...]
    schedules: tuple[ScheduleChoice, ...]
    corpora: dict[Path, CorpusState] = field(default_factory=dict)
    #: Case id -> the file that first defined it, in collection order.
    case_ids: dict[str, Path] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)

    @property
    def patcher(self) -> PatcherUnderTest:
        """The first patcher under test (the fixtures' and the header's default)."""
        return self.patchers[0]

    @property
    def dialect_in_ids(self) -> bool:
        """Whether item ids name the dialect (``boot[linux-4.9,pct:0]``): when the run
        judges more than one dialect."""
        return len(self.patchers) > 1

    def corpus(self, root: Path) -> CorpusState:
        """The version and catalog of ``root``, loaded once per process."""
        from pytest_altpatch.pipeline import corpus_state  # noqa: PLC0415

        if root not in self.corpora:
            self.corpora[root] = corpus_state(root, self.settings.accept_major)
        return self.corpora[root]

    def root_of_case_file(self, path: Path) -> Path | None:
        """The corpus root whose ``cases/`` holds ``path``, if the plugin collects it."""
        resolved = path.resolve()
        for root in self.settings.roots:
            if root / "cases" in resolved.parents:
                return root
        for selection, root in self.settings.own_cases:
            if resolved == selection or selection in resolved.parents:
                return root
        return None


STATE: Final = pytest.StashKey["AltpatchState | None"]()
#: The state ``pytest_runtest_logreport`` counts into (that hook gets no config).
REPORT_STATE: list[AltpatchState | None] = [None]


def plugin_state(config: pytest.Config) -> AltpatchState | None:
    """The switched-on plugin's state, or None when it is inert."""
    return config.stash.get(STATE, None)


__all__ = ["REPORT_STATE", "STATE", "AltpatchState", "plugin_state"]
