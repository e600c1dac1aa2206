"""Which case files the plugin collects, and which of their items it keeps.

Case files come from the corpus selections (never from pytest's own walk); items are
then filtered by feature, marked from the skip and xfail files, and sharded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_altpatch.plugin.nodes import CaseItem, CaseLoadItem
from pytest_altpatch.plugin.settings import CASE_SUFFIXES, ExpectationLine, Settings
from pytest_altpatch.plugin.state import AltpatchState


class AltpatchExpectationWarning(pytest.PytestWarning):
    """A line of a skip or xfail file matches no collected item (it has gone stale)."""


@dataclass(frozen=True)
class CaseFileChoice:
    """One case file to collect: its corpus root (whose catalog resolves it) and the
    directory its node id is relative to when it lies outside the rootdir."""

    path: Path
    root: Path
    id_base: Path


def corpus_case_files(settings: Settings) -> list[CaseFileChoice]:
    """Every case file the selections name, in a stable order, each once."""
    from pytest_altpatch.cases.corpus import find_corpus_root  # noqa: PLC0415

    own = dict(settings.own_cases)
    found: dict[Path, CaseFileChoice] = {}
    for selection in settings.selections:
        directory = selection if selection.is_dir() else selection.parent
        if selection in own:  # one's own cases: every YAML file under the selection
            root, start, id_base = own[selection], directory, directory.parent
        else:
            corpus_root = find_corpus_root(directory)
            if corpus_root is None:
                continue
            root, id_base = corpus_root, corpus_root.parent
            start = root / "cases" if directory == root else directory
        paths = sorted(path for path in start.rglob("*")
                       if path.suffix in CASE_SUFFIXES and path.is_file()) \
            if selection.is_dir() else [selection]
        for path in paths:
            if selection in own or root / "cases" in path.parents:
                found.setdefault(path, CaseFileChoice(path, root, id_base))
    return list(found.values())


def deselected(state: AltpatchState, items: Sequence[pytest.Item]) -> list[pytest.Item]:
    """Apply feature filters, skip/xfail files and the shard, in that order; the items
    the feature filters and the shard leave out."""
    settings = state.settings
    ours: list[pytest.Item] = [item for item in items
                               if isinstance(item, (CaseItem, CaseLoadItem))]
    _check_feature_names(state)
    dropped: list[pytest.Item] = [item for item in ours if isinstance(item, CaseItem)
                                  and not _features_selected(item.case.requires, settings)]
    _apply_expectations(ours, settings.skips, "skip")
    _apply_expectations(ours, settings.xfails, "xfail")
    if settings.shard is not None:
        # Round-robin over the id-sorted items: a shard's items do not depend on the
        # collection order, and slow topics (one directory) spread over every shard.
        index, count = settings.shard
        filtered = {id(item) for item in dropped}
        ordered = sorted((item for item in ours if id(item) not in filtered),
                         key=lambda item: item.nodeid)
        dropped += [item for position, item in enumerate(ordered)
                    if position % count != index - 1]
    return dropped


def _features_selected(requires: Sequence[str], settings: Settings) -> bool:
    if settings.features_include and not set(requires) & set(settings.features_include):
        return False
    return not set(requires) & set(settings.features_exclude)


def _check_feature_names(state: AltpatchState) -> None:
    from pytest_altpatch.cases.suggestions import did_you_mean  # noqa: PLC0415

    known: set[str] = set()
    for root in state.settings.roots:
        catalog = state.corpus(root).catalog
        if catalog is None:
            return  # the corpus problem is reported by its items
        known |= set(catalog.patcher_features)
    for option, names in (("features-include", state.settings.features_include),
                          ("features-exclude", state.settings.features_exclude)):
        for name in names:
            if name not in known:
                hint = did_you_mean(name, known)
                raise pytest.UsageError(f"--altpatch-{option}: unknown feature {name!r}"
                                        + (f" ({hint})" if hint else ""))


def _item_keys(item: pytest.Item) -> tuple[str, ...]:
    if isinstance(item, CaseItem):
        return item.nodeid, f"{item.case.id}::{item.name}"
    return (item.nodeid,)


def _warn_stale(line: ExpectationLine, kind: str) -> None:
    message = f"{kind} entry {line.pattern!r} matches no collected item"
    try:
        # Attributed to the expectation file's line, so the summary points at it.
        warnings.warn_explicit(AltpatchExpectationWarning(message), AltpatchExpectationWarning,
                               filename=line.file, lineno=line.line)
    except AltpatchExpectationWarning:
        # -W error made it an error: a clean usage error, not an internal error.
        raise pytest.UsageError(f"{line.file}:{line.line}: {message}") from None


def _apply_expectations(items: Sequence[pytest.Item], lines: Sequence[ExpectationLine],
                        kind: str) -> None:
    for line in lines:
        hits = [item for item in items if any(line.matches(key) for key in _item_keys(item))]
        if not hits:
            _warn_stale(line, kind)
        for item in hits:
            if kind == "skip":
                item.add_marker(pytest.mark.skip(reason=line.reason))
            else:
                item.add_marker(pytest.mark.xfail(reason=line.reason, strict=True))


__all__ = ["AltpatchExpectationWarning", "CaseFileChoice", "corpus_case_files", "deselected"]
