"""Hostile patchers: each misbehaves in one way a supervised worker must survive.

Every class is the reference linux-6.1 patcher plus an ``attack`` run at the start of
``apply_alternatives_all``.  With ``ALTPATCH_HOSTILE_ONCE`` set to a file name, only the
first item attacks (it creates the file first), so the others must pass: that shows an
attack costs one item, not the session.
"""
from __future__ import annotations

import sys

HOSTILE_PATCHERS = '''
import os
import sys
import threading

from pytest_altpatch.patchers.reference import ReferencePatcher


class Hostile(ReferencePatcher):
    def __init__(self) -> None:
        super().__init__("linux-6.1")
        self.name = "hostile:" + type(self).__name__.lower()

    def apply_alternatives_all(self, ctx, env):
        marker = os.environ.get("ALTPATCH_HOSTILE_ONCE")
        if marker is None or not os.path.exists(marker):
            if marker is not None:
                open(marker, "w").close()
            self.attack(ctx, env)
        super().apply_alternatives_all(ctx, env)


class Loop(Hostile):
    def attack(self, ctx, env):
        while True:
            pass


class RelaxLoop(Hostile):
    def attack(self, ctx, env):
        while True:
            ctx.relax()


class Deadlock(Hostile):
    def attack(self, ctx, env):
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()


class Raise(Hostile):
    def attack(self, ctx, env):
        raise ValueError("hostile patcher gives up")


class SysExit(Hostile):
    def attack(self, ctx, env):
        sys.exit(0)


class OsExit(Hostile):
    def attack(self, ctx, env):
        os._exit(0)


class Interrupt(Hostile):
    def attack(self, ctx, env):
        raise KeyboardInterrupt


class StackOverflow(Hostile):
    """C recursion past the C stack (json's C encoder; repr would take seconds first,
    as it scans its list of objects being printed at every level)."""

    def attack(self, ctx, env):
        import json

        sys.setrecursionlimit(10**7)
        deep = []
        for _ in range(10**6):
            deep = [deep]
        json.dumps(deep)


class HugeAllocation(Hostile):
    def attack(self, ctx, env):
        hoard = bytearray(1 << 40)


class KillServer(Hostile):
    def attack(self, ctx, env):
        os.kill(os.getppid(), 9)
        os._exit(1)


class JudgeTamper(Hostile):
    """Makes every verdict a pass, in whatever process it is created and runs in."""

    def __init__(self) -> None:
        super().__init__()
        self.tamper()

    @staticmethod
    def tamper():
        import pytest_altpatch.judge as judge

        passing = judge.Verdict(())
        judge.judge = lambda case, outcome, *args, **kwargs: passing

    def attack(self, ctx, env):
        self.tamper()
'''

#: attack class -> the code each item it runs fails with.
EXPECTED_CODES: dict[str, str] = {
    "Loop": "PATCHER_TIMEOUT",
    "Deadlock": "PATCHER_TIMEOUT",
    "Raise": "PATCHER_RAISED",
    "SysExit": "PATCHER_EXITED",
    "OsExit": "PATCHER_EXITED",
    "Interrupt": "PATCHER_EXITED",
    # Python 3.13 guards C recursion itself (RecursionError); before, the child segfaults.
    "StackOverflow": "PATCHER_RAISED" if sys.version_info >= (3, 13) else "PATCHER_DIED",
    "HugeAllocation": "PATCHER_RAISED",
    "KillServer": "PATCHER_DIED",
}

#: Attacks only the kill can stop; the others end on their own, whatever the timeout.
NEED_THE_KILL = frozenset({"Loop", "Deadlock"})
