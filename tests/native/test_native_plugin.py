"""The plugin and the CLI run a native patcher by manifest path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.cli import main

ROOT = Path(__file__).resolve().parents[2]
A64_EXAMPLE = ROOT / "conformance" / "native" / "a64" / "manifest.yaml"
CASE = ROOT / "corpus" / "cases" / "branch" / "b-external.yaml"


def test_header_names_native_objects_and_hashes(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--altpatch-corpus", str(ROOT / "corpus"),
                                f"--altpatch-patcher=native:{A64_EXAMPLE}", "--collect-only")
    result.stdout.fnmatch_lines([
        "altpatch: patcher native:a64-example 1.0, dialect xen-4.17, features: *",
        f"altpatch: native manifest {A64_EXAMPLE}",
        "altpatch:   object patcher.s sha256:*",
    ])


def test_plugin_runs_a_case_with_a_native_patcher(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--altpatch-corpus", str(ROOT / "corpus"),
                                f"--altpatch-patcher=native:{A64_EXAMPLE}",
                                "-k", "b-external", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_cli_run_with_a_native_patcher(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(CASE), "--patcher", f"native:{A64_EXAMPLE}"]) == 0
    out = capsys.readouterr().out
    assert "native:a64-example" in out
    assert f"native manifest {A64_EXAMPLE}" in out
    assert "object patcher.s sha256:" in out


def test_missing_manifest_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--altpatch-corpus", str(ROOT / "corpus"),
                                "--altpatch-patcher=native:/nonexistent/manifest.yaml",
                                "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*NATIVE_MANIFEST*no manifest*"])
