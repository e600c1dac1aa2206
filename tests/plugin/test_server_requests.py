"""How a worker server hands requests to its children, and what becomes of a request
sent ahead that is then given up.

* A server for one or two items forks each child once the request has come; the child
  takes the request the server has already unpickled (not a copy through a pipe).
* A server for one or two items finds unicorn's instruction counter while it warms up
  (and imports no late flow), so its children need not.
* ``altpatch run`` sends its first item from the main thread (its item thread would
  wait for the main thread's GIL); if the session then gives the item up before that
  thread ever ran, the child is killed and the server is free for the next item.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hostile_patchers import HOSTILE_PATCHERS

ROOT = Path(__file__).resolve().parents[2]

CHILD_TAKES_THE_SERVERS_REQUEST = """
import json, socket
from pytest_altpatch.supervisor import server
from pytest_altpatch.supervisor.wire import FactsRequest, loads

ours, theirs = socket.socketpair()
# The frame is not a pickle: only a child that runs the server's request can answer.
child = server._Spare.fork(theirs, b"not a pickle", FactsRequest("reference", ("linux-6.1",)))
status, reply, captured = child.finish(theirs)
child.reap()
answer = loads(reply)
print(json.dumps([answer.kind, [facts.name for facts in answer.value]]))
"""

CHILD_KEYS_WITH_THE_SESSIONS_DIGEST = """
import json, socket
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Case
from pytest_altpatch import plain_data
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.supervisor import item_request, server
from pytest_altpatch.supervisor.wire import dumps, loads

catalog = load_catalog()
case = load_case(bundled_corpus() / "cases/branch/b-al-external.yaml", catalog)
plain = plain_data.dumps  # (what a case's digest pickles with)
def telling(value):  # (inherited by the children forked below)
    if isinstance(value, Case):
        print("pickled the case")
    return plain(value)
plain_data.dumps = telling
told = []
for handed in (True, False):
    request = item_request(case, catalog, mode="boot", patcher="reference:linux-6.1",
                           dialect=None, schedule="rr:100", seed=0, timeout=60.0)
    assert request.case_digest is not None
    if not handed:
        request = type(request)(**{**request.__dict__, "case_digest": None})
    ours, theirs = socket.socketpair()
    child = server._Spare.fork(theirs, dumps(request))  # unpickled in the child, as sent
    status, reply, captured = child.finish(theirs)
    child.reap()
    told.append([loads(reply).kind, "pickled the case" in captured.decode()])
print(json.dumps(told))
"""

WARMED_FOR_FEW_ITEMS = """
import json, sys
from pytest_altpatch.machine import ucount
from pytest_altpatch.supervisor import server

before = ucount._offset.cache_info().currsize
server._warm_up(cases=False)
print(json.dumps({"counter_found": [before, ucount._offset.cache_info().currsize],
                  "late_flows": "pytest_altpatch.scenarios.late" in sys.modules}))
"""

GIVEN_UP_BEFORE_ITS_THREAD_RAN = """
import json, os, threading, time
from concurrent.futures import ThreadPoolExecutor
from pytest_altpatch import supervisor
from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.judge import judge
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.supervisor import session

catalog = load_catalog()
case = load_case(bundled_corpus() / "cases/branch/b-al-external.yaml", catalog)

def request(spec):
    return supervisor.item_request(case, catalog, mode="boot", patcher=spec, dialect=None,
                                   schedule="rr:100", seed=0, timeout=600.0)

supervisor.set_few_items(True)
busy = threading.Event()
session._RUNNER.append(ThreadPoolExecutor(max_workers=1))
session._RUNNER[0].submit(busy.wait)  # the item thread is taken: the item stays queued
session.submit_item("looping", request("hostile:Loop"), alone=True)
(server,) = session._POOL._all
sent = server not in session._POOL._free
started = time.monotonic()
session.abandon_ahead()
busy.set()
outcomes = []  # (a server never given back would keep the next item waiting for it)
runner = threading.Thread(target=lambda: outcomes.append(
    supervisor.run_item(request("reference:linux-6.1"))), daemon=True)
runner.start()
runner.join(60)
# (the looping item's timeout is 600 s; the next item, on a loaded machine, takes ~1 s)
print(json.dumps({"sent": sent, "freed_long_before_timeout": time.monotonic() - started < 30,
                  "next": ("pass" if judge(case, outcomes[0]).passed else "fail")
                  if outcomes else "still waiting for a server",
                  "same_server": session._POOL._all == [server]}))
if outcomes:
    supervisor.shutdown()
os._exit(0)
"""


def run_script(tmp_path: Path, script: str) -> object:
    """Run ``script`` in a fresh interpreter (it forks); the JSON it printed last."""
    (tmp_path / "hostile.py").write_text(HOSTILE_PATCHERS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(tmp_path))),
               ALTPATCH_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_child_forked_for_a_request_runs_the_request_the_server_read(
        tmp_path: Path) -> None:
    assert run_script(tmp_path, CHILD_TAKES_THE_SERVERS_REQUEST) == [
        "value", ["reference:linux-6.1"]]


def test_a_child_keys_its_image_with_the_digest_its_session_sent(tmp_path: Path) -> None:
    assert run_script(tmp_path, CHILD_KEYS_WITH_THE_SESSIONS_DIGEST) == [
        ["value", False], ["value", True]]


def test_a_server_for_few_items_finds_the_counter_for_its_children(tmp_path: Path) -> None:
    assert run_script(tmp_path, WARMED_FOR_FEW_ITEMS) == {
        "counter_found": [0, 1], "late_flows": False}


def test_an_item_given_up_before_its_thread_ran_is_killed_and_frees_its_server(
        tmp_path: Path) -> None:
    assert run_script(tmp_path, GIVEN_UP_BEFORE_ITS_THREAD_RAN) == {
        "sent": True, "freed_long_before_timeout": True, "next": "pass", "same_server": True}
