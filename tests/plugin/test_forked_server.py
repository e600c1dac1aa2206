"""A worker server forked from the session (``supervisor.forked``, what ``altpatch
run`` starts) is the server a fresh interpreter would be: its own session, its items'
outcomes and codes the same, nothing of the session's written twice, reaped at the end;
and a session with threads gets a fresh interpreter instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_patchers import HOSTILE_PATCHERS

ROOT = Path(__file__).resolve().parents[2]
CASE = "cases/branch/b-al-external.yaml"

SCRIPT = f"""
import json, os, sys, threading, time
from pytest_altpatch import supervisor
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.judge import judge
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.supervisor import session

if sys.argv[1] == "threads":
    threading.Thread(target=threading.Event().wait, daemon=True).start()
print("written before the fork", end="")  # still buffered when the server forks
supervisor.set_few_items(True)
supervisor.prestart_workers(fork=True)
(server,) = session._POOL._all
pid = server.process.pid
deadline = time.monotonic() + 10
while os.getsid(pid) != pid and time.monotonic() < deadline:  # the child's own call
    time.sleep(0.001)
facts = {{"handle": type(server.process).__name__, "own_session": os.getsid(pid) == pid,
          "parent": os.getppid() != pid}}
catalog = load_catalog()
case = load_case(bundled_corpus() / {CASE!r}, catalog)
codes = []
for spec in sys.argv[2:]:
    request = supervisor.item_request(case, catalog, mode="boot", patcher=spec,
                                      dialect=None, schedule="rr:100", seed=0,
                                      timeout=60.0)
    outcome = supervisor.run_item(request)
    codes.append(outcome.error.code if outcome.error else
                 ("pass" if judge(case, outcome).passed else "fail"))
facts["codes"] = codes
supervisor.shutdown()
facts["status"] = server.process.poll()  # 0: it ended when its channel closed
print()
print(json.dumps(facts))
"""


def run_session(tmp_path: Path, threads: str, *patchers: str) -> tuple[str, dict[str, object]]:
    """Run the script's session; what it printed first, and its facts."""
    (tmp_path / "hostile.py").write_text(HOSTILE_PATCHERS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(tmp_path))),
               ALTPATCH_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", SCRIPT, threads, *patchers],
                          capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    first, facts = done.stdout.splitlines()
    return first, json.loads(facts)


def test_a_forked_server_runs_items_in_its_own_session(tmp_path: Path) -> None:
    first, facts = run_session(tmp_path, "single", "reference:linux-6.1", "reference:xen-4.17")
    assert first == "written before the fork"  # once, though the server has its buffer
    assert facts == {"handle": "ForkedServer", "own_session": True, "parent": True,
                     "codes": ["pass", "pass"], "status": 0}


def test_an_item_killing_the_forked_server_costs_that_item_only(tmp_path: Path) -> None:
    _, facts = run_session(tmp_path, "single", "hostile:KillServer", "reference:linux-6.1")
    assert facts["codes"] == ["PATCHER_DIED", "pass"]


def test_with_threads_running_the_server_is_a_fresh_interpreter(tmp_path: Path) -> None:
    first, facts = run_session(tmp_path, "threads", "reference:linux-6.1")
    assert first == "written before the fork"
    assert facts["handle"] == "Popen" and facts["codes"] == ["pass"] and facts["status"] == 0



def test_a_thread_python_does_not_count_still_forbids_the_fork() -> None:
    """A thread started below ``threading`` (as a C library's would be) is a thread the
    forked child would not have: no fork while it runs (Python 3.12 warns of this)."""
    script = """
import _thread, os, threading
from pytest_altpatch.supervisor.forked import can_fork
alone = can_fork()
started, release = _thread.allocate_lock(), _thread.allocate_lock()
started.acquire(); release.acquire()
def hold():
    started.release()
    release.acquire()
_thread.start_new_thread(hold, ())
started.acquire()
print(alone, threading.active_count(), len(os.listdir("/proc/self/task")), can_fork())
release.release()
"""
    if not Path("/proc/self/task").is_dir():  # pragma: no cover - not Linux
        pytest.skip("this system does not list a process's threads")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    assert done.stdout.split() == ["True", "1", "2", "False"]


WAIT_SCRIPT = """
import socket, subprocess
from pytest_altpatch.supervisor.forked import ForkedServer
ours, theirs = socket.socketpair()
server = ForkedServer(theirs, [ours], False)
theirs.close()
try:
    server.wait(0.2)
except subprocess.TimeoutExpired:
    print("still serving")
server.kill()
print(server.wait(10), server.poll())
"""


def test_waiting_on_a_forked_server_times_out_and_a_kill_ends_it(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ALTPATCH_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", WAIT_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["still serving", "-9 -9"]
