"""Fixtures for people who write their own Python tests against the pipeline.

They are available wherever the plugin is installed (switching the corpus on is not
needed), and use the corpus given with ``--altpatch-corpus``/``altpatch_corpus`` when
there is one, else the bundled corpus::

    def test_my_patcher_handles_adrp(altpatch_case_from_yaml, altpatch_run,
                                     altpatch_assert_conforms):
        case = altpatch_case_from_yaml(CASE_TEXT)
        outcome = altpatch_run(case, patcher="mypkg.patcher:MyPatcher", schedule="random:3")
        altpatch_assert_conforms(case, outcome)

Heavy modules (loader, runner, judge) are imported when a fixture is used, not when
pytest loads the plugin.
"""

from __future__ import annotations

import dataclasses
import itertools
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Case, Catalog, CpuInstance
    from pytest_altpatch.judge import Verdict
    from pytest_altpatch.machine import Schedule
    from pytest_altpatch.patchers.contract import Patcher
    from pytest_altpatch.scenarios.outcome import Outcome


def _corpus_root(config: pytest.Config) -> Path:
    """The first corpus the plugin was pointed at, else the bundled one."""
    from pytest_altpatch.plugin.state import plugin_state  # noqa: PLC0415
    from pytest_altpatch.resources import bundled_corpus  # noqa: PLC0415

    state = plugin_state(config)
    if state is not None and state.settings.roots:
        return state.settings.roots[0]
    return bundled_corpus()


@dataclass(frozen=True)
class CaseFromYaml:
    """Turns inline YAML text into a resolved :class:`Case` through the spec loader."""

    catalog: Catalog
    corpus_root: Path
    directory: Path
    _counter: itertools.count[int]

    def __call__(self, text: str, *, name: str | None = None) -> Case:
        """Write ``text`` (dedented) to a temporary case file and load it.

        Raises :class:`~pytest_altpatch.errors.SpecError` with ``file:line:col`` for a
        case the loader refuses, exactly as for a corpus file.
        """
        from pytest_altpatch.cases.case import read_case  # noqa: PLC0415

        file_name = name or f"case-{next(self._counter)}.yaml"
        path = self.directory / file_name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        case, problems = read_case(path, self.catalog, corpus_root=self.corpus_root)
        if problems:
            raise problems[0]
        if case is None:  # pragma: no cover - read_case reports a problem instead
            raise RuntimeError(f"{path}: the loader returned neither a case nor a problem")
        return case


@dataclass(frozen=True)
class ScenarioRun:
    """Runs one case under one patcher and schedule on the emulated machine."""

    catalog: Catalog

    def __call__(self, case: Case, *, mode: str = "boot", patcher: str | Patcher = "reference",
                 dialect: str | None = None, schedule: str | Schedule = DEFAULT_SCHEDULES,
                 seed: int | None = None, timeout: float | None = None) -> Outcome:
        """Return the :class:`Outcome`; ``schedule`` is one label (``random:3``) or a
        :class:`~pytest_altpatch.machine.Schedule`.

        ``seed`` overrides the seed the label carries.  ``patcher`` is a name for the
        registry (``reference:xen-4.17``, ``package.module:attr``) or a patcher object;
        either runs in this process.
        """
        from pytest_altpatch.patchers.registry import resolve_patcher  # noqa: PLC0415
        from pytest_altpatch.pipeline import parse_schedules, run_in_process  # noqa: PLC0415

        chosen = resolve_patcher(patcher, dialect=dialect) if isinstance(patcher, str) \
            else patcher
        choices = parse_schedules(schedule)
        if len(choices) != 1:
            raise ValueError(f"altpatch_run takes one schedule, {schedule!r} names "
                             f"{len(choices)}")
        choice = choices[0] if seed is None else dataclasses.replace(choices[0], seed=seed)
        return run_in_process(case, self.catalog, chosen, mode, choice, timeout=timeout)


def judge_outcome(case: Case, outcome: Outcome) -> Verdict:
    """The judge's verdict on ``outcome`` (``verdict.passed``, ``verdict.codes``)."""
    from pytest_altpatch.judge import judge  # noqa: PLC0415

    return judge(case, outcome)


def assert_conforms(case: Case, outcome: Outcome) -> None:
    """Fail the calling test with the full conformance report unless the case passes."""
    from pytest_altpatch.pipeline import judged  # noqa: PLC0415
    from pytest_altpatch.report import render_failure  # noqa: PLC0415

    checked = judged(case, outcome, mode=outcome.mode, patcher=outcome.patcher,
                     schedule=outcome.schedule, seed=outcome.seed)
    if checked.passed:
        return
    pytest.fail(render_failure(case, outcome, checked.verdict, reproduce=checked.reproduce),
                pytrace=False)


@pytest.fixture(scope="session")
def altpatch_catalog(pytestconfig: pytest.Config) -> Catalog:
    """The catalog (CPUs, errata, features, numberings) of the corpus in use."""
    from pytest_altpatch.cases.catalog import load_catalog  # noqa: PLC0415

    return load_catalog(_corpus_root(pytestconfig))


@pytest.fixture
def altpatch_platform(
    altpatch_catalog: Catalog,
) -> Callable[[str], tuple[CpuInstance, ...]]:
    """Factory: ``"2x cortex-a57/r1p0, 2x cortex-a53/r0p4"`` -> the platform's CPUs."""
    from pytest_altpatch.cases.platform import parse_platform  # noqa: PLC0415

    def platform(text: str) -> tuple[CpuInstance, ...]:
        return parse_platform(text, altpatch_catalog)

    return platform


@pytest.fixture
def altpatch_case_from_yaml(altpatch_catalog: Catalog, pytestconfig: pytest.Config,
                            tmp_path: Path) -> CaseFromYaml:
    """Factory: inline case YAML -> :class:`Case`, loaded from a temporary file."""
    directory = tmp_path / "altpatch-cases"
    directory.mkdir(exist_ok=True)
    return CaseFromYaml(altpatch_catalog, _corpus_root(pytestconfig), directory,
                        itertools.count(1))


@pytest.fixture
def altpatch_run(altpatch_catalog: Catalog) -> ScenarioRun:
    """Factory: run a case with a chosen patcher, mode and schedule -> :class:`Outcome`."""
    return ScenarioRun(altpatch_catalog)


@pytest.fixture
def altpatch_judge() -> Callable[[Case, Outcome], Verdict]:
    """The judge: ``altpatch_judge(case, outcome)`` -> :class:`Verdict`."""
    return judge_outcome


@pytest.fixture
def altpatch_assert_conforms() -> Callable[[Case, Outcome], None]:
    """``altpatch_assert_conforms(case, outcome)`` fails with the report unless it passes."""
    return assert_conforms


__all__ = [
    "CaseFromYaml",
    "ScenarioRun",
    "altpatch_assert_conforms",
    "altpatch_case_from_yaml",
    "altpatch_catalog",
    "altpatch_judge",
    "altpatch_platform",
    "altpatch_run",
    "assert_conforms",
    "judge_outcome",
]
