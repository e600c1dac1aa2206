"""``altpatch run`` and ``altpatch show`` on single case files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from altpatch_cases import (
    CASE_APPLIED,
    CASE_BROKEN,
    CASE_WRONG_STREAM,
    MUTANT_PATCHER,
    write_corpus,
)

from pytest_altpatch.cli import main
from pytest_altpatch.report import style_for


@pytest.fixture
def cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    root = write_corpus(tmp_path / "corpus", {"applied.yaml": CASE_APPLIED,
                                              "wrong.yaml": CASE_WRONG_STREAM,
                                              "broken.yaml": CASE_BROKEN})
    return root / "cases"


def test_run_passing_case_exits_zero(cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(cases / "applied.yaml")]) == 0
    # Every dialect the case lists (all five: it names none), linux-6.1 first.
    assert capsys.readouterr().out == "".join(
        f"PASS  demo/applied boot pct:0 seed 0 reference:{d} ({d})\n"
        for d in ("linux-6.1", "linux-4.6", "linux-4.9", "xen-4.17", "strict"))


def test_run_runs_every_schedule(cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(cases / "applied.yaml"), "--schedule", "rr:100,random:1-2",
                 "--dialect", "linux-6.1"]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()] == [
        "rr:100", "random:1", "random:2"]


def test_run_failing_case_exits_one_with_diff_and_reproduce(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "corpus/cases/wrong.yaml", "--seed", "5", "--dialect", "linux-6.1"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  demo/wrong-stream boot pct:0 seed 5 ")
    assert "stream-mismatch (boot) at corpus/cases/wrong.yaml:17:" in out
    assert "reproduce: altpatch show corpus/cases/wrong.yaml --mode boot --patcher reference " \
           "--dialect linux-6.1 --schedule pct:0 --seed 5" in out


def test_run_unreadable_case_exits_two_with_location(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "corpus/cases/broken.yaml"]) == 2
    captured = capsys.readouterr()
    assert "corpus/cases/broken.yaml:4:1: SPEC_SCHEMA: unknown key 'colour'" in captured.err
    assert captured.out == ""


def test_run_unbuildable_case_exits_two_and_drops_the_item_it_started(
        cases: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_altpatch.supervisor  # noqa: PLC0415
    from pytest_altpatch.supervisor import session  # noqa: PLC0415

    ahead_when_dropped: list[int] = []

    def abandon() -> None:
        ahead_when_dropped.append(len(session._AHEAD))
        session.abandon_ahead()

    monkeypatch.setattr(pytest_altpatch.supervisor, "abandon_ahead", abandon)
    (cases / "unbuildable.yaml").write_text(CASE_APPLIED.replace(
        "demo/applied", "demo/unbuildable").replace("        ret\n", "        frobnicate x0\n"))
    assert main(["run", "corpus/cases/unbuildable.yaml", "--dialect", "linux-6.1"]) == 2
    captured = capsys.readouterr()
    assert "corpus/cases/unbuildable.yaml:" in captured.err and "frobnicate" in captured.err
    assert captured.out == ""
    # The first item was started in its worker while the build was checked: it is gone.
    assert ahead_when_dropped == [1]
    assert not session._AHEAD


@pytest.mark.parametrize("argv", [["run", "missing.yaml"],
                                  ["run", "corpus/cases/applied.yaml", "--patcher", "nosuch"],
                                  ["run", "corpus/cases/applied.yaml", "--schedule", "rr:x"],
                                  ["show", "corpus/cases/applied.yaml", "--schedule",
                                   "rr:100,adversarial"]])
def test_unusable_arguments_exit_two(cases: Path, argv: list[str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("altpatch: ")


def test_show_prints_image_sites_caps_streams_findings_and_verdict(
        cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "corpus/cases/applied.yaml", "--schedule", "adversarial"]) == 0
    out = capsys.readouterr().out
    for expected in ("case demo/applied: demo: the replacement is applied on every CPU",
                     "cpu0: cortex-a53/r0p4", ".altinstructions", "site #0 at site",
                     "mov x0, #1", "replacement:", "mov x0, #2", "after boot",
                     "capabilities: ALT_TEST_ON", "1 word(s) changed", "findings", "timeline",
                     "PASS", "reproduce: altpatch show corpus/cases/applied.yaml --mode boot "
                     "--patcher reference --dialect linux-6.1 --schedule adversarial --seed 0"):
        assert expected in out
    assert "\x1b[" not in out  # captured output is not a terminal


def test_show_names_the_finding_of_a_broken_patcher(
        cases: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (cases.parent.parent / "mutant_for_show.py").write_text(MUTANT_PATCHER)
    monkeypatch.syspath_prepend(str(cases.parent.parent))
    assert main(["show", "corpus/cases/applied.yaml",
                 "--patcher", "mutant_for_show:NoMaintenance"]) == 1
    out = capsys.readouterr().out
    assert "stale-fetch: [cpu" in out
    assert "timeline around step" in out
    assert "FAIL" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "environ", "colour"), [
    (_Terminal(), {}, True),
    (_Terminal(), {"NO_COLOR": ""}, False),
    (_Terminal(), {"TERM": "dumb"}, False),
    (io.StringIO(), {}, False),
])
def test_colour_only_on_a_terminal_without_no_color(stream: io.StringIO,
                                                    environ: dict[str, str],
                                                    colour: bool) -> None:
    assert style_for(stream, environ).colour is colour
