"""A session killed outright (SIGKILL) leaves no worker server and no child behind.

The session's own clean-up cannot run then, so the worker server has to notice on its
own that its session went away, even while a child runs a patcher that never returns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from altpatch_cases import CASE_APPLIED, CaseWriter

SPINNING = """
import os
from pytest_altpatch.patchers.reference import ReferencePatcher


class Spin(ReferencePatcher):
    def __init__(self):
        super().__init__("linux-6.1")

    def apply_alternatives_all(self, ctx, env):
        open(os.environ["ALTPATCH_SPIN_STARTED"], "w").close()
        while True:
            pass
"""


def _marked(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (the session and all it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environment and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_killed_session_leaves_no_server_or_child_running(
        pytester: pytest.Pytester, corpus: CaseWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(spinning=SPINNING)
    corpus({"demo/applied.yaml": CASE_APPLIED})
    marker = f"ALTPATCH_KILL_TEST_{uuid.uuid4().hex}"
    started = pytester.path / "spinning.started"
    environment = dict(os.environ, **{marker: "1"}, ALTPATCH_SPIN_STARTED=str(started),
                       PYTHONPATH=os.pathsep.join([str(pytester.path), *sys.path]))
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--altpatch-corpus",
         "corpus", "--altpatch-timeout", "600", "--altpatch-patcher=spinning:Spin"],
        cwd=pytester.path, env=environment, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the item never reached the patcher"
        session.send_signal(signal.SIGKILL)
        session.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marked(marker) == []
    finally:
        for pid in _marked(marker):
            os.kill(pid, signal.SIGKILL)
