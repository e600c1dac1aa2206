"""Ending a command-line process without tearing its heap down.

An interpreter that exits normally finalises every module and object it holds: for the
``altpatch`` command after a 200-site run (case, image, outcome, engines) that took
60-100 ms, and for the worker server (its warm, frozen heap) 30-60 ms, a fifth of the
whole command.  :func:`leave` does what an exit must (the exit handlers, including
those of the user's patcher module, coverage tools and ``weakref.finalize``; flushing
the standard streams) and then ends the process at once.  It falls back to a normal
exit while a non-daemon thread other than the main one still runs, since the
interpreter would wait for it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Final, NoReturn

#: The status CPython exits with when flushing the standard streams fails at exit.
FLUSH_FAILED: Final = 120


def _threads_left() -> bool:
    main = threading.main_thread()
    return any(thread is not main and not thread.daemon and thread.is_alive()
               for thread in threading.enumerate())


def leave(status: int) -> NoReturn:
    """Run the exit handlers, flush stdout and stderr, and end with ``status``."""
    atexit._run_exitfuncs()  # (it empties the list: a fallback exit runs none twice)
    if _threads_left():
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: the status the interpreter gives
            status = status or FLUSH_FAILED
    os._exit(status)


__all__ = ["FLUSH_FAILED", "leave"]
