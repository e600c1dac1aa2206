"""The pytest face of pytest-altpatch.

The plugin is inert unless ``--altpatch-corpus`` (or the ``altpatch_corpus`` ini key)
is given: it then collects every case file under a corpus's ``cases/`` directory as a
:class:`CaseFile`, with one :class:`CaseItem` per case x mode x schedule
(``corpus/cases/branch/b-external.yaml::boot[pct:0]``).  Every command-line option
has an ``altpatch_*`` ini twin so CI can set it in ``pyproject.toml`` or ``tox.ini``;
the command line wins over the ini file.

The pipeline (spec loader, scenario runner, judge, reports) is imported only once the
plugin is switched on, so the plugin costs nothing in projects that merely have it
installed, and it never touches PyYAML's global loaders (the spec layer uses a
private loader class).
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from pytest_altpatch import __version__
from pytest_altpatch.cases import modes
from pytest_altpatch.cases.modes import MODES
from pytest_altpatch.errors import AltpatchError, SpecError
from pytest_altpatch.fixtures import (
    altpatch_assert_conforms,
    altpatch_case_from_yaml,
    altpatch_catalog,
    altpatch_judge,
    altpatch_platform,
    altpatch_run,
)
from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES
from pytest_altpatch.tally import NOT_APPLICABLE_PROPERTY, Tally

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from pytest_altpatch.cases.model import Case, Catalog
    from pytest_altpatch.patchers.contract import Patcher
    from pytest_altpatch.patchers.facts import PatcherFacts
    from pytest_altpatch.pipeline import ScheduleChoice

#: (option suffix, ini type, help, default) for options that take a value.
_VALUE_OPTIONS: tuple[tuple[str, str, str, str | None], ...] = (
    ("patcher", "string", "patcher to judge: NAME (e.g. reference:linux-6.1) or module:attr",
     "reference"),
    ("dialect", "string",
     "dialects to run, comma-separated, or 'all' (default: the reference patcher runs "
     "every dialect a case lists; another patcher its own)", None),
    ("modes", "string", "comma-separated modes to run: boot, late (default: all)", None),
    ("schedules", "string",
     "comma-separated schedules, e.g. pct:0-1,rr:100,random:1-3,adversarial "
     f"(default: {DEFAULT_SCHEDULES})", None),
    ("features-include", "string",
     "comma-separated features: only run cases that require one of them", None),
    ("features-exclude", "string",
     "comma-separated features: leave out cases that require any of them", None),
    ("skip-file", "string", "file of case ids or id prefixes to skip, one per line", None),
    ("xfail-file", "string",
     "file of case ids or id prefixes expected to fail (a pass is a strict XPASS)", None),
    ("shard", "string",
     "run shard K of N (K/N, 1-based): the items whose index in id order is K-1 modulo N",
     None),
    ("accept-version", "string", "accept a corpus whose major version is this one", None),
    ("catalog", "string",
     "corpus root whose catalog resolves cases outside any corpus (default: bundled)", None),
    ("timeout", "string", "host seconds per item before it fails as hung", None),
)

#: The ``--altpatch-corpus``/``altpatch_corpus`` word for the corpus shipped with the plugin.
BUNDLED: Final = "bundled"
_CASE_SUFFIXES: Final = frozenset({".yaml"})


class AltpatchExpectationWarning(pytest.PytestWarning):
    """A line of a skip or xfail file matches no collected item (it has gone stale)."""


class ConformanceFailure(Exception):
    """A case's expectations did not hold; carries the rendered report."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ExpectationLine:
    """One line of a skip or xfail file: an id (or id prefix) and why."""

    file: str
    line: int
    pattern: str
    reason: str

    def matches(self, key: str) -> bool:
        """Whether ``key`` is this id, or starts with it at an id boundary.

        A prefix must end where an id part ends (``/``, ``::``, ``[`` or ``,``), so
        ``b-external`` selects ``b-external::boot[pct:0]`` but not ``b-external-2``.
        """
        if key == self.pattern:
            return True
        if not key.startswith(self.pattern):
            return False
        return self.pattern[-1] in "/:[," or key[len(self.pattern)] in "/:[,"


def read_expectation_file(path: Path, kind: str) -> tuple[ExpectationLine, ...]:
    """Parse a skip/xfail file: one id or prefix per line, ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise pytest.UsageError(f"--altpatch-{kind}-file: cannot read {path}: {exc}") from None
    lines: list[ExpectationLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        pattern, _, comment = raw.partition("#")
        pattern = pattern.strip()
        if not pattern:
            continue
        reason = comment.strip() or f"listed in {path.name}:{number}"
        lines.append(ExpectationLine(str(path), number, pattern, reason))
    return tuple(lines)


@dataclass(frozen=True)
class Settings:
    """The plugin's options, merged from the command line and the ini file."""

    selections: tuple[Path, ...]  # corpus roots, case directories or case files
    roots: tuple[Path, ...]  # the corpus root of each selection, deduplicated
    from_command_line: bool  # --altpatch-corpus given (rather than only the ini key)
    patcher: str
    dialect: str | None
    modes: tuple[str, ...]
    schedules: str
    features_include: tuple[str, ...]
    features_exclude: tuple[str, ...]
    skips: tuple[ExpectationLine, ...]
    xfails: tuple[ExpectationLine, ...]
    shard: tuple[int, int] | None
    accept_major: int | None
    timeout: float | None
    #: Not-applicable items fail instead of being skipped (--altpatch-strict).
    strict: bool = False
    #: Selections outside any corpus (one's own case directories or files), each with
    #: the corpus root whose catalog resolves them (--altpatch-catalog, else bundled).
    own_cases: tuple[tuple[Path, Path], ...] = ()
    #: Run items in this process instead of a supervised worker (debugging only).
    inprocess: bool = False


def _value(config: pytest.Config, dest: str) -> str | None:
    """An option's value: the command line first, then the ini key; empty is unset."""
    given = config.getoption(dest)
    if given is None:
        given = config.getini(dest)
    if given is None:
        return None
    text = str(given).strip()
    return text or None


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _resolve_selection(word: str, base: Path) -> Path:
    from pytest_altpatch.resources import bundled_corpus  # noqa: PLC0415

    if word == BUNDLED:
        return bundled_corpus().resolve()
    path = Path(word)
    return (path if path.is_absolute() else base / path).resolve()


def _corpus_words(config: pytest.Config) -> tuple[list[str], Path, bool] | None:
    """The corpus words asked for, the directory they are relative to, and their origin."""
    given: list[str] | None = config.getoption("altpatch_corpus")
    if given is not None:
        return (given or [BUNDLED]), config.invocation_params.dir, True
    ini: list[str] = config.getini("altpatch_corpus")
    if not ini:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return list(ini), base, False


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, slash, count = text.partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        k = n = 0
    if not slash or n < 1 or not 1 <= k <= n:
        raise pytest.UsageError(f"--altpatch-shard: expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


def _parse_major(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise pytest.UsageError(f"--altpatch-accept-version: expected a major version number, "
                                f"got {text!r}")
    return int(text)


def _parse_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:  # also refuses nan
        raise pytest.UsageError(f"--altpatch-timeout: expected positive seconds, got {text!r}")
    return seconds


def read_settings(config: pytest.Config) -> Settings | None:
    """The plugin's settings, or None when the plugin was not asked to do anything."""
    from pytest_altpatch.cases.corpus import find_corpus_root  # noqa: PLC0415

    asked = _corpus_words(config)
    if asked is None:
        return None
    words, base, from_command_line = asked
    selections: list[Path] = []
    roots: list[Path] = []
    own_cases: list[tuple[Path, Path]] = []
    catalog_word = _value(config, "altpatch_catalog")
    catalog_root = _catalog_root(catalog_word, base) if catalog_word else None
    for word in words:
        path = _resolve_selection(word, base)
        if not path.exists():
            raise pytest.UsageError(f"--altpatch-corpus: {word}: no such file or directory")
        root = find_corpus_root(path if path.is_dir() else path.parent)
        if root is None:
            # One's own cases: resolved with the named (else the bundled) catalog, as
            # `altpatch run` and `altpatch lint` do.
            root = catalog_root or _resolve_selection(BUNDLED, base)
            own_cases.append((path, root))
        selections.append(path)
        if root not in roots:
            roots.append(root)
    modes = _names(_value(config, "altpatch_modes")) or MODES
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise pytest.UsageError(f"--altpatch-modes: unknown mode {unknown[0]!r} "
                                f"(known: {', '.join(MODES)})")
    skip_file = _value(config, "altpatch_skip_file")
    xfail_file = _value(config, "altpatch_xfail_file")
    return Settings(
        selections=tuple(selections),
        roots=tuple(roots),
        from_command_line=from_command_line,
        patcher=_value(config, "altpatch_patcher") or "reference",
        dialect=_value(config, "altpatch_dialect"),
        modes=tuple(mode for mode in MODES if mode in modes),
        schedules=_value(config, "altpatch_schedules") or DEFAULT_SCHEDULES,
        features_include=_names(_value(config, "altpatch_features_include")),
        features_exclude=_names(_value(config, "altpatch_features_exclude")),
        skips=read_expectation_file(_resolve_selection(skip_file, base), "skip")
        if skip_file else (),
        xfails=read_expectation_file(_resolve_selection(xfail_file, base), "xfail")
        if xfail_file else (),
        shard=_parse_shard(_value(config, "altpatch_shard")),
        accept_major=_parse_major(_value(config, "altpatch_accept_version")),
        timeout=_parse_seconds(_value(config, "altpatch_timeout")),
        own_cases=tuple(own_cases),
        inprocess=bool(config.getoption("altpatch_inprocess")
                       or config.getini("altpatch_inprocess")),
        strict=bool(config.getoption("altpatch_strict") or config.getini("altpatch_strict")),
    )


def _catalog_root(word: str, base: Path) -> Path:
    """The corpus root named by ``--altpatch-catalog`` (a root or its ``catalog/``)."""
    from pytest_altpatch.cases.corpus import find_corpus_root  # noqa: PLC0415

    path = _resolve_selection(word, base)
    root = find_corpus_root(path) if path.is_dir() else None
    if root is None:
        raise pytest.UsageError(f"--altpatch-catalog: {word} is not a corpus (no directory "
                                "at or above it holds VERSION and catalog/)")
    return root


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class CorpusState:
    """One corpus root: its version and catalog, or why it cannot be used."""

    root: Path
    version: str | None
    catalog: Catalog | None
    error: BaseException | None


@dataclass
class AltpatchState:
    """What the switched-on plugin knows for this pytest process."""

    settings: Settings
    #: What the session knows of each patcher under test (one per dialect); the
    #: patchers themselves live in the supervised workers.
    patchers: tuple[PatcherFacts, ...]
    schedules: tuple[ScheduleChoice, ...]
    corpora: dict[Path, CorpusState] = field(default_factory=dict)
    #: The patcher objects by dialect, only with ``--altpatch-inprocess``.
    inprocess_patchers: dict[str, Patcher] = field(default_factory=dict)
    #: Case id -> the file that first defined it, in collection order.
    case_ids: dict[str, Path] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)

    @property
    def patcher(self) -> PatcherFacts:
        """The first patcher under test (the fixtures' and the header's default)."""
        return self.patchers[0]

    @property
    def dialect_in_ids(self) -> bool:
        """Whether item ids name the dialect (``boot[linux-4.9,pct:0]``): when the run
        judges more than one dialect."""
        return len(self.patchers) > 1

    def corpus(self, root: Path) -> CorpusState:
        """The version and catalog of ``root``, loaded once per process."""
        if root not in self.corpora:
            self.corpora[root] = _load_corpus_state(root, self.settings.accept_major)
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


#: Loaded catalogs by (root, accepted major, fingerprint of the files they come from).
#: A process runs one session, except under pytester or an IDE that runs pytest again
#: in-process; catalogs are frozen values, so sharing them between sessions is safe.
_CORPUS_CACHE: dict[tuple[Path, int | None, tuple[tuple[str, int, int], ...]], CorpusState] = {}


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of every file a corpus's catalog depends on."""
    files = [root / "VERSION"]
    for part in ("catalog", "schema"):
        if (root / part).is_dir():
            files += sorted(path for path in (root / part).rglob("*") if path.is_file())
    found = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def _load_corpus_state(root: Path, accept_major: int | None) -> CorpusState:
    key = (root, accept_major, _fingerprint(root))
    if key not in _CORPUS_CACHE:
        _CORPUS_CACHE[key] = _read_corpus_state(root, accept_major)
    return _CORPUS_CACHE[key]


def _read_corpus_state(root: Path, accept_major: int | None) -> CorpusState:
    from pytest_altpatch.cases.catalog import read_catalog  # noqa: PLC0415
    from pytest_altpatch.cases.corpus import check_version  # noqa: PLC0415

    try:
        version = check_version(root, accept_major)
        catalog, problems = read_catalog(root)
    except AltpatchError as exc:
        return CorpusState(root, None, None, exc)
    if problems or catalog is None:
        return CorpusState(root, version, None, problems[0] if problems else None)
    return CorpusState(root, version, catalog, None)


_STATE: Final = pytest.StashKey["AltpatchState | None"]()
#: The state ``pytest_runtest_logreport`` counts into (that hook gets no config).
_REPORT_STATE: list[AltpatchState | None] = [None]


def plugin_state(config: pytest.Config) -> AltpatchState | None:
    """The switched-on plugin's state, or None when it is inert."""
    return config.stash.get(_STATE, None)


# --------------------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--altpatch-*`` options and their ini twins."""
    group = parser.getgroup("altpatch", "AArch64 alternatives conformance (pytest-altpatch)")
    group.addoption(
        "--altpatch-corpus",
        nargs="*",
        metavar="PATH",
        default=None,
        help="collect conformance cases from PATHs: corpus roots, case directories or case "
             "files (default, or the word 'bundled': the corpus shipped with the plugin)",
    )
    parser.addini(
        "altpatch_corpus",
        type="args",
        default=[],
        help="conformance corpus paths (relative to the ini file, or 'bundled'); setting it "
             "turns the plugin on",
    )
    inprocess_help = ("run each item's machine and patcher in the pytest process instead of a "
                      "supervised worker: for debuggers; a patcher can then hang, end or "
                      "tamper with the session, and the timeout is only cooperative")
    group.addoption("--altpatch-inprocess", dest="altpatch_inprocess", action="store_true",
                    default=False, help=inprocess_help)
    parser.addini("altpatch_inprocess", type="bool", default=False, help=inprocess_help)
    strict_help = "fail the items the patcher cannot run (not applicable) instead of skipping"
    group.addoption("--altpatch-strict", dest="altpatch_strict", action="store_true",
                    default=False, help=strict_help)
    parser.addini("altpatch_strict", type="bool", default=False, help=strict_help)
    for suffix, ini_type, help_text, default in _VALUE_OPTIONS:
        dest = "altpatch_" + suffix.replace("-", "_")
        group.addoption(f"--altpatch-{suffix}", dest=dest, default=None, help=help_text)
        parser.addini(dest, type=ini_type, default=default, help=help_text)  # type: ignore[arg-type]


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
    from pytest_altpatch.patchers.facts import PatcherFacts  # noqa: PLC0415
    from pytest_altpatch.patchers.registry import (  # noqa: PLC0415
        parse_dialects,
        resolve_patchers,
    )
    from pytest_altpatch.pipeline import parse_schedules  # noqa: PLC0415
    from pytest_altpatch.supervisor import patchers_facts  # noqa: PLC0415

    try:
        dialects = parse_dialects(settings.dialect)
    except AltpatchError as exc:
        raise pytest.UsageError(f"--altpatch-dialect: {exc.render()}") from None
    inprocess_patchers: dict[str, Patcher] = {}
    try:
        if settings.inprocess:
            resolved = resolve_patchers(settings.patcher, dialects)
            inprocess_patchers = {patcher.dialect: patcher for patcher in resolved}
            patchers = PatcherFacts.of_all(resolved, dialects)
        else:
            # Even creating a patcher runs its code: that happens in a worker too.
            patchers = patchers_facts(settings.patcher, dialects, timeout=settings.timeout)
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
    config.stash[_STATE] = _REPORT_STATE[0] = AltpatchState(
        settings, patchers, schedules, inprocess_patchers=inprocess_patchers)
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
    for patcher in state.patchers:
        lines.append(f"altpatch: patcher {patcher.name} {patcher.version}, dialect "
                     f"{patcher.dialect}, features: "
                     f"{', '.join(sorted(patcher.features)) or '(none)'}")
        describe = getattr(patcher, "describe", None)  # native patchers: objects and hashes
        if callable(describe):
            lines += [f"altpatch: {line}" for line in describe()]
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
                       if path.suffix in _CASE_SUFFIXES and path.is_file()) \
            if selection.is_dir() else [selection]
        for path in paths:
            if selection in own or root / "cases" in path.parents:
                found.setdefault(path, CaseFileChoice(path, root, id_base))
    return list(found.values())
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count altpatch items run and not applicable, for the coverage line."""
    state = _REPORT_STATE[0]
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


def pytest_unconfigure(config: pytest.Config) -> None:
    """Forget this session's state (pytester runs several sessions in one process)."""
    if _REPORT_STATE[0] is plugin_state(config):
        _REPORT_STATE[0] = None


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
    if state is None or file_path.suffix not in _CASE_SUFFIXES:
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
    if dropped:
        unwanted = {id(item) for item in dropped}
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if id(item) not in unwanted]


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


# --------------------------------------------------------------------------- nodes


def case_modes(case: Case) -> tuple[str, ...]:
    """The modes a case has expectations for (``boot`` if it seems to have none)."""
    return modes.case_modes(case)


class CaseFile(pytest.File):
    """A case file: one item per mode x schedule, or one failing item if it cannot load."""

    corpus_root: Path

    def collect(self) -> Iterator[pytest.Item]:
        """Load the case (never raising) and yield its items in a stable order."""
        from pytest_altpatch.cases.case import read_case  # noqa: PLC0415
        from pytest_altpatch.pipeline import not_applicable  # noqa: PLC0415
        from pytest_altpatch.tally import missing_parts  # noqa: PLC0415

        state = plugin_state(self.config)
        if state is None:  # pragma: no cover - only collected when switched on
            return
        corpus = state.corpus(self.corpus_root)
        if corpus.catalog is None:
            error = corpus.error or RuntimeError(f"corpus {self.corpus_root} has no catalog")
            yield CaseLoadItem.from_parent(self, name="load", error=error)
            return
        try:
            case, problems = read_case(self.path, corpus.catalog, corpus_root=self.corpus_root)
        except Exception as exc:  # a bug in the loader: still one failing item, not a crash
            yield CaseLoadItem.from_parent(self, name="load", error=exc)
            return
        if case is None:
            yield CaseLoadItem.from_parent(self, name="load", error=problems[0])
            return
        first = state.case_ids.setdefault(case.id, self.path)
        if first != self.path:
            error = SpecError("SPEC_DUPLICATE_ID",
                              f"case id {case.id!r} is also the id of {first}",
                              location=case.location_of("id"))
            yield CaseLoadItem.from_parent(self, name="load", error=error)
            return
        # One item per dialect the case lists among those judged; a case written for none
        # of them still gets an item (per mode), skipped with why.
        patchers = [p for p in state.patchers if p.dialect in case.dialects] \
            or list(state.patchers[:1])
        for mode in case_modes(case):
            if mode not in state.settings.modes:
                continue
            for patcher in patchers:
                # Decided at collection, so the skip points at the case and -rs says why.
                reason = not_applicable(case, patcher, mode)
                prefix = f"{patcher.dialect}," if state.dialect_in_ids else ""
                for schedule in state.schedules:
                    item = CaseItem.from_parent(
                        self, name=f"{mode}[{prefix}{schedule.label}]", case=case,
                        catalog=corpus.catalog, mode=mode, schedule=schedule,
                        corpus_version=corpus.version or "", patcher=patcher)
                    if reason is not None:
                        item.mark_not_applicable(reason, missing_parts(case, patcher, mode),
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
                 corpus_version: str, patcher: PatcherFacts, **kwargs: object) -> None:
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
            ("altpatch_patcher", f"{patcher.name} {patcher.version}"),
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
        from pytest_altpatch.judge import judge  # noqa: PLC0415
        from pytest_altpatch.report import render_failure, reproduce_command  # noqa: PLC0415
        from pytest_altpatch.supervisor import item_request, run_item  # noqa: PLC0415
        from pytest_altpatch.terminal import escape_text  # noqa: PLC0415

        state = plugin_state(self.config)
        if state is None:  # pragma: no cover - items exist only when switched on
            pytest.skip("altpatch is not switched on")
        if self.not_applicable is not None:  # only reached under --altpatch-strict
            raise ConformanceFailure(f"not applicable (failed under --altpatch-strict): "
                                     f"{self.not_applicable}")
        request = item_request(self.case, self.catalog, mode=self.mode,
                               patcher=state.settings.patcher,
                               dialect=self.patcher.asked_dialect, schedule=self.schedule.name,
                               seed=self.schedule.seed, timeout=state.settings.timeout,
                               facts=self.patcher)
        outcome = run_item(request, patcher=state.inprocess_patchers.get(self.patcher.dialect))
        verdict = judge(self.case, outcome)
        self.user_properties += [
            ("altpatch_findings", ",".join(sorted({f.code for f in outcome.findings}))),
            ("altpatch_discrepancies", ",".join(verdict.codes)),
        ]
        if not verdict.passed:
            command = reproduce_command(self.case.path, mode=self.mode,
                                        patcher=state.settings.patcher,
                                        dialect=self.patcher.dialect,
                                        schedule=self.schedule.label, seed=self.schedule.seed,
                                        cwd=self.config.invocation_params.dir)
            # Case text and patcher messages are data: never raw control characters.
            raise ConformanceFailure(escape_text(render_failure(self.case, outcome, verdict,
                                                                reproduce=command)))

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
    "case_modes",
    "plugin_state",
    "read_expectation_file",
    "read_settings",
]
