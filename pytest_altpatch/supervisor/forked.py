"""A worker server forked from the session's own process rather than started afresh.

A fresh interpreter must start and import the supervisor before it can warm up (about
40 ms of a one-item ``altpatch run``, on its critical path); a fork has both already.
Only a process that is still single-threaded and has not yet read a case or imported a
user's module may fork one (the ``altpatch`` command just after parsing its arguments):
the server must hold nothing but this package.  Everything else uses the fresh
interpreter (:class:`subprocess.Popen`).

The forked server is what the fresh one would be: in its own session (the terminal's
Ctrl-C goes to the session only), stdin from ``/dev/null``, none of the session's exit
handlers or other servers' channels, and it ends through :func:`os._exit` whatever
happens, never returning into the session's code.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Final, NoReturn

#: Longest pause between two looks at whether the server has ended.
_POLL_CEILING: Final = 0.05
#: A server :func:`fork_early` forked and the session's end of its channel, until the
#: session's pool takes it (:func:`take_early`).
_EARLY: list[tuple[ForkedServer, socket.socket]] = []


def can_fork() -> bool:
    """Whether this process may fork a worker server (POSIX, one thread).

    A thread that ``threading`` has already forgotten (one whose Python code ended but
    that the system still runs, or one a C library started) counts too: where the
    system lists a process's threads, that list must hold this one alone."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no such list here: Python's count is all there is
        return True


class ForkedServer:
    """The handle on a forked worker server: the calls of :class:`subprocess.Popen`
    the session makes (``poll``, ``wait``, ``kill``)."""

    def __init__(self, theirs: socket.socket, ours: Sequence[socket.socket],
                 warm_cases: bool) -> None:
        """Fork a server serving ``theirs``; ``ours`` are the session's ends of every
        server channel (the child closes them, so each server sees its session go)."""
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            with contextlib.suppress(Exception):
                stream.flush()
        self.pid = os.fork()
        if self.pid == 0:
            _serve_in_child(theirs, ours, warm_cases)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status if the server has ended (reaping it), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone all the same
                self.returncode = -signal.SIGKILL
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the server to end; :class:`subprocess.TimeoutExpired` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        watch = self._exit_watch()
        pause = 0.0005
        try:
            while (status := self.poll()) is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"worker server {self.pid}",
                                                    timeout or 0.0)
                if watch is not None:  # readable the moment the server ends
                    select.select([watch], [], [], left)
                else:
                    time.sleep(pause if left is None else min(pause, left))
                    pause = min(2 * pause, _POLL_CEILING)
        finally:
            if watch is not None:
                os.close(watch)
        return status

    def _exit_watch(self) -> int | None:
        """A descriptor that becomes readable when the server ends (Linux pidfd), or
        None where there is none (then :meth:`wait` polls)."""
        if self.returncode is not None or not hasattr(os, "pidfd_open"):
            return None
        try:
            return os.pidfd_open(self.pid)
        except OSError:
            return None

    def kill(self) -> None:
        """SIGKILL the server (nothing if it has ended)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def fork_early(*, warm_cases: bool) -> None:
    """Fork a worker server at a command's very start, before the command parses its
    arguments or imports the session's side of the supervisor (neither of which the
    server needs): it warms up meanwhile, and the session's pool takes it as its first
    server.  One the command does not take (it runs nothing after all) is killed at
    exit, before it has served anything."""
    if _EARLY or not can_fork():
        return
    ours, theirs = socket.socketpair()
    server = ForkedServer(theirs, [ours], warm_cases)
    theirs.close()
    _EARLY.append((server, ours))


def take_early() -> tuple[ForkedServer, socket.socket] | None:
    """The server :func:`fork_early` forked and the session's end of its channel, once
    (None when there is none)."""
    return _EARLY.pop() if _EARLY else None


@atexit.register
def _kill_untaken() -> None:
    while _EARLY:
        server, ours = _EARLY.pop()
        server.kill()
        ours.close()
        server.wait()


def _serve_in_child(theirs: socket.socket, ours: Sequence[socket.socket],
                    warm_cases: bool) -> NoReturn:
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the session's to handle
        for channel in ours:
            channel.close()
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        atexit._clear()  # the session's handlers are not this process's
        from pytest_altpatch.supervisor.server import serve  # noqa: PLC0415

        serve(theirs.detach(), warm_cases=warm_cases, leave=True)
    except BaseException:  # the session sees the channel close
        status = 1
        with contextlib.suppress(BaseException):
            traceback.print_exc()  # as a fresh interpreter's server would
    finally:
        os._exit(status)


__all__ = ["ForkedServer", "can_fork", "fork_early", "take_early"]
