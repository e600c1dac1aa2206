"""``--altpatch-jobs``: the next supervised items start while one is judged.

Each item still runs alone in its own forked child, so outcomes, reports and their
order never depend on how many run at once.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, CASE_WRONG_STREAM, CaseWriter
from hostile_patchers import HOSTILE_PATCHERS

from pytest_altpatch import supervisor
from pytest_altpatch.cases import load_corpus
from pytest_altpatch.supervisor import session as session_module

SCHEDULES = "--altpatch-schedules=rr:100,random:1-3,adversarial"


def _junit(path: Path) -> list[tuple[str, str, str]]:
    found = []
    for case in ET.parse(path).iter("testcase"):
        failed = [child.get("message") or "" for child in case if child.tag == "failure"]
        found.append((f"{case.get('classname')}::{case.get('name')}",
                      "failed" if failed else "passed", failed[0] if failed else ""))
    return found


def test_items_run_ahead_give_the_same_outcomes_in_the_same_order(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED, "demo/wrong-stream.yaml": CASE_WRONG_STREAM})
    one = pytester.runpytest_subprocess("--altpatch-corpus", "corpus", SCHEDULES,
                                        "--altpatch-jobs", "1", "--junitxml=one.xml")
    two = pytester.runpytest_subprocess("--altpatch-corpus", "corpus", SCHEDULES,
                                        "--altpatch-jobs", "3", "--junitxml=three.xml")
    assert one.ret == two.ret == pytest.ExitCode.TESTS_FAILED
    expected = _junit(pytester.path / "one.xml")
    assert [outcome for _, outcome, _ in expected] == ["passed"] * 5 + ["failed"] * 5
    assert _junit(pytester.path / "three.xml") == expected

    def reports(text: str) -> list[str]:
        return [line for line in text.splitlines() if "expectations failed" in line
                or line.startswith("reproduce:")]

    assert reports(two.stdout.str()) == reports(one.stdout.str()) != []


def test_stopping_early_still_reports_only_the_items_that_ran(
        pytester: pytest.Pytester, corpus: CaseWriter) -> None:
    corpus({"demo/wrong-stream.yaml": CASE_WRONG_STREAM, "demo/zz-applied.yaml":
            CASE_APPLIED.replace("demo/applied", "demo/zz-applied")})
    result = pytester.runpytest_subprocess("--altpatch-corpus", "corpus", SCHEDULES,
                                           "--altpatch-jobs", "2", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)


def test_abandoning_kills_an_item_started_ahead(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # An item whose patcher never returns, started ahead and then abandoned (the session
    # stopped early): its child must be killed and reaped, not left running to its timeout.
    (tmp_path / "hostile.py").write_text(HOSTILE_PATCHERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    corpus = load_corpus()
    case = next(c for c in corpus.cases if c.id == "branch/b-external")
    request = supervisor.item_request(case, corpus.catalog, mode="boot", patcher="hostile:Loop",
                                      dialect=None, schedule="rr:100", seed=0, timeout=600)
    supervisor.set_parallel_items(2)
    try:
        supervisor.submit_item("looping", request)
        assert supervisor.started("looping")
        child = _running_child()
        supervisor.abandon_ahead()
        assert not supervisor.started("looping")
        assert _state(child) in (None, "Z")  # killed (and reaped by its server)
        # The server that ran it is still good for the next item.
        passing = supervisor.item_request(case, corpus.catalog, mode="boot",
                                          patcher="reference", dialect=None,
                                          schedule="rr:100", seed=0, timeout=600)
        assert supervisor.run_item(passing).error is None
    finally:
        supervisor.set_parallel_items(1)


def _running_child() -> int:
    """The pid of the child a worker server is running a request in (waits for it)."""
    for _ in range(6000):
        for server in session_module._POOL._all:
            if server.child is not None:
                return server.child
        threading.Event().wait(0.01)
    raise AssertionError("no worker child started")


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("value", ["0", "two", "65"])
def test_a_bad_jobs_value_is_a_usage_error(pytester: pytest.Pytester, corpus: CaseWriter,
                                           value: str) -> None:
    corpus({"demo/applied.yaml": CASE_APPLIED})
    result = pytester.runpytest("--altpatch-corpus", "corpus", "--altpatch-jobs", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--altpatch-jobs: expected a number from 1 to 64, got "
                                 f"'{value}'*"])
