"""The worker server a command that runs items forks at its very start: which commands
fork one, that the session's pool takes that one as its server, and that one the
command never takes is gone when the command exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_altpatch import cli
from pytest_altpatch.supervisor import forked

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("words, forks", [
    (["run", "case.yaml"], True),
    (["show", "--mode", "boot", "case.yaml"], True),
    (["--debug", "run", "case.yaml"], True),
    (["run", "--inprocess", "case.yaml"], False),  # runs in this process: no worker
    (["run", "--help"], False),
    (["--version"], False),
    (["lint", "corpus"], False),
    (["build", "case.yaml"], False),
    ([], False),
])
def test_only_a_command_that_runs_items_forks_early(
        words: list[str], forks: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(forked, "fork_early", lambda *, warm_cases: calls.append(warm_cases))
    cli._fork_worker_early(words)
    assert calls == ([False] if forks else [])


def _script(body: str) -> str:
    """Run ``body`` in a fresh interpreter (a fork needs a single-threaded process)."""
    done = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_sessions_pool_takes_the_early_server() -> None:
    out = _script(
        "from pytest_altpatch.supervisor import forked\n"
        "forked.fork_early(warm_cases=False)\n"
        "early = forked._EARLY[0][0].pid\n"
        "from pytest_altpatch.supervisor import session\n"
        "session.set_few_items(True)\n"
        "session.prestart_workers(fork=True)\n"
        "(server,) = session._POOL._all\n"
        "print(early, server.process.pid, forked.take_early())\n"
        "facts = session.patchers_facts('reference', ('xen-4.17',), timeout=60)\n"
        "print(facts[0].dialect)\n")
    early, taken, left, dialect = out.split()
    assert early == taken and left == "None" and dialect == "xen-4.17"


def test_an_early_server_never_taken_is_gone_at_exit() -> None:
    out = _script(
        "from pytest_altpatch.supervisor import forked\n"
        "forked.fork_early(warm_cases=False)\n"
        "print(forked._EARLY[0][0].pid)\n")
    with pytest.raises(ProcessLookupError):  # killed and reaped before the exit
        os.kill(int(out), 0)

