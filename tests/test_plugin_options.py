"""The plugin registers its options and stays inert unless asked."""

from __future__ import annotations

import pytest


def test_help_lists_altpatch_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--altpatch-corpus*", "*--altpatch-patcher*",
                                 "*--altpatch-shard*", "*altpatch_schedules*"])


def test_plugin_is_inert_without_corpus_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    assert True\n")
    pytester.makefile(".yaml", case="format: 1\nid: x\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:altpatch", "--help")
    assert "--altpatch-corpus" not in result.stdout.str()
