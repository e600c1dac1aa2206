"""The worker server: one warm process per session that forks a child per request.

The server imports the pipeline once (and runs a bundled case per mode), so each forked
child starts warm.  A server for many items forks a spare child ahead of each request,
so no fork sits on an item's path; a server for one or two items forks each child when
its request has come, and the child takes the request the server has already read
(no copy through a pipe, no second unpickling).  The child resolves the patcher, runs
the case and writes its reply; it never returns.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import resource
import select
import signal
import socket
import struct
import sys
import tempfile
import traceback
from dataclasses import dataclass
from typing import Final

from pytest_altpatch import collector
from pytest_altpatch.errors import AltpatchError, ErrorInfo
from pytest_altpatch.lazy import import_submodules
from pytest_altpatch.patchers.facts import PatcherFacts
from pytest_altpatch.supervisor.wire import (
    FactsRequest,
    ItemRequest,
    Reply,
    dumps,
    read_frame,
    receive,
    send,
    write_frame,
)

#: Bytes of a child's stdout/stderr kept for the report.
OUTPUT_LIMIT: Final = 64 * 1024
#: Bytes of an outcome a child may send (a 200-site case sends a few MiB).
REPLY_LIMIT: Final = 256 * 1024 * 1024
#: Address space a child may grow by, beyond what the warm server already maps.
MEMORY_HEADROOM: Final = 4 * 1024 * 1024 * 1024
#: Modules the worker server imports once, so each forked child starts warm.
_WARM_MODULES: Final = ("pytest_altpatch.scenarios.runner", "pytest_altpatch.patchers.registry")
#: What only late items load, imported too by a server for many items.
_LATE_MODULES: Final = ("pytest_altpatch.scenarios.late",)
#: Packages whose every re-exporting submodule the server imports too.
_WARM_PACKAGES: Final = ("pytest_altpatch.a64", "pytest_altpatch.image", "pytest_altpatch.machine")


# --------------------------------------------------------------------------- the child


def _perform(request: ItemRequest | FactsRequest) -> Reply:
    """Resolve the patcher and do the request (in the child)."""
    from pytest_altpatch.patchers.registry import (  # noqa: PLC0415
        resolve_patcher,
        resolve_patchers,
    )
    from pytest_altpatch.scenarios.runner import run_case  # noqa: PLC0415

    try:
        if isinstance(request, FactsRequest):
            patchers = resolve_patchers(request.patcher, request.dialects)
            return Reply("value", PatcherFacts.of_all(patchers, request.dialects))
        patcher = resolve_patcher(request.patcher, dialect=request.dialect)
    except AltpatchError as exc:
        return Reply("error", error=exc.info())
    except Exception as exc:  # the patcher's module failed while being imported
        return Reply("error", error=ErrorInfo(
            "PATCHER_UNKNOWN", f"loading {request.patcher!r} failed: {type(exc).__name__}: "
            f"{exc}", "load"))
    if request.case_digest is not None:
        from pytest_altpatch.image.kept_images import remember_case_digest  # noqa: PLC0415

        remember_case_digest(request.case, request.case_digest)
    outcome = run_case(request.case, request.catalog, mode=request.mode, patcher=patcher,
                       schedule=request.schedule, seed=request.seed, timeout=request.timeout)
    return Reply("value", outcome)


def _limit_memory() -> None:
    """Bound the child's address space, so a huge allocation fails as MemoryError."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = mapped + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


def _child(frame: bytes, reply_fd: int, output_fd: int,
           read: ItemRequest | FactsRequest | None = None) -> None:
    """Run one request (``read``: the server's unpickling of ``frame``) and write the
    reply; never returns."""
    data = b""
    collector.one_run_process()
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        _limit_memory()
        with contextlib.suppress(ValueError, OSError):  # a crash leaves no core to write
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if read is not None:
            request = read
        else:
            with collector.paused():  # a large case makes no cycles; its run freezes it
                request = pickle.loads(frame)
        sys.path[:] = list(request.search_path) or sys.path
        if request.workdir:
            os.chdir(request.workdir)
        if request.environment:
            os.environ.clear()
            os.environ.update(dict(request.environment))
        reply = _perform(request)
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        reply = Reply("exited", text=f"{type(exc).__name__}({exc})" if str(exc)
                       else type(exc).__name__)
    except BaseException:
        reply = Reply("internal", text=traceback.format_exc())
    try:
        data = dumps(reply)
    except BaseException:
        data = dumps(Reply("internal", text=traceback.format_exc()))
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        write_frame(reply_fd, data)
    os._exit(0)


@dataclass
class _Spare:
    """A child forked ahead of its request, so no fork sits on an item's path."""

    pid: int
    request_fd: int
    reply_fd: int
    output: io.BufferedRandom

    @classmethod
    def fork(cls, channel: socket.socket, frame: bytes | None = None,
             read: ItemRequest | FactsRequest | None = None) -> _Spare:
        """Fork a child that waits for one request frame, runs it and replies (given
        ``frame``, and ``read`` its unpickling if the server made it, the child runs
        that at once)."""
        output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the server
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            channel.close()
            os.close(request_write)
            os.close(reply_read)
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)
            if frame is None:
                frame = read_frame(request_read, REPLY_LIMIT)
            if frame is None:
                os._exit(0)  # the server went away
            _child(frame, reply_write, output.fileno(), read)
        os.close(request_read)
        os.close(reply_write)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # both sides set it: no window for the kill
        return cls(pid, request_write, reply_read, output)

    def finish(self, channel: socket.socket) -> tuple[int | None, bytes, bytes]:
        """The reply (read first: the child sends it before it exits), then the status
        if the reply is missing, and the captured output.

        Raises EOFError if the session goes away first (its end of ``channel`` closed:
        it was killed, or gave the item up); the caller then kills the child, which
        may never return on its own."""
        _await_reply(self.reply_fd, channel)
        reply = read_frame(self.reply_fd, REPLY_LIMIT)
        status: int | None = None
        if reply is None:
            _, status = os.waitpid(self.pid, 0)
        self.output.seek(0)
        captured = self.output.read(OUTPUT_LIMIT)
        return status, reply or b"", captured

    def retire(self) -> None:
        """End a spare that will not be used (it exits when its request pipe closes)."""
        with contextlib.suppress(OSError):
            os.close(self.request_fd)
        self.reap()

    def reap(self) -> None:
        """Kill the child's group (it has replied or ended), reap it, close our ends.

        Killing before reaping: until the child is reaped its pid cannot be reused."""
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        for fd in (self.request_fd, self.reply_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.output.close()


def _await_reply(reply_fd: int, channel: socket.socket) -> None:
    """Wait until the child's reply pipe is readable (or closed), watching the session.

    While a child runs, the session sends nothing (one request at a time), so a readable
    channel means the session's end closed; anything else on it is left for later."""
    watched: list[int | socket.socket] = [reply_fd, channel]
    while True:
        ready, _, _ = select.select(watched, [], [])
        if reply_fd in ready:
            return
        try:
            gone = channel.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            gone = True
        if gone:
            raise EOFError("the session went away while its item ran")
        watched = [reply_fd]


#: Spare unicorn instances a warm server keeps for its children: enough for the CPUs
#: of most cases (a case with more CPUs makes the rest itself).
_SPARE_ENGINES: Final = 8


def _warm_up(cases: bool = True) -> None:
    """Import the pipeline and (if ``cases``) run a bundled case per mode with the
    reference patcher, so every forked child finds lazy imports, compiled patterns and
    engines ready.

    Without ``cases`` (a session of one or two items, whose child is on its critical
    path) only what a boot item imports is loaded: an item that builds an image or a
    payload loads the assembler and ELF layers itself, and each CPU's engine is made
    at the size its case needs rather than spared at the smallest."""
    for name in _WARM_MODULES:
        __import__(name)
    if cases:
        for name in _LATE_MODULES:
            __import__(name)
        for package in _WARM_PACKAGES:  # their __init__ s import on first use
            import_submodules(package)
        _run_bundled_cases()
        # Every child then starts with initialised engines for its CPUs (about 1.5 ms
        # each), of the size a machine for an ordinary case's image asks for.
        from pytest_altpatch.machine.engines import prepare_engines  # noqa: PLC0415
        from pytest_altpatch.scenarios.session import SPARE_CODE_BUFFER  # noqa: PLC0415

        prepare_engines(_SPARE_ENGINES, SPARE_CODE_BUFFER)
    # Every child then finds the kept images' code fingerprint made (about 2 ms), and
    # unicorn's instruction counter found (kept between runs: about 1 ms).
    from pytest_altpatch.image.kept_images import prepare  # noqa: PLC0415
    from pytest_altpatch.machine import ucount  # noqa: PLC0415

    prepare(trim=cases)
    ucount.prepare()
    # Children never collect the server's objects, so they never copy its pages (a
    # server for one or two items does not collect first: its garbage is little).
    if cases:
        gc.collect()
    gc.freeze()


def _run_bundled_cases() -> None:
    """Run the first bundled case of each mode (what a child would set up on first use)."""
    try:
        from pytest_altpatch.cases.case import read_case  # noqa: PLC0415
        from pytest_altpatch.cases.catalog import read_catalog  # noqa: PLC0415
        from pytest_altpatch.cases.modes import MODES, has_mode  # noqa: PLC0415
        from pytest_altpatch.patchers.reference import ReferencePatcher  # noqa: PLC0415
        from pytest_altpatch.resources import bundled_corpus  # noqa: PLC0415
        from pytest_altpatch.scenarios.runner import run_case  # noqa: PLC0415

        root = bundled_corpus()
        catalog, _ = read_catalog(root)
        wanted = set(MODES)
        for path in sorted((root / "cases").rglob("*.yaml")):
            if not wanted or catalog is None:
                break
            case, _ = read_case(path, catalog, corpus_root=root)
            for mode in [m for m in sorted(wanted) if case is not None and has_mode(case, m)]:
                assert case is not None
                run_case(case, catalog, mode=mode, patcher=ReferencePatcher(case.dialects[0]))
                wanted.discard(mode)
    except Exception:  # warming is an optimisation only
        pass


def _warm_native(request: ItemRequest | FactsRequest | None,
                 warmed: set[tuple[object, ...]]) -> bool:
    """Load a native patcher in the server once, so its children start with it loaded.

    A native patcher is objects the machine runs, not Python code, so the server may
    load it (assembling and linking cost a few hundred milliseconds, per child
    otherwise).  Whether it loads is the child's to report; True when this warmed it."""
    if request is None:
        return False
    try:
        spec = request.patcher
        if not isinstance(spec, str) or not spec.startswith("native:"):
            return False
        asked = request.dialects if isinstance(request, FactsRequest) else (request.dialect,)
        key = (spec, asked, request.workdir)
        if key in warmed:
            return False
        warmed.add(key)
        from pytest_altpatch.patchers.registry import resolve_patcher  # noqa: PLC0415

        if request.workdir:
            os.chdir(request.workdir)
        for dialect in asked or (None,):
            resolve_patcher(spec, dialect=dialect)
    except Exception:  # the child resolves it again and reports why
        return True
    return True


def _peek(frame: bytes) -> ItemRequest | FactsRequest | None:
    """The request a frame holds, or None (the child unpickles it again and reports
    what is wrong with it)."""
    try:
        with collector.paused():  # a large case makes no cycles
            request = pickle.loads(frame)
    except Exception:
        return None
    return request if isinstance(request, (ItemRequest, FactsRequest)) else None


def serve(channel_fd: int, *, warm_cases: bool = True, leave: bool = False) -> None:
    """The worker server's loop: a forked child per request, until the session goes.

    The server warms up at once unless a request is already waiting: a session's first
    request may be for the patcher's facts, which a cold child answers, and the session
    collects its items while the server warms up after that answer.  With ``leave``,
    the process then ends without finalising its warm heap (the spare child exits when
    its request pipe closes with it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the session's to handle
    _serve(socket.socket(fileno=channel_fd), warm_cases)
    if leave:
        from pytest_altpatch.process_exit import leave as leave_now  # noqa: PLC0415

        leave_now(0)


def _serve(channel: socket.socket, warm_cases: bool) -> None:
    ahead = warm_cases  # many items: each child is forked before its request comes
    spare = _Spare.fork(channel) if ahead else None
    warm = False
    warmed: set[tuple[object, ...]] = set()
    while True:
        if not warm and not select.select([channel], [], [], 0)[0]:
            warm = True  # nothing asked yet: warm up now rather than on the first item
            _warm_up(warm_cases)
            spare = _fork_again(spare, channel)  # forked cold: a fresh one inherits it
        try:
            frame = receive(channel)
        except (EOFError, OSError):
            return
        request = _peek(frame)
        if not warm and not isinstance(request, FactsRequest):
            warm = True  # a session's first request may be for facts: a cold child's
            _warm_up(warm_cases)
            spare = _fork_again(spare, channel)
        if _warm_native(request, warmed):
            spare = _fork_again(spare, channel)  # forked before: a fresh one inherits it
        if spare is None:
            child = _Spare.fork(channel, frame, request)
        else:
            child = spare
            with contextlib.suppress(OSError):  # if the child is gone, its status says how
                write_frame(child.request_fd, frame)
        spare = None
        del request  # (the child has its own copy)
        try:
            send(channel, struct.pack("<q", child.pid))
            status, reply, captured = child.finish(channel)
            send(channel, dumps((status, reply, captured)))
        except (EOFError, OSError):
            return  # (the finally kills the child's whole group)
        finally:
            child.reap()
        if not warm:
            warm = True
            _warm_up(warm_cases)  # while the session collects its items
        if ahead:
            spare = _Spare.fork(channel)


def _fork_again(spare: _Spare | None, channel: socket.socket) -> _Spare | None:
    """Retire ``spare`` and fork a fresh one in its place (None stays None)."""
    if spare is None:
        return None
    spare.retire()
    return _Spare.fork(channel)


__all__ = ["MEMORY_HEADROOM", "OUTPUT_LIMIT", "REPLY_LIMIT", "serve"]
