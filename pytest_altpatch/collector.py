"""Keeping Python's cyclic garbage collector off work that makes no cycles.

Loading a large case and assembling a large image allocate hundreds of thousands of
small acyclic objects, and a run keeps them (the case, the image, the assembler's memo)
until it ends.  Reference counting frees what dies; the cyclic collector's passes over
that growing, long-lived heap only cost time (a quarter of a 10,000-site run), and make
such work superlinear in its size.

* :func:`paused` turns the collector off for a block, and back on only if it was on.
* :func:`settled` marks a run.  In a process that runs one item and exits (a worker
  child, see :func:`one_run_process`), everything alive when a run starts, and what
  :func:`settle` or a :func:`paused` block inside it leaves behind, is frozen
  (``gc.freeze``) for good, so later passes scan only what the run allocates
  afterwards; cyclic garbage among those new objects is still collected.  Anywhere
  else a run changes nothing: a freeze there would also keep the cyclic garbage of
  earlier runs (machines and their engines) from ever being collected.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: Whether this process runs one item and exits (set by :func:`one_run_process`).
_one_run = False
#: How many :func:`settled` blocks are open.
_runs = 0


def one_run_process() -> None:
    """Declare that this process runs one item and then exits (a worker child)."""
    global _one_run
    _one_run = True


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (nested pauses are harmless).

    Inside :func:`settled`, what the block leaves alive is frozen when it ends, so
    the first pass afterwards does not scan it all."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        settle()
        if was_enabled:
            gc.enable()


def settle() -> None:
    """Inside :func:`settled` in a one-run process: freeze every object alive now."""
    if _runs and _one_run:
        gc.freeze()


@contextlib.contextmanager
def settled() -> Iterator[None]:
    """Run the block as a run (see the module docstring)."""
    global _runs
    _runs += 1
    settle()
    try:
        yield
    finally:
        _runs -= 1


__all__ = ["one_run_process", "paused", "settle", "settled"]
