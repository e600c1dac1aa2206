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

:mod:`.wire` holds the requests, the allow-listed unpickling and the frames;
:mod:`.server` the warm worker server and its forked children; :mod:`.session` the
session's side (the kill at the deadline, the coded errors, :func:`run_item`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_altpatch.lazy import submodule_exports

if TYPE_CHECKING:  # the same names, imported on first use (pytest_altpatch.lazy)
    from pytest_altpatch.supervisor.server import serve
    from pytest_altpatch.supervisor.session import (
        WorkerInternalError,
        abandon_ahead,
        collect_item,
        item_request,
        parallel_items,
        patchers_facts,
        prestart_workers,
        run_item,
        set_few_items,
        set_parallel_items,
        shutdown,
        started,
        submit_item,
    )
    from pytest_altpatch.supervisor.wire import (
        DEFAULT_HOST_SECONDS,
        KILL_GRACE,
        FactsRequest,
        ItemRequest,
        dumps,
        loads,
    )

_EXPORTS = {
    "server": ("serve",),
    "session": (
        "WorkerInternalError",
        "abandon_ahead",
        "collect_item",
        "item_request",
        "parallel_items",
        "patchers_facts",
        "prestart_workers",
        "run_item",
        "set_few_items",
        "set_parallel_items",
        "shutdown",
        "started",
        "submit_item",
    ),
    "wire": (
        "DEFAULT_HOST_SECONDS",
        "KILL_GRACE",
        "FactsRequest",
        "ItemRequest",
        "dumps",
        "loads",
    ),
}
__getattr__, __dir__ = submodule_exports(__name__, _EXPORTS)

__all__ = [
    "DEFAULT_HOST_SECONDS",
    "KILL_GRACE",
    "FactsRequest",
    "ItemRequest",
    "WorkerInternalError",
    "abandon_ahead",
    "collect_item",
    "dumps",
    "item_request",
    "loads",
    "parallel_items",
    "patchers_facts",
    "prestart_workers",
    "run_item",
    "serve",
    "set_few_items",
    "set_parallel_items",
    "shutdown",
    "started",
    "submit_item",
]
