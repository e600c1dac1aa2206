"""The schedules a run uses when the user names none (plugin, CLI and fixture share it).

``pct:0`` is the priority schedule that runs every waiting CPU ahead of CPU0, the CPU
that patches (:mod:`pytest_altpatch.machine.priority`): it fails every bug of the
rendezvous-ordering family (a waiter that leaves, synchronises or reads the release
flag too early; a patching CPU that releases the others before its maintenance
completes) by construction, and costs about what ``rr:100`` costs.  The schedule study
(``tests/benchmarks/bench_schedules.py``) measured the alternatives.
"""

from __future__ import annotations

from typing import Final

DEFAULT_SCHEDULES: Final = "pct:0"

__all__ = ["DEFAULT_SCHEDULES"]
