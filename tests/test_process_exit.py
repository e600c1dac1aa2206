"""``leave``: exit handlers run, the streams are flushed, the status is kept, and a
running non-daemon thread is waited for as a normal exit would."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pytest_altpatch.process_exit import FLUSH_FAILED


def _run(body: str) -> subprocess.CompletedProcess[str]:
    program = "from pytest_altpatch.process_exit import leave\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)


def test_exit_handlers_run_and_buffered_output_is_flushed() -> None:
    done = _run("""
        import atexit, sys, weakref
        class Kept: pass
        kept = Kept()
        weakref.finalize(kept, print, "finalized")
        atexit.register(print, "handler ran")
        sys.stdout.write("unflushed line")  # no newline: still in the buffer
        sys.stderr.write("to stderr")
        leave(3)
        print("never reached")
    """)
    assert done.returncode == 3
    assert done.stdout.startswith("unflushed line")
    assert "handler ran" in done.stdout and "finalized" in done.stdout
    assert "never reached" not in done.stdout
    assert done.stderr == "to stderr"


def test_handlers_run_once_when_a_thread_is_left_to_wait_for() -> None:
    done = _run("""
        import atexit, threading, time
        atexit.register(print, "handler")
        worker = threading.Thread(target=lambda: (time.sleep(0.3), print("thread done")))
        worker.start()
        leave(0)
    """)
    assert done.returncode == 0
    assert done.stdout.count("handler") == 1
    assert "thread done" in done.stdout  # waited for, as a normal exit waits


@pytest.mark.parametrize(("status", "expected"), [(0, FLUSH_FAILED), (2, 2)])
def test_a_stream_that_cannot_be_flushed_fails_the_exit(status: int, expected: int) -> None:
    done = _run(f"""
        import io, sys
        class Gone(io.StringIO):
            def flush(self):
                raise BrokenPipeError(32, "Broken pipe")
        sys.stdout = Gone()
        leave({status})
    """)
    assert done.returncode == expected  # a failure stays the failure it was
