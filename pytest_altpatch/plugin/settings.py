"""The plugin's options: registered once, mirrored as ini keys, merged into :class:`Settings`.

Every command-line option has an ``altpatch_*`` ini twin so CI can set it in
``pyproject.toml`` or ``tox.ini``; the command line wins over the ini file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from pytest_altpatch.cases.modes import MODES
from pytest_altpatch.scenarios.default_schedule import DEFAULT_SCHEDULES

#: (option suffix, ini type, help, default) for options that take a value.
VALUE_OPTIONS: tuple[tuple[str, str, str, str | None], ...] = (
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
CASE_SUFFIXES: Final = frozenset({".yaml"})


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


def add_options(parser: pytest.Parser) -> None:
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
    for suffix, ini_type, help_text, default in VALUE_OPTIONS:
        dest = "altpatch_" + suffix.replace("-", "_")
        group.addoption(f"--altpatch-{suffix}", dest=dest, default=None, help=help_text)
        parser.addini(dest, type=ini_type, default=default, help=help_text)  # type: ignore[arg-type]


__all__ = ["BUNDLED", "CASE_SUFFIXES", "VALUE_OPTIONS", "ExpectationLine", "Settings",
           "add_options", "read_expectation_file", "read_settings"]
