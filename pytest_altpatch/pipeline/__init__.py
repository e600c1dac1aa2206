"""The pipeline every face runs: one case, one mode, one schedule, one patcher.

Resolve the schedules a session asks for (:mod:`.schedules`), load corpora, case files
and the patchers under test (:mod:`.loading`), decide whether a case applies to a
patcher (:mod:`.applicability`), run the item in a supervised worker or in process,
judge its outcome and say how to reproduce it (:mod:`.checking`).  The pytest plugin, the
fixtures and the ``altpatch`` command are thin faces over :func:`check`;
:func:`run_corpus` is the same pipeline over the bundled corpus for tests and
benchmarks.  Nothing here imports pytest or a face.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_altpatch.cases.modes import MODES, case_modes, has_mode
from pytest_altpatch.lazy import submodule_exports

if TYPE_CHECKING:  # the same names, imported on first use (pytest_altpatch.lazy)
    from pytest_altpatch.pipeline.applicability import missing_parts, not_applicable
    from pytest_altpatch.pipeline.checking import Checked, check, judged, run, run_in_process, start
    from pytest_altpatch.pipeline.corpus_run import CaseResult, run_corpus
    from pytest_altpatch.pipeline.loading import (
        CorpusState,
        LoadedCase,
        PatcherUnderTest,
        corpus_state,
        patchers_for,
        patchers_under_test,
        read_case_file,
    )
    from pytest_altpatch.pipeline.schedules import ScheduleChoice, parse_schedules

_EXPORTS = {
    "applicability": ("missing_parts", "not_applicable"),
    "checking": ("Checked", "check", "judged", "run", "run_in_process", "start"),
    "corpus_run": ("CaseResult", "run_corpus"),
    "loading": (
        "CorpusState",
        "LoadedCase",
        "PatcherUnderTest",
        "corpus_state",
        "patchers_for",
        "patchers_under_test",
        "read_case_file",
    ),
    "schedules": ("ScheduleChoice", "parse_schedules"),
}
__getattr__, __dir__ = submodule_exports(__name__, _EXPORTS)

__all__ = [
    "MODES",
    "CaseResult",
    "Checked",
    "CorpusState",
    "LoadedCase",
    "PatcherUnderTest",
    "ScheduleChoice",
    "case_modes",
    "check",
    "corpus_state",
    "has_mode",
    "judged",
    "missing_parts",
    "not_applicable",
    "parse_schedules",
    "patchers_for",
    "patchers_under_test",
    "read_case_file",
    "run",
    "run_corpus",
    "run_in_process",
    "start",
]
