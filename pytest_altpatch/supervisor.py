"""Run each item's machine and patcher in a supervised child process.

A patcher is untrusted code: it may loop in pure Python, deadlock, raise
``SystemExit`` or ``KeyboardInterrupt``, call ``os._exit``, overflow the C stack or
replace the judge's functions.  So the session never runs it.  One warm *worker
server* per session process (started on first use, with the pipeline imported)
forks a fresh child for every request; the child resolves the patcher, runs the case
and sends back the :class:`~pytest_altpatch.scenarios.outcome.Outcome` as plain
data.  The session (pytest's process, or ``altpatch run``) judges and reports.

The session enforces the host timeout with a kill of the child's process group, and
turns every way a child can end without an outcome into a coded error for that item:
``PATCHER_TIMEOUT`` (killed at the deadline), ``PATCHER_DIED`` (a signal, or the
worker server itself went away), ``PATCHER_EXITED`` (the process exited, or the
patcher raised ``SystemExit``/``KeyboardInterrupt``, before an outcome was made).

:func:`run_item` is the whole interface: a request in, an outcome out (the coded
error is the outcome's ``error``).  :func:`patchers_facts` asks a child for a
patcher's name, dialect and features, so even creating the patcher happens outside
the session.  Passing a resolved ``patcher`` runs in-process instead (debugging:
breakpoints and tracebacks work, but a hostile patcher can hang, end or tamper with
the session, and the timeout is only the machine's cooperative budget).

Replies are unpickled with an allow-list (only this package's data classes and a few
builtins), so a child cannot make the session run code by what it sends.  A child
can still *forge* an outcome: the machine runs in the patcher's process.
"""

from __future__ import annotations

import atexit
import contextlib
import copyreg
import dataclasses
import enum
import gc
import io
import os
import pickle
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from pytest_altpatch.errors import AltpatchError, ErrorInfo, Location, PatchError
from pytest_altpatch.patchers.facts import PatcherFacts

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Case, Catalog
    from pytest_altpatch.patchers.contract import Patcher
    from pytest_altpatch.scenarios.outcome import Outcome

#: Host seconds an item may take when no timeout is given (the machine's own default).
DEFAULT_HOST_SECONDS: Final = 120.0
#: Seconds past the timeout before the kill: the machine's cooperative budget ends a
#: guest-code hang first, with every CPU's PC; the kill is for what it cannot stop.
KILL_GRACE: Final = 1.0
#: Bytes of a child's stdout/stderr kept for the report.
OUTPUT_LIMIT: Final = 64 * 1024
#: Bytes of an outcome a child may send (a 200-site case sends a few MiB).
REPLY_LIMIT: Final = 256 * 1024 * 1024
#: Address space a child may grow by, beyond what the warm server already maps.
MEMORY_HEADROOM: Final = 4 * 1024 * 1024 * 1024
#: Seconds to wait for the worker server's own answers (start, status after a kill).
_SERVER_SECONDS: Final = 60.0
#: Modules the worker server imports once, so each forked child starts warm.
_WARM_MODULES: Final = (
    "pytest_altpatch.scenarios.runner",
    "pytest_altpatch.scenarios.late",
    "pytest_altpatch.patchers.registry",
)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ItemRequest:
    """One item: a case in one mode under one schedule against a named patcher."""

    case: Case
    catalog: Catalog
    mode: str
    patcher: str  # a patcher spec, resolved in the child (reference:linux-6.1, mod:attr)
    dialect: str | None = None
    schedule: str = "rr:100"
    seed: int = 0
    timeout: float | None = None
    #: The session's import path, working directory and environment, so ``mod:attr``
    #: resolves and behaves alike in the child.
    search_path: tuple[str, ...] = ()
    workdir: str = ""
    environment: tuple[tuple[str, str], ...] = ()
    #: The patcher's facts, for the outcome of an item whose worker sent none.
    facts: PatcherFacts | None = None

    @property
    def host_seconds(self) -> float:
        """Seconds before the child is killed."""
        return (self.timeout or DEFAULT_HOST_SECONDS) + KILL_GRACE


@dataclass(frozen=True)
class FactsRequest:
    """Resolve a patcher spec, one per dialect asked, and report each one's facts."""

    patcher: str
    dialects: tuple[str, ...] | None = None
    search_path: tuple[str, ...] = ()
    workdir: str = ""
    environment: tuple[tuple[str, str], ...] = ()
    host_seconds: float = DEFAULT_HOST_SECONDS


@dataclass(frozen=True)
class _Reply:
    """What a child sends back: a value, a coded error, or how it was ended."""

    kind: str  # "value", "error", "exited", "internal"
    value: object = None
    error: ErrorInfo | None = None
    text: str = ""


def session_context() -> tuple[tuple[str, ...], str, tuple[tuple[str, str], ...]]:
    """The import path, working directory and environment a child should run in."""
    return (tuple(path for path in sys.path if isinstance(path, str)), os.getcwd(),
            tuple(sorted(os.environ.items())))


# --------------------------------------------------------------------------- pickling


def _mapping_proxy(mapping: dict[object, object]) -> Mapping[object, object]:
    return MappingProxyType(mapping)


def _reduce_proxy(proxy: MappingProxyType[object, object]) -> tuple[object, ...]:
    return (_mapping_proxy, (dict(proxy),))


#: How our frozen data pickles, including the read-only mappings specs are made of.
_DISPATCH: Final[dict[type, Any]] = {**copyreg.dispatch_table, MappingProxyType: _reduce_proxy}


#: Builtins a reply may contain besides what pickle encodes natively.
_SAFE_BUILTINS: Final = frozenset({"frozenset", "set", "bytearray", "complex", "range",
                                   "slice", "object"})
_SAFE_GLOBALS: Final = frozenset({("copyreg", "_reconstructor"), ("pathlib", "PosixPath"),
                                  ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"),
                                  ("pathlib", "PureWindowsPath"), ("pathlib", "Path")})


#: Our own reducers a reply may call.
_SAFE_OURS: Final = frozenset({("pytest_altpatch.supervisor", "_mapping_proxy"),
                               ("pytest_altpatch.errors", "_rebuild")})


class _ReplyUnpickler(pickle.Unpickler):
    """Loads plain data only: a few builtins, and this package's data classes, enums and
    errors (whose constructors only store their fields), so no code runs on load."""

    def find_class(self, module: str, name: str) -> object:
        """Allow-listed globals only."""
        if (module == "builtins" and name in _SAFE_BUILTINS) or (module, name) in \
                _SAFE_GLOBALS or (module, name) in _SAFE_OURS:
            return super().find_class(module, name)
        if module.startswith("pytest_altpatch.") and not name.startswith("__"):
            found = super().find_class(module, name)
            if isinstance(found, type) and (dataclasses.is_dataclass(found)
                                            or issubclass(found, (enum.Enum, AltpatchError))):
                return found
        raise pickle.UnpicklingError(f"a worker reply may not contain {module}.{name}")


def dumps(value: object) -> bytes:
    """Pickle plain data (frozen dataclasses, read-only mappings) for the other side."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(value)
    return buffer.getvalue()


def loads(data: bytes) -> object:
    """Unpickle a reply with the allow-list."""
    return _ReplyUnpickler(io.BytesIO(data)).load()


# --------------------------------------------------------------------------- framing

_HEADER: Final = struct.Struct("<Q")


def _send(channel: socket.socket, payload: bytes) -> None:
    channel.sendall(_HEADER.pack(len(payload)) + payload)


def _receive_exactly(channel: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([channel], [], [], left)[0]:
                raise TimeoutError
        chunk = channel.recv(min(remaining, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _receive(channel: socket.socket, deadline: float | None = None) -> bytes:
    (size,) = _HEADER.unpack(_receive_exactly(channel, _HEADER.size, deadline))
    return _receive_exactly(channel, size, None if deadline is None else deadline + 60.0)


# --------------------------------------------------------------------------- the child


def _perform(request: ItemRequest | FactsRequest) -> _Reply:
    """Resolve the patcher and do the request (in the child)."""
    from pytest_altpatch.patchers.registry import (  # noqa: PLC0415
        resolve_patcher,
        resolve_patchers,
    )
    from pytest_altpatch.scenarios.runner import run_case  # noqa: PLC0415

    try:
        if isinstance(request, FactsRequest):
            patchers = resolve_patchers(request.patcher, request.dialects)
            return _Reply("value", PatcherFacts.of_all(patchers, request.dialects))
        patcher = resolve_patcher(request.patcher, dialect=request.dialect)
    except AltpatchError as exc:
        return _Reply("error", error=exc.info())
    except Exception as exc:  # the patcher's module failed while being imported
        return _Reply("error", error=ErrorInfo(
            "PATCHER_UNKNOWN", f"loading {request.patcher!r} failed: {type(exc).__name__}: "
            f"{exc}", "load"))
    outcome = run_case(request.case, request.catalog, mode=request.mode, patcher=patcher,
                       schedule=request.schedule, seed=request.seed, timeout=request.timeout)
    return _Reply("value", outcome)


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


def _child(frame: bytes, reply_fd: int, output_fd: int) -> None:
    """Run one request and write the reply; never returns."""
    data = b""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        _limit_memory()
        with contextlib.suppress(ValueError, OSError):  # a crash leaves no core to write
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        request = pickle.loads(frame)
        sys.path[:] = list(request.search_path) or sys.path
        if request.workdir:
            os.chdir(request.workdir)
        if request.environment:
            os.environ.clear()
            os.environ.update(dict(request.environment))
        reply = _perform(request)
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        reply = _Reply("exited", text=f"{type(exc).__name__}({exc})" if str(exc)
                       else type(exc).__name__)
    except BaseException:
        reply = _Reply("internal", text=traceback.format_exc())
    try:
        data = dumps(reply)
    except BaseException:
        data = dumps(_Reply("internal", text=traceback.format_exc()))
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        _write_frame(reply_fd, data)
    os._exit(0)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, limit: int) -> bytes | None:
    """One length-prefixed frame from a pipe; None on EOF, a short or oversized frame."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    return None if size > limit else _read_exactly(fd, size)


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


@dataclass
class _Spare:
    """A child forked ahead of its request, so no fork sits on an item's path."""

    pid: int
    request_fd: int
    reply_fd: int
    output: io.BufferedRandom

    @classmethod
    def fork(cls, channel: socket.socket) -> _Spare:
        """Fork a child that waits for one request frame, runs it and replies."""
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
            frame = _read_frame(request_read, REPLY_LIMIT)
            if frame is None:
                os._exit(0)  # the server went away
            _child(frame, reply_write, output.fileno())
        os.close(request_read)
        os.close(reply_write)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # both sides set it: no window for the kill
        return cls(pid, request_write, reply_read, output)

    def finish(self) -> tuple[int | None, bytes, bytes]:
        """The reply (read first: the child sends it before it exits), then the status
        if the reply is missing, and the captured output."""
        reply = _read_frame(self.reply_fd, REPLY_LIMIT)
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


def _warm_up() -> None:
    """Import the pipeline and run a bundled case per mode with the reference patcher,
    so every forked child finds lazy imports, compiled patterns and engines ready."""
    for name in _WARM_MODULES:
        __import__(name)
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
    # Children never collect the server's objects, so they never copy its pages.
    gc.collect()
    gc.freeze()


def _warm_native(frame: bytes, warmed: set[tuple[object, ...]]) -> bool:
    """Load a native patcher in the server once, so its children start with it loaded.

    A native patcher is objects the machine runs, not Python code, so the server may
    load it (assembling and linking cost a few hundred milliseconds, per child
    otherwise).  Whether it loads is the child's to report; True when this warmed it."""
    try:
        request = pickle.loads(frame)
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


def serve(channel_fd: int) -> None:
    """The worker server's loop: a forked child per request, until the session goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the session's to handle
    _warm_up()
    channel = socket.socket(fileno=channel_fd)
    spare = _Spare.fork(channel)
    warmed: set[tuple[object, ...]] = set()
    while True:
        try:
            frame = _receive(channel)
        except (EOFError, OSError):
            return
        if _warm_native(frame, warmed):
            spare.retire()  # forked before the warm-up: a fresh one inherits it
            spare = _Spare.fork(channel)
        child = spare
        with contextlib.suppress(OSError):  # if the child is gone, its status says how
            _write_frame(child.request_fd, frame)
        try:
            _send(channel, struct.pack("<q", child.pid))
            status, reply, captured = child.finish()
            _send(channel, dumps((status, reply, captured)))
        except OSError:
            return
        finally:
            child.reap()
        spare = _Spare.fork(channel)


# --------------------------------------------------------------------------- the session


@dataclass(frozen=True)
class _Ending:
    """How one child ended, as the session saw it."""

    reply: _Reply | None
    status: int | None  # waitpid status; None if the worker server went away
    timed_out: bool
    output: bytes


class _WorkerServer:
    """The session's handle on its warm worker server process."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(session_context()[0])
        self.process = subprocess.Popen(
            [sys.executable, "-c",
             "import sys; from pytest_altpatch.supervisor import serve; serve(int(sys.argv[1]))",
             str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=environment,
            start_new_session=True)  # the terminal's Ctrl-C goes to the session only
        theirs.close()
        self.channel = ours

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def close(self) -> None:
        """Stop the server (it exits when its channel closes)."""
        self.channel.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def execute(self, request: ItemRequest | FactsRequest, seconds: float) -> _Ending:
        """Send ``request``; kill the child if it runs past ``seconds``."""
        _send(self.channel, dumps(request))
        (pid,) = struct.unpack("<q", _receive(self.channel, time.monotonic() + _SERVER_SECONDS))
        timed_out = False
        try:
            try:
                frame = _receive(self.channel, time.monotonic() + seconds)
            except TimeoutError:
                timed_out = True
                _kill(pid)
                frame = _receive(self.channel, time.monotonic() + _SERVER_SECONDS)
        except BaseException:
            _kill(pid)  # Ctrl-C or a lost server: never leave the child running
            raise
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
                candidate = _Reply("internal", text=f"unreadable reply: {exc}")
            reply = candidate if isinstance(candidate, _Reply) else None
        return _Ending(reply, status, timed_out, output)


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


_SERVER: _WorkerServer | None = None


def _server() -> _WorkerServer:
    global _SERVER
    if _SERVER is None or not _SERVER.alive():
        if _SERVER is not None:
            _SERVER.channel.close()
        _SERVER = _WorkerServer()
    return _SERVER


@atexit.register
def shutdown() -> None:
    """Stop this process's worker server, if one was started."""
    global _SERVER
    if _SERVER is not None:
        _SERVER.close()
        _SERVER = None


def _supervise(request: ItemRequest | FactsRequest, seconds: float) -> _Ending:
    server = _server()
    try:
        return server.execute(request, seconds)
    except (EOFError, OSError, TimeoutError, pickle.UnpicklingError, ValueError, TypeError):
        # The server itself went away (a child may kill its parent): start afresh.
        global _SERVER
        _SERVER = None
        with contextlib.suppress(OSError):
            server.process.kill()
        server.channel.close()
        return _Ending(None, None, False, b"")


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
    from pytest_altpatch.scenarios.outcome import Outcome  # noqa: PLC0415
    from pytest_altpatch.scenarios.runner import run_case  # noqa: PLC0415

    if patcher is not None:
        return run_case(request.case, request.catalog, mode=request.mode, patcher=patcher,
                        schedule=request.schedule, seed=request.seed, timeout=request.timeout)
    ending = _supervise(request, request.host_seconds)
    found = _describe(ending, request.timeout or DEFAULT_HOST_SECONDS)
    reply = ending.reply
    if found is None and reply is not None:
        if reply.kind == "value" and isinstance(reply.value, Outcome):
            if ending.output:
                sys.stdout.write(ending.output.decode("utf-8", "replace"))
            return reply.value
        if reply.kind == "internal":
            raise WorkerInternalError(f"internal error in the worker:\n{reply.text}")
        error = reply.error or ErrorInfo("PATCHER_UNKNOWN", "the worker sent no outcome",
                                         "load")
    else:
        code, message = found or ("PATCHER_DIED", "no outcome")
        error = ErrorInfo(code, message, "late" if request.mode == "late" else "boot",
                          Location(file=str(request.case.path)), _output_hint(ending.output))
    facts = request.facts
    return Outcome(case_id=request.case.id, mode=request.mode, schedule=request.schedule,
                   seed=request.seed, patcher=facts.name if facts else request.patcher,
                   dialect=facts.dialect if facts else request.dialect or "", error=error)


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
                 dialect: str | None, schedule: str, seed: int, timeout: float | None,
                 facts: PatcherFacts | None = None) -> ItemRequest:
    """An :class:`ItemRequest` carrying this session's import path and directory."""
    search_path, workdir, environment = session_context()
    return ItemRequest(case, catalog, mode, patcher, dialect, schedule, seed, timeout,
                       search_path, workdir, environment, facts)


__all__ = [
    "DEFAULT_HOST_SECONDS",
    "KILL_GRACE",
    "FactsRequest",
    "ItemRequest",
    "WorkerInternalError",
    "dumps",
    "item_request",
    "loads",
    "patchers_facts",
    "run_item",
    "serve",
    "shutdown",
]

