"""The pytest face of pytest-altpatch.

The plugin is inert unless ``--altpatch-corpus`` (or the ``altpatch_corpus`` ini key)
is given.  Every command-line option has an ``altpatch_*`` ini twin so CI can set it
in ``pyproject.toml`` or ``tox.ini``.
"""

from __future__ import annotations

import pytest

#: (option suffix, ini type, help, default) for options that take a value.
_VALUE_OPTIONS: tuple[tuple[str, str, str, str | None], ...] = (
    ("patcher", "string", "patcher to judge: NAME (e.g. reference:linux-6.1) or module:attr",
     "reference"),
    ("dialect", "string", "dialect the patcher implements (default: the patcher's own)", None),
    ("modes", "string", "comma-separated modes to run: boot, late (default: all)", None),
    ("schedules", "string",
     "comma-separated schedules, e.g. rr:100,random:1-3,adversarial (default: rr:100)", None),
    ("features-include", "string", "only run cases that require one of these features", None),
    ("features-exclude", "string", "skip cases that require any of these features", None),
    ("skip-file", "string", "file of case ids or id prefixes to skip, one per line", None),
    ("xfail-file", "string", "file of case ids or id prefixes expected to fail", None),
    ("shard", "string", "run shard K of N (K/N, 1-based) of the items", None),
    ("accept-version", "string", "accept a corpus whose major version is this one", None),
    ("timeout", "string", "host seconds per item before it fails as hung", None),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--altpatch-*`` options and their ini twins."""
    group = parser.getgroup("altpatch", "AArch64 alternatives conformance (pytest-altpatch)")
    group.addoption(
        "--altpatch-corpus",
        nargs="*",
        metavar="PATH",
        default=None,
        help="collect conformance cases from PATHs (default: the bundled corpus)",
    )
    parser.addini(
        "altpatch_corpus",
        type="paths",
        default=[],
        help="conformance corpus paths; setting it turns the plugin on",
    )
    for suffix, ini_type, help_text, default in _VALUE_OPTIONS:
        dest = "altpatch_" + suffix.replace("-", "_")
        group.addoption(f"--altpatch-{suffix}", dest=dest, default=None, help=help_text)
        parser.addini(dest, type=ini_type, default=default, help=help_text)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's markers so ``--strict-markers`` runs stay clean."""
    config.addinivalue_line(
        "markers", "altpatch_case(case_id): an item generated from an altpatch corpus case"
    )
    config.addinivalue_line(
        "markers", "altpatch_feature(name): a feature a corpus case requires of the patcher"
    )
