"""The ``altpatch`` command's top level."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_altpatch
from pytest_altpatch import __version__
from pytest_altpatch.cli import COMMAND_MODULES, COMMANDS, build_parser, main
from pytest_altpatch.resources import bundled_corpus


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "altpatch" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2


# --------------------------------------------------------------------------- without pytest

#: A ``sitecustomize`` after which ``import pytest`` raises ModuleNotFoundError.
_NO_PYTEST = 'import sys\nsys.modules["pytest"] = None\n'


def _without_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``altpatch ARGS`` in a fresh interpreter (and worker server) where ``import
    pytest`` fails: a ``sitecustomize`` on PYTHONPATH blocks it in every process."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_NO_PYTEST, encoding="utf-8")
    package_root = Path(pytest_altpatch.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(package_root)]),
           "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "pytest_altpatch.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_no_pytest_wrapper_really_blocks_pytest(tmp_path: Path) -> None:
    done = _without_pytest(tmp_path, "--version")
    assert done.returncode == 0
    blocked = subprocess.run(
        [sys.executable, "-c", "import pytest"], capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert blocked.returncode != 0
    assert "import of pytest halted" in blocked.stderr


def test_run_passes_a_bundled_case_where_pytest_cannot_be_imported(tmp_path: Path) -> None:
    case = bundled_corpus() / "cases" / "branch" / "b-external.yaml"
    done = _without_pytest(tmp_path, "run", str(case), "--dialect", "linux-6.1",
                           "--schedule", "rr:100,random:2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "PASS  branch/b-external boot rr:100 seed 0 reference:linux-6.1 (linux-6.1)",
        "PASS  branch/b-external boot random:2 seed 2 reference:linux-6.1 (linux-6.1)",
    ]


def test_run_reports_a_failing_case_where_pytest_cannot_be_imported(tmp_path: Path) -> None:
    text = (bundled_corpus() / "cases" / "branch" / "b-external.yaml").read_text("utf-8")
    wrong = tmp_path / "b-external-wrong.yaml"
    # An expectation the reference patcher cannot meet: the probe returns 2, not 3.
    wrong.write_text(text.replace("{call: entry_b, cpus: all, result: {x0: 2}}",
                                  "{call: entry_b, cpus: all, result: {x0: 3}}"), "utf-8")
    done = _without_pytest(tmp_path, "run", str(wrong), "--dialect", "linux-6.1",
                           "--schedule", "rr:100")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "FAIL  branch/b-external boot rr:100 seed 0 reference:linux-6.1 " \
                       "(linux-6.1)"
    assert any("x0" in line and "3" in line for line in lines[1:])
    assert any(line.strip().startswith("altpatch show ") or "reproduce" in line
               for line in lines[1:])


def test_the_table_of_commands_is_what_each_module_adds() -> None:
    """A command line's parser is built from its command's module alone, so the table
    must name every command of every module, and only those."""
    for module_name in COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        importlib.import_module(module_name).register(subparsers)
        added = set(subparsers.choices)
        assert added == {name for name, owner in COMMANDS.items() if owner == module_name}


@pytest.mark.parametrize(("argv", "commands"), [
    (["run", "x.yaml"], {"run", "show"}),
    (["--debug", "lint", "corpus"], {"lint", "schema", "catalog", "export"}),
    (["image", "fetch", "--profile", "p"], {"image"}),
    (["--help"], set(COMMANDS)),
    (["--version", "run"], set(COMMANDS)),
    (["no-such-command"], set(COMMANDS)),
    ([], set(COMMANDS)),
])
def test_a_command_lines_parser_has_its_commands_module_only(
        argv: list[str], commands: set[str]) -> None:
    parser = build_parser(argv)
    (subparsers,) = [action for action in parser._actions
                     if isinstance(action, argparse._SubParsersAction)]
    assert set(subparsers.choices) == commands


def test_a_bad_command_line_reads_the_same_from_either_parser(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Built for one command or for all, the parser gives the same usage and errors."""
    for argv in (["run", "--bogus", "x.yaml"], ["run"], ["--debug", "show", "--mode", "x"]):
        errors = []
        for parser in (build_parser(argv), build_parser()):
            with pytest.raises(SystemExit) as ended:
                parser.parse_args(argv)
            assert ended.value.code == 2
            errors.append(capsys.readouterr().err)
        assert errors[0] == errors[1] and "altpatch " in errors[0]
