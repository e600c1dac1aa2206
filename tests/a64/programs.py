"""Deterministic generators of A64 source for differential, round-trip and fuzz tests.

Everything is driven by a ``random.Random`` passed in, so a seed reproduces a program.
Programs use named labels (``L0``..), numeric local labels (``1:``/``1f``/``1b``) and
two external symbols: ``far`` (an ADRP/``:lo12:`` target gigabytes away) and ``farq``
(the same, 8-byte aligned, for 64-bit ``:lo12:`` loads).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CONDITIONS = ("eq", "ne", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt",
              "le")
# Registers the generator uses (x18 and friends are fine for an assembler).
_X = [f"x{n}" for n in range(31)]
_W = [f"w{n}" for n in range(31)]


@dataclass(frozen=True)
class Program:
    """A generated source text, its base address and the external symbols it uses."""

    source: str
    base: int
    symbols: dict[str, int]


def _pcrel_statement(rng: random.Random, target: str) -> str:
    x, x2 = rng.choice(_X), rng.choice(_X)
    w = rng.choice(_W)
    forms = [
        f"b {target}", f"bl {target}", f"b.{rng.choice(CONDITIONS)} {target}",
        f"bc.{rng.choice(CONDITIONS)} {target}",
        f"cbz {x}, {target}", f"cbnz {w}, {target}",
        f"tbz {x}, #{rng.randrange(64)}, {target}", f"tbnz {w}, #{rng.randrange(32)}, {target}",
        f"adr {x}, {target}", f"adrp {x}, {target}",
        f"ldr {x}, {target}", f"ldr {w}, {target}", f"ldrsw {x2}, {target}",
        f"ldr {rng.choice('sdq')}{rng.randrange(32)}, {target}",
        f"prfm {rng.choice(['pldl1keep', 'pstl2strm', 'plil3keep'])}, {target}",
    ]
    return rng.choice(forms)


def _plain_statement(rng: random.Random) -> str:
    x1, x2, x3 = (rng.choice(_X) for _ in range(3))
    w1, w2, w3 = (rng.choice(_W) for _ in range(3))
    even = 2 * rng.randrange(15)
    even2 = 2 * rng.randrange(15)
    forms = [
        f"add {x1}, {x2}, #{rng.randrange(4096)}",
        f"sub {w1}, {w2}, #{rng.randrange(4096)}",
        f"mov {x1}, #{rng.randrange(65536)}",
        f"movk {x1}, #{rng.randrange(65536)}, lsl #{rng.choice([0, 16, 32, 48])}",
        f"ldr {x1}, [{x2}, #{8 * rng.randrange(4096)}]",
        f"str {w1}, [{x2}, #{4 * rng.randrange(64)}]",
        "stp x29, x30, [sp, #-16]!",
        "ldp x29, x30, [sp], #16",
        f"eor {w1}, {w2}, {w3}",
        f"lsl {x1}, {x2}, #{rng.randrange(1, 64)}",
        f"csel {x1}, {x2}, {x3}, {rng.choice(CONDITIONS)}",
        f"ldxr {x1}, [{x2}]",
        f"mrs {x1}, {rng.choice(['ctr_el0', 'midr_el1', 'mpidr_el1', 'id_aa64isar0_el1'])}",
        f"dsb {rng.choice(['ish', 'sy', 'ishst'])}", "isb", "nop", "ret",
        f"dc {rng.choice(['cvau', 'civac', 'cvac'])}, {x1}", f"ic ivau, {x1}", "ic iallu",
        f"svc #{rng.randrange(65536)}", f"hvc #{rng.randrange(65536)}",
        f"brk #{rng.randrange(65536)}",
        # keystone cannot encode these; ours must.
        f"ld{rng.choice(['add', 'clr', 'eor', 'set', 'smax', 'umin'])}"
        f"{rng.choice(['', 'a', 'l', 'al'])} {x1}, {x2}, [{x3}]",
        f"st{rng.choice(['add', 'set', 'umax'])}{rng.choice(['', 'l'])}"
        f"{rng.choice(['b', 'h', ''])} {w1}, [{x2}]",
        f"swp{rng.choice(['', 'a', 'l', 'al'])}{rng.choice(['b', 'h', ''])} {w1}, {w2}, [sp]",
        f"cas{rng.choice(['', 'a', 'l', 'al'])} {x1}, {x2}, [{x3}]",
        f"casp{rng.choice(['', 'a', 'l', 'al'])} x{even}, x{even + 1}, x{even2}, "
        f"x{even2 + 1}, [{x3}]",
        f"bti {rng.choice(['c', 'j', 'jc'])}", "bti", "paciasp", "autiasp", "pacibsp",
        "autibsp", "xpaclri", "esb", "csdb", "sb", "ssbb", "pssbb", "dgh",
        f"udf #{rng.randrange(65536)}",
    ]
    return rng.choice(forms)


def generate_program(rng: random.Random, length: int, *, data: bool = True,
                     lo12: bool = True) -> Program:
    """A program of ``length`` statements at a base close to a page boundary."""
    page = rng.choice([0x400000, 0x10000000, 0x7FFFF000, 0xFFFF0000])
    base = page - 4 * rng.randrange(0, 8) + rng.choice([0, 0x1000 - 16])
    symbols = {"far": 0x12345678 + 0x40000000 * rng.randrange(3),
               "farq": 0x0ABC0DE8 + 0x20000000 * rng.randrange(3)}
    label_at = sorted(rng.sample(range(length), k=min(length, 5)))
    local_at = sorted(rng.sample(range(length), k=min(length, 3)))
    lines: list[str] = []
    for index in range(length):
        prefix = ""
        if index in label_at:
            prefix += f"L{label_at.index(index)}: "
        if index in local_at:
            prefix += "1: "
        choice = rng.random()
        targets = [f"L{n}" for n in range(len(label_at))]
        targets += [f"L{n}+4" for n in range(len(label_at)) if label_at[n] < length - 1]
        if any(pos <= index for pos in local_at):
            targets.append("1b")
        if any(pos > index for pos in local_at):
            targets.append("1f")
        targets.append(".")
        if choice < 0.45:
            statement = _pcrel_statement(rng, rng.choice(targets))
        elif choice < 0.5:
            statement = f"adrp {rng.choice(_X)}, far"
        elif choice < 0.55 and lo12:
            statement = rng.choice([
                f"add {rng.choice(_X)}, {rng.choice(_X)}, :lo12:far",
                f"ldr {rng.choice(_X)}, [{rng.choice(_X)}, #:lo12:farq]",
                f"str {rng.choice(_W)}, [{rng.choice(_X)}, :lo12:farq]",
                f"ldrb {rng.choice(_W)}, [{rng.choice(_X)}, :lo12:far]",
            ])
        elif choice < 0.6 and data:
            statement = rng.choice([
                f".word {rng.randrange(1 << 32):#x}", f".inst {rng.randrange(1 << 32):#x}",
                f".quad {rng.choice(targets[:1] or ['0'])}",
                f".hword {rng.randrange(1 << 16)}, {rng.randrange(1 << 16)}",
            ])
        else:
            statement = _plain_statement(rng)
        lines.append(prefix + statement)
    return Program("\n".join(lines) + "\n", base, symbols)


__all__ = ["CONDITIONS", "Program", "generate_program"]
