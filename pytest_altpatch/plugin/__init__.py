"""The pytest face of pytest-altpatch.

The plugin is inert unless ``--altpatch-corpus`` (or the ``altpatch_corpus`` ini key)
is given: it then collects every case file under a corpus's ``cases/`` directory as a
:class:`CaseFile`, with one :class:`CaseItem` per case x mode x schedule
(``corpus/cases/branch/b-external.yaml::boot[pct:0]``).  Every command-line option
has an ``altpatch_*`` ini twin so CI can set it in ``pyproject.toml`` or ``tox.ini``;
the command line wins over the ini file.

This module holds the hooks; :mod:`.settings` the options, :mod:`.state` what a
switched-on session knows (shared with the fixtures), :mod:`.nodes` the case file and
its items, :mod:`.selection` which files and items are kept.  Items run through
:func:`pytest_altpatch.pipeline.check`.

The pipeline (case loader, scenario runner, judge, reports) is imported only once the
plugin is switched on, so the plugin costs nothing in projects that merely have it
installed, and it never touches PyYAML's global loaders (the case-format layer uses a
private loader class).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Generator
from pathlib import Path

import pytest

from pytest_altpatch import __version__
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.fixtures import (
    altpatch_assert_conforms,
    altpatch_case_from_yaml,
    altpatch_catalog,
    altpatch_judge,
    altpatch_platform,
    altpatch_run,
)
from pytest_altpatch.plugin.nodes import CaseFile, CaseItem, CaseLoadItem, ConformanceFailure
from pytest_altpatch.plugin.selection import (
    AltpatchExpectationWarning,
    corpus_case_files,
    deselected,
)
from pytest_altpatch.plugin.settings import (
    CASE_SUFFIXES,
    ExpectationLine,
    Settings,
    add_options,
    read_expectation_file,
    read_settings,
)
from pytest_altpatch.plugin.state import REPORT_STATE, STATE, AltpatchState, plugin_state


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--altpatch-*`` options and their ini twins."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register markers; when asked, resolve the patcher and point collection at the corpus."""
    config.addinivalue_line(
        "markers", "altpatch_case(case_id): an item generated from an altpatch corpus case"
    )
    config.addinivalue_line(
        "markers", "altpatch_feature(name): a feature a corpus case requires of the patcher"
    )
    settings = read_settings(config)
    if settings is None:
        return
    from pytest_altpatch.dialects import DEFAULT_DIALECT, DIALECTS  # noqa: PLC0415
    from pytest_altpatch.patchers.registry import (  # noqa: PLC0415
        dialect_free_reference,
        parse_dialects,
    )
    from pytest_altpatch.pipeline import parse_schedules, patchers_under_test  # noqa: PLC0415
    from pytest_altpatch.supervisor import set_parallel_items  # noqa: PLC0415

    set_parallel_items(1 if settings.inprocess else settings.jobs)

    auto_dialect = settings.dialect is None and dialect_free_reference(settings.patcher)
    try:
        # The reference with no dialect asked: every dialect, the default one first.
        dialects = (DEFAULT_DIALECT, *(d for d in DIALECTS if d != DEFAULT_DIALECT)) \
            if auto_dialect else parse_dialects(settings.dialect)
    except AltpatchError as exc:
        raise pytest.UsageError(f"--altpatch-dialect: {exc.render()}") from None
    try:
        patchers = patchers_under_test(settings.patcher, dialects, inprocess=settings.inprocess,
                                       timeout=settings.timeout,
                                       prestart=not config.option.collectonly)
    except AltpatchError as exc:
        option = "--altpatch-dialect" if exc.code == "PATCHER_DIALECT" and settings.dialect \
            else "--altpatch-patcher"
        raise pytest.UsageError(f"{option}: {exc.render()}") from None
    try:
        schedules = tuple(parse_schedules(settings.schedules))
    except AltpatchError as exc:
        raise pytest.UsageError(f"--altpatch-schedules: {exc.render()}") from None
    except ValueError as exc:
        raise pytest.UsageError(f"--altpatch-schedules: {exc}") from None
    config.stash[STATE] = REPORT_STATE[0] = AltpatchState(settings, patchers, schedules,
                                                          auto_dialect=auto_dialect)
    if config.args_source != pytest.Config.ArgsSource.ARGS and settings.from_command_line:
        # No paths on the command line: the corpus replaces testpaths when asked for on
        # the command line, and joins them when switched on from the ini file.  Corpus
        # paths are never pytest paths (see pytest_make_collect_report).
        config.args = []


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Plugin, corpus, patcher and emulator versions, at the top of the run."""
    state = plugin_state(config)
    if state is None:
        return []
    lines = [f"altpatch: plugin {__version__}"]
    for root in state.settings.roots:
        corpus = state.corpus(root)
        version = corpus.version or f"unusable ({corpus.error})"
        lines.append(f"altpatch: corpus {version} at {root}")
    if state.auto_dialect:
        lines.append("altpatch: dialect auto: each case runs under the first dialect it lists "
                     f"that applies ({state.patcher.dialect} first); --altpatch-dialect "
                     "all runs every one")
    for patcher in state.patchers:
        facts = patcher.facts
        lines.append(f"altpatch: patcher {facts.name} {facts.version}, dialect "
                     f"{facts.dialect}, features: "
                     f"{', '.join(sorted(facts.features)) or '(none)'}")
        # Native patchers: their objects and hashes.
        lines += [f"altpatch: {line}" for line in facts.describe()]
    engines = []
    for distribution in ("unicorn", "capstone", "keystone-engine"):
        try:
            engines.append(f"{distribution} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            engines.append(f"{distribution} (not installed)")
    lines.append("altpatch: " + ", ".join(engines))
    lines.append("altpatch: schedules " + ", ".join(s.label for s in state.schedules)
                 + f"; modes {', '.join(state.settings.modes)}")
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
        collector: pytest.Collector) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Add the corpus's case files to the session's top-level nodes.

    Corpus paths are data, not pytest collection paths: pytest never walks a corpus
    directory, so a ``conftest.py`` or ``test_*.py`` shipped inside one is never
    imported, and case files given on the command line are ordinary pytest paths
    (claimed by :func:`pytest_collect_file`).
    """
    report: pytest.CollectReport = yield
    state = plugin_state(collector.config)
    if state is None or not isinstance(collector, pytest.Session) or not report.passed:
        return report
    assert isinstance(report.result, list)
    rootpath = collector.config.rootpath
    for choice in corpus_case_files(state.settings):
        # Relative to the rootdir when inside it, else to the corpus's parent directory.
        base = rootpath if rootpath in choice.path.parents else choice.id_base
        nodeid = choice.path.relative_to(base).as_posix()
        case_file: CaseFile = CaseFile.from_parent(collector, path=choice.path, name=nodeid,
                                                   nodeid=nodeid)
        case_file.corpus_root = choice.root
        report.result.append(case_file)
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count altpatch items run and not applicable, for the coverage line."""
    state = REPORT_STATE[0]
    if state is not None:
        state.tally.add(report.when, report.outcome, report.user_properties)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The coverage line: items run, and not applicable by what the patcher lacks."""
    state = plugin_state(terminalreporter.config)
    if state is None:
        return
    line = state.tally.line(strict=state.settings.strict)
    if line is not None:
        terminalreporter.write_line(line)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the items that will run in a worker, in run order, so the next ones can
    start while one is judged (``--altpatch-jobs``)."""
    state = plugin_state(session.config)
    if state is None or state.settings.jobs < 2:
        return
    state.runnable = [item for item in session.items
                      if isinstance(item, CaseItem) and item.runs_supervised
                      and item.get_closest_marker("skip") is None]
    state.runnable_index = {item: index for index, item in enumerate(state.runnable)}


def pytest_unconfigure(config: pytest.Config) -> None:
    """Forget this session's state (pytester runs several sessions in one process)."""
    if plugin_state(config) is not None:
        from pytest_altpatch.supervisor import abandon_ahead  # noqa: PLC0415

        abandon_ahead()  # items started ahead of a turn that never came (-x, Ctrl-C)
    if REPORT_STATE[0] is plugin_state(config):
        REPORT_STATE[0] = None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Never let pytest walk into corpus data (its cases are collected as data).

    With the corpus switched on from an ini file inside the project, pytest's own walk
    of the project would otherwise reach the corpus and import a ``conftest.py`` or
    ``test_*.py`` in it.  A corpus root that holds the rootdir keeps its other
    directories (the project's tests): only its ``cases/`` is data then.
    """
    state = plugin_state(config)
    if state is None:
        return None
    resolved = collection_path.resolve()
    rootpath = config.rootpath.resolve()
    data = [selection for selection, _ in state.settings.own_cases]
    for root in state.settings.roots:
        holds_project = root == rootpath or root in rootpath.parents
        data.append(root / "cases" if holds_project else root)
    if any(resolved == place or place in resolved.parents for place in data):
        return True
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CaseFile | None:
    """Claim a case file named as a pytest path, if a selected corpus holds it."""
    state = plugin_state(parent.config)
    if state is None or file_path.suffix not in CASE_SUFFIXES:
        return None
    root = state.root_of_case_file(file_path)
    resolved = file_path.resolve()
    if root is None or any(choice.path == resolved
                           for choice in corpus_case_files(state.settings)):
        return None  # collected from the corpus already
    case_file: CaseFile = CaseFile.from_parent(parent, path=file_path)
    case_file.corpus_root = root
    return case_file


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Apply feature filters, skip/xfail files and the shard, in that order."""
    state = plugin_state(config)
    if state is None:
        return
    dropped = deselected(state, items)
    if dropped:
        unwanted = {id(item) for item in dropped}
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if id(item) not in unwanted]


__all__ = [
    "AltpatchExpectationWarning",
    "CaseFile",
    "CaseItem",
    "CaseLoadItem",
    "ConformanceFailure",
    "ExpectationLine",
    "Settings",
    "altpatch_assert_conforms",
    "altpatch_case_from_yaml",
    "altpatch_catalog",
    "altpatch_judge",
    "altpatch_platform",
    "altpatch_run",
    "plugin_state",
    "read_expectation_file",
    "read_settings",
]
