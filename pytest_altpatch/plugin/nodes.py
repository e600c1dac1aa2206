"""The plugin's nodes: a case file, and one item per case x mode x schedule (x dialect).

Domain failures are rendered by ``repr_failure`` (the conformance report, no traceback)
and located by ``reportinfo`` (the case file and the line of the mode's expectations).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_altpatch.errors import AltpatchError, SpecError
from pytest_altpatch.plugin.state import plugin_state
from pytest_altpatch.tally import NOT_APPLICABLE_PROPERTY

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from pytest_altpatch.cases.model import Case, Catalog
    from pytest_altpatch.pipeline import PatcherUnderTest, ScheduleChoice
    from pytest_altpatch.plugin.state import AltpatchState


class ConformanceFailure(Exception):
    """A case's expectations did not hold; carries the rendered report."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


class CaseFile(pytest.File):
    """A case file: one item per mode x schedule, or one failing item if it cannot load."""

    corpus_root: Path

    def collect(self) -> Iterator[pytest.Item]:
        """Load the case (never raising) and yield its items in a stable order."""
        state = plugin_state(self.config)
        if state is None:  # pragma: no cover - only collected when switched on
            return
        loaded = self._load(state)
        if isinstance(loaded, BaseException):
            yield CaseLoadItem.from_parent(self, name="load", error=loaded)
            return
        case, catalog, version = loaded
        first = state.case_ids.setdefault(case.id, self.path)
        if first != self.path:
            error = SpecError("SPEC_DUPLICATE_ID",
                              f"case id {case.id!r} is also the id of {first}",
                              location=case.location_of("id"))
            yield CaseLoadItem.from_parent(self, name="load", error=error)
            return
        yield from self._items(state, case, catalog, version)

    def _load(self, state: AltpatchState) -> tuple[Case, Catalog, str] | BaseException:
        """The case, its catalog and corpus version; or why it cannot be loaded."""
        from pytest_altpatch.cases.case import read_case  # noqa: PLC0415

        corpus = state.corpus(self.corpus_root)
        if corpus.catalog is None:
            return corpus.error or RuntimeError(f"corpus {self.corpus_root} has no catalog")
        try:
            case, problems = read_case(self.path, corpus.catalog, corpus_root=self.corpus_root)
        except Exception as exc:  # a bug in the loader: still one failing item, not a crash
            return exc
        if case is None:
            return problems[0]
        return case, corpus.catalog, corpus.version or ""

    def _items(self, state: AltpatchState, case: Case, catalog: Catalog,
               version: str) -> Iterator[CaseItem]:
        """One item per mode x dialect x schedule the session runs."""
        from pytest_altpatch.pipeline import (  # noqa: PLC0415
            case_modes,
            missing_parts,
            not_applicable,
        )

        # One item per dialect the case lists among those judged; a case written for none
        # of them still gets an item (per mode), skipped with why.
        patchers = [p for p in state.patchers if p.dialect in case.dialects] \
            or list(state.patchers[:1])
        for mode in case_modes(case):
            if mode not in state.settings.modes:
                continue
            for patcher in patchers:
                # Decided at collection, so the skip points at the case and -rs says why.
                reason = not_applicable(case, patcher.facts, mode)
                prefix = f"{patcher.dialect}," if state.dialect_in_ids else ""
                for schedule in state.schedules:
                    item = CaseItem.from_parent(
                        self, name=f"{mode}[{prefix}{schedule.label}]", case=case,
                        catalog=catalog, mode=mode, schedule=schedule,
                        corpus_version=version, patcher=patcher)
                    if reason is not None:
                        item.mark_not_applicable(reason,
                                                 missing_parts(case, patcher.facts, mode),
                                                 strict=state.settings.strict)
                    yield item


class CaseLoadItem(pytest.Item):
    """Stands for a case file that cannot be loaded; fails with the located error."""

    def __init__(self, *, error: BaseException, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.error = error

    def runtest(self) -> None:
        """Fail with the load error."""
        raise self.error

    def repr_failure(self, excinfo: ExceptionInfo[BaseException],
                     style: str | None = None) -> str | TerminalRepr:
        """``file:line:col: CODE: message`` for a spec error; a traceback for our bugs."""
        from pytest_altpatch.report import render_load_error  # noqa: PLC0415
        from pytest_altpatch.terminal import escape_text  # noqa: PLC0415

        if isinstance(excinfo.value, AltpatchError):
            return escape_text(render_load_error(excinfo.value))
        return super().repr_failure(excinfo, style=style)  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """The file and line of the load error."""
        line = getattr(getattr(self.error, "location", None), "line", None)
        return self.path, (line - 1 if line else None), f"altpatch: {self.path.name}"


class CaseItem(pytest.Item):
    """One case run in one mode under one schedule against the configured patcher."""

    def __init__(self, *, case: Case, catalog: Catalog, mode: str, schedule: ScheduleChoice,
                 corpus_version: str, patcher: PatcherUnderTest, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.case = case
        self.catalog = catalog
        self.mode = mode
        self.schedule = schedule
        self.corpus_version = corpus_version
        self.patcher = patcher
        #: Why the patcher cannot run this case (set at collection), or None.
        self.not_applicable: str | None = None
        self.add_marker(pytest.mark.altpatch_case(case.id))
        for feature in case.requires:
            self.add_marker(pytest.mark.altpatch_feature(feature))
        self.user_properties += [
            ("altpatch_case", case.id),
            ("altpatch_mode", mode),
            ("altpatch_schedule", schedule.label),
            ("altpatch_seed", str(schedule.seed)),
            ("altpatch_patcher", f"{patcher.facts.name} {patcher.facts.version}"),
            ("altpatch_dialect", patcher.dialect),
            ("altpatch_corpus_version", corpus_version),
        ]

    def mark_not_applicable(self, reason: str, parts: Sequence[str], *, strict: bool) -> None:
        """Skip this item with ``reason`` (fail it instead when ``strict``)."""
        self.not_applicable = reason
        self.user_properties.append((NOT_APPLICABLE_PROPERTY, ",".join(parts) or "other"))
        if not strict:
            self.add_marker(pytest.mark.skip(reason=f"not applicable: {reason}"))

    def runtest(self) -> None:
        """Run the case, judge the outcome, and fail with a report if anything differs."""
        from pytest_altpatch.pipeline import check  # noqa: PLC0415
        from pytest_altpatch.report import render_failure  # noqa: PLC0415
        from pytest_altpatch.terminal import escape_text  # noqa: PLC0415

        state = plugin_state(self.config)
        if state is None:  # pragma: no cover - items exist only when switched on
            pytest.skip("altpatch is not switched on")
        if self.not_applicable is not None:  # only reached under --altpatch-strict
            raise ConformanceFailure(f"not applicable (failed under --altpatch-strict): "
                                     f"{self.not_applicable}")
        checked = check(self.case, self.catalog, self.patcher, self.mode, self.schedule,
                        timeout=state.settings.timeout, cwd=self.config.invocation_params.dir)
        self.user_properties += [
            ("altpatch_findings",
             ",".join(sorted({f.code for f in checked.outcome.findings}))),
            ("altpatch_discrepancies", ",".join(checked.verdict.codes)),
        ]
        if not checked.passed:
            # Case text and patcher messages are data: never raw control characters.
            raise ConformanceFailure(escape_text(render_failure(
                self.case, checked.outcome, checked.verdict, reproduce=checked.reproduce)))

    def repr_failure(self, excinfo: ExceptionInfo[BaseException],
                     style: str | None = None) -> str | TerminalRepr:
        """The conformance report, with no traceback; a real traceback for our own bugs."""
        if isinstance(excinfo.value, ConformanceFailure):
            return excinfo.value.report
        return super().repr_failure(excinfo, style=style)  # type: ignore[arg-type]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """The case file, the line of this mode's expectations, and the case id."""
        location = self.case.location_of(f"expect.{self.mode}")
        line = location.line or self.case.location.line
        return self.path, (line - 1 if line else None), f"altpatch: {self.case.id}"


__all__ = ["CaseFile", "CaseItem", "CaseLoadItem", "ConformanceFailure"]
