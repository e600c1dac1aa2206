"""The session's side: its worker server, the kill at the deadline, and the outcome.

The session enforces the host timeout with a kill of the child's process group, and
turns every way a child can end without an outcome into a coded error for the item.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pytest_altpatch.errors import ErrorInfo, Location, PatchError
from pytest_altpatch.machine import Schedule
from pytest_altpatch.patchers.facts import PatcherFacts
from pytest_altpatch.supervisor.forked import ForkedServer, can_fork, take_early
from pytest_altpatch.supervisor.wire import (
    DEFAULT_HOST_SECONDS,
    KILL_GRACE,
    FactsRequest,
    ItemRequest,
    Reply,
    dumps,
    loads,
    receive,
    send,
    session_context,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from pytest_altpatch.cases.model import Case, Catalog
    from pytest_altpatch.patchers.contract import Patcher
    from pytest_altpatch.scenarios.outcome import Outcome

#: Seconds to wait for the worker server's own answers (start, status after a kill).
_SERVER_SECONDS: Final = 60.0


@dataclass(frozen=True)
class _Ending:
    """How one child ended, as the session saw it."""

    reply: Reply | None
    status: int | None  # waitpid status; None if the worker server went away
    timed_out: bool
    output: bytes


class _WorkerServer:
    """The session's handle on its warm worker server process."""

    #: The session's end of the conversation.
    channel: socket.socket

    def __init__(self, *, warm_cases: bool = True, fork: bool = False,
                 others: Sequence[_WorkerServer] = ()) -> None:
        """Start a server (``fork``: by forking this process, see :mod:`.forked`, or by
        taking the one the command forked at its start; ``others`` are the servers
        already running, whose channels it must not hold)."""
        self.process: subprocess.Popen[bytes] | ForkedServer
        #: Set when the conversation broke (the server is dropped, never reused).
        self.broken = False
        #: The child running this server's request, if one is.
        self.child: int | None = None
        early = take_early() if not others else None
        if early is not None:
            self.process, self.channel = early
            return
        ours, theirs = socket.socketpair()
        if fork and can_fork():
            self.process = ForkedServer(theirs, [ours, *(s.channel for s in others)],
                                        warm_cases)
        else:
            environment = dict(os.environ)
            environment["PYTHONPATH"] = os.pathsep.join(session_context()[0])
            self.process = subprocess.Popen(
                [sys.executable, "-c",
                 "import sys; from pytest_altpatch.supervisor.server import serve; "
                 "serve(int(sys.argv[1]), warm_cases=sys.argv[2] == '1', leave=True)",
                 str(theirs.fileno()), "1" if warm_cases else "0"],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=environment,
                start_new_session=True)  # the terminal's Ctrl-C goes to the session only
        theirs.close()
        self.channel = ours

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def close(self) -> None:
        """Stop the server (it exits when its channel closes), killing a running child."""
        if self.child is not None:
            _kill(self.child)
        self.channel.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def execute(self, request: ItemRequest | FactsRequest, seconds: float) -> _Ending:
        """Send ``request``; kill the child if it runs past ``seconds``."""
        self.begin(request)
        return self.end(seconds)

    def begin(self, request: ItemRequest | FactsRequest) -> None:
        """Send ``request`` (:meth:`end` then waits for how it ended)."""
        send(self.channel, dumps(request))

    def end(self, seconds: float) -> _Ending:
        """How the request sent by :meth:`begin` ended; the child is killed if it runs
        past ``seconds``."""
        (pid,) = struct.unpack("<q", receive(self.channel, time.monotonic() + _SERVER_SECONDS))
        self.child = pid
        timed_out = False
        try:
            try:
                frame = receive(self.channel, time.monotonic() + seconds)
            except TimeoutError:
                timed_out = True
                _kill(pid)
                frame = receive(self.channel, time.monotonic() + _SERVER_SECONDS)
        except BaseException:
            _kill(pid)  # Ctrl-C or a lost server: never leave the child running
            raise
        self.child = None
        ended = loads(frame)
        assert isinstance(ended, tuple)  # the server's own message: (status, reply, output)
        status: int | None = ended[0]
        raw: bytes = ended[1]
        output: bytes = ended[2]
        reply = None
        if raw:
            try:
                candidate = loads(raw)
            except Exception as exc:
                candidate = Reply("internal", text=f"unreadable reply: {exc}")
            reply = candidate if isinstance(candidate, Reply) else None
        return _Ending(reply, status, timed_out, output)


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


class _ServerPool:
    """Up to ``size`` warm worker servers, each serving one request at a time.

    A caller takes a free server (starting one while fewer than ``size`` exist), runs
    its request and gives it back; items run ahead on other threads this way (see
    :func:`submit_item`) while each server stays strictly one request at a time."""

    def __init__(self) -> None:
        self.size = 1
        #: Whether new servers warm up by running bundled cases (see set_few_items).
        self.warm_cases = True
        self._free: list[_WorkerServer] = []
        self._all: list[_WorkerServer] = []
        self._available = threading.Condition()

    def take(self) -> _WorkerServer:
        """A free, running server (waits while all ``size`` are busy)."""
        with self._available:
            while True:
                while self._free:
                    server = self._free.pop()
                    if server.alive():
                        return server
                    self._discard(server)
                if len(self._all) < self.size:
                    server = _WorkerServer(warm_cases=self.warm_cases)
                    self._all.append(server)
                    return server
                self._available.wait()

    def prestart(self, *, fork: bool = False) -> None:
        """Start every server not yet running, without waiting for any."""
        with self._available:
            while len(self._all) < self.size:
                server = _WorkerServer(warm_cases=self.warm_cases, fork=fork,
                                       others=self._all)
                self._all.append(server)
                self._free.append(server)

    def give_back(self, server: _WorkerServer) -> None:
        """Return a server after its request (a broken one is dropped instead)."""
        with self._available:
            if server.alive() and not server.broken:
                self._free.append(server)
            else:
                self._discard(server)
            self._available.notify()

    def _discard(self, server: _WorkerServer) -> None:
        if server in self._all:
            self._all.remove(server)
        with contextlib.suppress(OSError):
            server.process.kill()
        server.channel.close()

    def kill_running(self) -> None:
        """Kill the child of every server that is serving a request."""
        with self._available:
            busy = [server for server in self._all if server not in self._free]
        for server in busy:
            if server.child is not None:
                _kill(server.child)

    def close(self) -> None:
        """Stop every server (a child still running is killed with its group)."""
        with self._available:
            servers, self._all, self._free = self._all, [], []
        for server in servers:
            server.close()


_POOL: Final = _ServerPool()
#: Items submitted ahead of their turn, by the session's own key for them.
_AHEAD: Final[dict[object, Future[tuple[Outcome, str]]]] = {}
#: The server each of those items was sent to before its thread took it, if it was.
_BEGUN: Final[dict[Future[tuple[Outcome, str]], _WorkerServer]] = {}
_RUNNER: list[ThreadPoolExecutor] = []


@atexit.register
def shutdown() -> None:
    """Stop this process's worker servers and the items still running ahead."""
    abandon_ahead()
    _POOL.close()
    while _RUNNER:
        _RUNNER.pop().shutdown(wait=True, cancel_futures=True)


def abandon_ahead() -> None:
    """Forget the items started ahead and not collected (the session stopped early):
    queued ones never start, running ones are killed, and their outcomes are dropped."""
    ahead = list(_AHEAD.values())
    _AHEAD.clear()
    for future in ahead:
        begun = _BEGUN.pop(future, None)
        if future.cancel() and begun is not None:  # sent, but its thread never ran
            _end_unrun(begun)
    if any(not future.done() for future in ahead):
        _POOL.kill_running()
        for future in ahead:
            with contextlib.suppress(BaseException):
                future.result(timeout=_SERVER_SECONDS)


def _end_unrun(server: _WorkerServer) -> None:
    """Kill the child of a request sent to ``server`` whose thread never ran, and give
    the server back."""
    try:
        server.end(0.0)  # past its time already: the child is killed at once
    except _SERVER_GONE:
        server.broken = True
    finally:
        _POOL.give_back(server)


#: What shows that a worker server itself went away (a child may kill its parent).
_SERVER_GONE: Final = (EOFError, OSError, TimeoutError, pickle.UnpicklingError, ValueError,
                       TypeError)


def _supervise(request: ItemRequest | FactsRequest, seconds: float,
               begun: _WorkerServer | None = None) -> _Ending:
    """Run ``request`` on a free server (``begun``: the server it was already sent to)."""
    server = _POOL.take() if begun is None else begun
    try:
        if begun is None:
            server.begin(request)
        if server.broken:
            return _Ending(None, None, False, b"")
        return server.end(seconds)
    except _SERVER_GONE:  # start afresh
        server.broken = True
        return _Ending(None, None, False, b"")
    finally:
        _POOL.give_back(server)


def set_parallel_items(count: int) -> None:
    """Let up to ``count`` items run at once in their own worker servers (1: none
    ahead).  Outcomes do not depend on it: each item runs alone in its own child."""
    _POOL.size = max(1, count)


def set_few_items(few: bool) -> None:
    """Say the session runs only a few items: its worker servers then only import what
    items need, rather than also running a bundled case per mode to warm every later
    child (that costs more than it saves for one or two items)."""
    _POOL.warm_cases = not few


def prestart_workers(*, fork: bool = False) -> None:
    """Start the worker servers now (they warm up while the session collects).

    ``fork`` starts them by forking this process, which saves a fresh interpreter's
    start and imports (:mod:`pytest_altpatch.supervisor.forked`): only for a caller
    that is single-threaded and has loaded nothing but this package (it falls back to
    a fresh interpreter when threads run)."""
    _POOL.prestart(fork=fork)


def parallel_items() -> int:
    """How many items may run at once (see :func:`set_parallel_items`)."""
    return _POOL.size


def started(key: object) -> bool:
    """Whether an item was started ahead under ``key`` and not yet collected."""
    return key in _AHEAD


def submit_item(key: object, request: ItemRequest, *, alone: bool = False) -> None:
    """Start ``request`` ahead of its turn on a spare worker server; :func:`collect_item`
    with the same ``key`` collects it (does nothing if ``key`` is already running).
    With one server this needs ``alone``: the caller runs no other item until it has
    collected this one.  The threads are made once, as many as the first run allowed at
    once."""
    if key in _AHEAD or (_POOL.size < 2 and not alone):
        return
    begun = None
    if alone:  # sent from here: the item's thread would wait for this thread's GIL
        begun = _POOL.take()
        try:
            begun.begin(request)
        except _SERVER_GONE:
            begun.broken = True
    if not _RUNNER:  # (after the request is out: the server forked off no thread pool)
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        _RUNNER.append(ThreadPoolExecutor(max_workers=_POOL.size,
                                          thread_name_prefix="altpatch-item"))
    future = _AHEAD[key] = _RUNNER[0].submit(_supervised_outcome, request, begun)
    if begun is not None:
        _BEGUN[future] = begun


def _describe(ending: _Ending, seconds: float) -> tuple[str, str] | None:
    """The code and message for a child that ended without a value, or None."""
    reply = ending.reply
    if ending.timed_out:
        return "PATCHER_TIMEOUT", (f"no outcome within the {seconds:g} s host timeout; the "
                                   f"worker was killed {KILL_GRACE:g} s after it")
    if reply is not None and reply.kind == "exited":
        return "PATCHER_EXITED", f"the patcher ended its worker: {reply.text}"
    if reply is not None:
        return None
    status = ending.status
    if status is None:
        return "PATCHER_DIED", "the worker server went away before the item ended"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return "PATCHER_DIED", f"the worker died from {name} ({number})"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return "PATCHER_EXITED", f"the worker exited with status {code} before an outcome was sent"


def _output_hint(output: bytes) -> str | None:
    from pytest_altpatch.terminal import escape_text  # noqa: PLC0415

    text = output.decode("utf-8", "replace").strip()
    if not text:
        return None
    last = text.splitlines()[-1]
    return "worker output: " + escape_text(last[-300:])


class WorkerInternalError(RuntimeError):
    """A bug of ours inside the worker; carries the child's traceback."""


def run_item(request: ItemRequest, *, patcher: Patcher | None = None) -> Outcome:
    """Run one item and return its outcome; a child that ends badly is a coded error.

    With ``patcher`` the item runs in this process (no isolation, no kill).
    """
    from pytest_altpatch.scenarios.runner import run_case  # noqa: PLC0415

    if patcher is not None:
        return run_case(request.case, request.catalog, mode=request.mode, patcher=patcher,
                        schedule=request.schedule, seed=request.seed, timeout=request.timeout)
    return _written(*_supervised_outcome(request))


def collect_item(key: object) -> Outcome:
    """The outcome of the item :func:`submit_item` started under ``key`` (waits for it)."""
    future = _AHEAD.pop(key)
    _BEGUN.pop(future, None)
    return _written(*future.result())


def _written(outcome: Outcome, output: str) -> Outcome:
    """Write what the item's child printed (in item order) and give its outcome."""
    if output:
        sys.stdout.write(output)
    return outcome


def _supervised_outcome(request: ItemRequest,
                        begun: _WorkerServer | None = None) -> tuple[Outcome, str]:
    """The item's outcome from a worker (``begun``: the server it was already sent to)
    and the output its child printed (written by the caller, in item order)."""
    from pytest_altpatch.scenarios.outcome import Outcome  # noqa: PLC0415

    ending = _supervise(request, request.host_seconds, begun)
    found = _describe(ending, request.timeout or DEFAULT_HOST_SECONDS)
    reply = ending.reply
    if found is None and reply is not None:
        if reply.kind == "value" and isinstance(reply.value, Outcome):
            return reply.value, ending.output.decode("utf-8", "replace")
        if reply.kind == "internal":
            raise WorkerInternalError(f"internal error in the worker:\n{reply.text}")
        error = reply.error or ErrorInfo("PATCHER_UNKNOWN", "the worker sent no outcome",
                                         "load")
    else:
        code, message = found or ("PATCHER_DIED", "no outcome")
        error = ErrorInfo(code, message, "late" if request.mode == "late" else "boot",
                          Location(file=str(request.case.path)), _output_hint(ending.output))
    facts = request.facts
    return Outcome(case_id=request.case.id, mode=request.mode, schedule=str(request.schedule),
                   seed=request.seed, patcher=facts.name if facts else request.patcher,
                   dialect=facts.dialect if facts else request.dialect or "",
                   error=error), ""


def patchers_facts(spec: str, dialects: tuple[str, ...] | None = None, *,
                   timeout: float | None = None) -> tuple[PatcherFacts, ...]:
    """Resolve ``spec`` (one patcher per dialect asked) in a child and return each one's
    facts; raises a coded ``PatchError`` (``PATCHER_*``) if that fails."""
    search_path, workdir, environment = session_context()
    seconds = timeout or DEFAULT_HOST_SECONDS
    ending = _supervise(FactsRequest(spec, dialects, search_path, workdir, environment,
                                     seconds), seconds + KILL_GRACE)
    found = _describe(ending, seconds)
    reply = ending.reply
    if found is not None:
        code, message = found
        raise PatchError(code, f"resolving {spec!r}: {message}", phase="load",
                         hint=_output_hint(ending.output))
    assert reply is not None  # _describe returns None only when a reply came
    if reply.kind == "value" and isinstance(reply.value, tuple) and reply.value \
            and all(isinstance(facts, PatcherFacts) for facts in reply.value):
        return reply.value
    if reply.kind == "internal":
        raise WorkerInternalError(f"internal error in the worker:\n{reply.text}")
    error = reply.error or ErrorInfo("PATCHER_UNKNOWN", f"cannot resolve {spec!r}", "load")
    raise PatchError(error.code, error.message, phase="load", hint=error.hint)


def item_request(case: Case, catalog: Catalog, *, mode: str, patcher: str,
                 dialect: str | None, schedule: Schedule | str, seed: int,
                 timeout: float | None, facts: PatcherFacts | None = None) -> ItemRequest:
    """An :class:`ItemRequest` carrying this session's import path and directory (a
    schedule object passes through; a label is parsed)."""
    from pytest_altpatch.image import kept_images  # noqa: PLC0415
    from pytest_altpatch.kept import KeptEntries  # noqa: PLC0415

    search_path, workdir, environment = session_context()
    # (worked out here, before the child needs it: the session keys the same case's
    # images for its own build check, and a worker server is warming up meanwhile)
    digest = kept_images.case_digest(case) if KeptEntries.enabled() else None
    return ItemRequest(case, catalog, mode, patcher, dialect, Schedule.parse(schedule), seed,
                       timeout, search_path, workdir, environment, facts, digest)


__all__ = ["WorkerInternalError", "abandon_ahead", "collect_item", "item_request",
           "parallel_items", "patchers_facts", "prestart_workers", "run_item",
           "set_few_items", "set_parallel_items", "shutdown", "started", "submit_item"]
