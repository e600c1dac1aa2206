"""PCT-style priority schedules (``pct:SEED``): which CPU takes the next step.

A priority schedule (Burckhardt et al., "A Randomized Scheduler with Probabilistic
Guarantees of Finding Bugs", ASPLOS 2010) always runs the highest-priority CPU that
can make progress, one *step* at a time: one context operation of a Python CPU, or a
guest slice that ends at the next patching event (store to code, DC/IC, DSB, ISB, host
service) or after ``PCT_STEP_QUANTUM`` instructions.  A CPU that spins (a Python
``relax()``, the ``relax`` host service, or a guest slice with no event) waits until
some CPU's step changes shared state; while every CPU waits, all are woken again (a
*cycle*).  After a cycle in which CPUs could not interact (every CPU ran guest code, no
modification of code was in flight, no event), the guest steps of the next cycle double,
up to ``PCT_QUIET_STEP``, as ``rr``'s slices do, and are back at the quantum at the next
event: a long run of guest code costs about what it costs under ``rr``, while every step
near a modification of code stays as fine as before.

* ``pct:0`` (waiters first): CPU0, the CPU that patches in every rendezvous, has the
  lowest priority and CPU n-1 the highest.  CPU0 therefore takes a step only when every
  other CPU spins or has finished, so each waiting CPU's operations (its ISB, its exit
  from the rendezvous) happen as early as the patching CPU's progress allows.  Any bug
  that needs one ordering "a waiter's operation before operation k of the patching CPU"
  (bug depth 1) fails under ``pct:0`` by construction.
* ``pct:1`` (patcher first): the reverse order, CPU0 highest: the patching CPU runs
  until it spins or finishes before any waiter takes a step, for the depth-1 bugs of the
  other direction (a waiter that arrives late, while CPU0 already writes).
* ``pct:S`` for S >= 2: random distinct priorities and one priority change point drawn
  uniformly from the first :data:`HORIZON` steps (at that step the running CPU drops
  below all others).  PCT's bound: a bug of depth d <= 2 is found with probability at
  least 1 / (n * HORIZON**(d-1)) per seed for runs of at most HORIZON steps.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

#: Steps over which the change point of ``pct:S`` (S >= 1) is drawn.
HORIZON: Final = 256


class PriorityPolicy:
    """The step-by-step choices of one ``pct:SEED`` schedule on one machine."""

    def __init__(self, ncpus: int, schedule_seed: int, machine_seed: int) -> None:
        self._rng = random.Random(f"pct:{schedule_seed}:{machine_seed}")
        order = list(range(ncpus))  # lowest priority first
        if schedule_seed == 1:
            order.reverse()
        elif schedule_seed >= 2:
            self._rng.shuffle(order)
        # priority[cpu]: larger runs first; pct:0 puts CPU0 lowest, CPU n-1 highest.
        self._priority = {cpu: ncpus + rank for rank, cpu in enumerate(order)}
        self._change_at = self._rng.randint(1, HORIZON) if schedule_seed >= 2 else None
        self._steps = 0
        self._waiting: set[int] = set()
        #: How many times every CPU spun and all were woken again.
        self.cycles = 0

    def pick(self, runnable: Sequence[int]) -> int:
        """The CPU to run the next step, among ``runnable`` (not empty)."""
        awake = [cpu for cpu in runnable if cpu not in self._waiting]
        if not awake:  # everyone spins: wake all, so the hang detector sees them all run
            self._waiting.clear()
            self.cycles += 1
            awake = list(runnable)
        return max(awake, key=self._priority.__getitem__)

    def stepped(self, cpu: int, *, changed: bool, spun: bool) -> None:
        """Record ``cpu``'s step: whether it changed shared state, whether it spun."""
        self._steps += 1
        if changed:
            self._waiting.clear()
        if spun:
            self._waiting.add(cpu)
        if self._change_at is not None and self._steps == self._change_at:
            self._priority[cpu] = min(self._priority.values()) - 1


__all__ = ["HORIZON", "PriorityPolicy"]
