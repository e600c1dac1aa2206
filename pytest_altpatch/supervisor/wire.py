"""The wire between the session and its workers: requests, replies, pickling, frames.

Requests go down to a worker as pickles (the worker trusts the session); replies come
back through :func:`loads` (:mod:`pytest_altpatch.plain_data`), which unpickles with an
allow-list (only this package's data classes and a few builtins), so a child cannot
make the session run code by what it sends.  Every message is a length-prefixed frame,
on the session's socket or on a child's pipes.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pytest_altpatch.errors import ErrorInfo
from pytest_altpatch.machine import Schedule
from pytest_altpatch.patchers.facts import PatcherFacts
from pytest_altpatch.plain_data import dumps, loads

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Case, Catalog

#: Host seconds an item may take when no timeout is given (the machine's own default).
DEFAULT_HOST_SECONDS: Final = 120.0
#: Seconds past the timeout before the kill: the machine's cooperative budget ends a
#: guest-code hang first, with every CPU's PC; the kill is for what it cannot stop.
KILL_GRACE: Final = 1.0
#: The schedule of a request that names none.
DEFAULT_SCHEDULE: Final = Schedule("rr", 100)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ItemRequest:
    """One item: a case in one mode under one schedule against a named patcher."""

    case: Case
    catalog: Catalog
    mode: str
    patcher: str  # a patcher spec, resolved in the child (reference:linux-6.1, mod:attr)
    dialect: str | None = None
    #: Handed to the machine as it is (never parsed again).
    schedule: Schedule = DEFAULT_SCHEDULE
    seed: int = 0
    timeout: float | None = None
    #: The session's import path, working directory and environment, so ``mod:attr``
    #: resolves and behaves alike in the child.
    search_path: tuple[str, ...] = ()
    workdir: str = ""
    environment: tuple[tuple[str, str], ...] = ()
    #: The patcher's facts, for the outcome of an item whose worker sent none.
    facts: PatcherFacts | None = None
    #: :func:`~pytest_altpatch.image.kept_images.case_digest` of ``case`` as the session
    #: worked it out (the child keys its kept image with it; None: the child works it out).
    case_digest: bytes | None = None

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
class Reply:
    """What a child sends back: a value, a coded error, or how it was ended."""

    kind: str  # "value", "error", "exited", "internal"
    value: object = None
    error: ErrorInfo | None = None
    text: str = ""


def session_context() -> tuple[tuple[str, ...], str, tuple[tuple[str, str], ...]]:
    """The import path, working directory and environment a child should run in."""
    return (tuple(path for path in sys.path if isinstance(path, str)), os.getcwd(),
            tuple(sorted(os.environ.items())))


# --------------------------------------------------------------------------- framing

HEADER: Final = struct.Struct("<Q")


def send(channel: socket.socket, payload: bytes) -> None:
    channel.sendall(HEADER.pack(len(payload)) + payload)


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


def receive(channel: socket.socket, deadline: float | None = None) -> bytes:
    (size,) = HEADER.unpack(_receive_exactly(channel, HEADER.size, deadline))
    return _receive_exactly(channel, size, None if deadline is None else deadline + 60.0)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int) -> bytes | None:
    """One length-prefixed frame from a pipe; None on EOF, a short or oversized frame."""
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    return None if size > limit else _read_exactly(fd, size)


def write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


__all__ = [
    "DEFAULT_HOST_SECONDS",
    "HEADER",
    "KILL_GRACE",
    "FactsRequest",
    "ItemRequest",
    "Reply",
    "dumps",
    "loads",
    "read_frame",
    "receive",
    "send",
    "session_context",
    "write_frame",
]
