"""Pausing Python's cyclic garbage collector around bulk work that makes no cycles.

Loading a large case and assembling a large image allocate hundreds of thousands of
small acyclic objects.  Reference counting frees them all; the cyclic collector's
passes over the growing heap only cost time, and make such work superlinear in its
size.  :func:`paused` turns the collector off for a block and back on only if it was on.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (nested pauses are harmless)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["paused"]
