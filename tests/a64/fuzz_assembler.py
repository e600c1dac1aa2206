"""Feed many generated and mutated source lines to ``assemble`` in this one process.

Run as a script (``python fuzz_assembler.py --seed S --count N``) by the test suite:
if keystone aborted on any line, this process would die and the test would see it.
Prints one JSON summary on stdout; exits 0 if every line either assembled or raised a
coded, located ``AsmError``, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

# tests/ is not a package; its a64/ is, as pytest imports it (a64.programs).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a64.programs import generate_program
from pytest_altpatch.a64 import assemble
from pytest_altpatch.errors import ERROR_CODES, AsmError

# Fragments chosen to hit every screening rule and every known keystone trap.
TOKENS = [
    ":lo12:", "#:lo12:", ":got:", ":pg_hi21:", "#", "[", "]", "{", "}", ",", "!", "=",
    "0x", "1f", "1b", ".", ";", "/*", "*/", "//", "(", ")", "<<", ">>", "-", "+", "~",
    "99999999999999999999999999", "0xffffffffffffffff", "1<<127", "-0x8000000000000001",
    "x31", "sp", "wzr", "v0.16b", "{v0.16b-v3.16b}", "lsl #64", "uxtw #5", "\t", "é",
    "\x00", " ", "far", "undefined_sym", "L0", ".inst", ".word", "ic ivau", "tlbi vae1is",
    "#1.5", "#1e400", "'a'", '"s"', "s3_0_c16_c0_0", "id_aa64mmfr2_el1", "c16", "#-1",
]
# Lines that abort keystone 0.9.2 or make it emit nothing, in their raw form.
KNOWN_TRAPS = [
    "add x0, x1, :lo12:far", "ldr x0, [x1, :lo12:far]", "ldr x0, [x1, #:lo12:far]",
    "tbz x0, #3, 0x100000", "tbz x0, #3, far", "tbnz w1, #31, .+0x8000",
    "adrp x0, far", "adr x0, #0x400000", ".inst 0xd503201f", "ic ivau", "tlbi vae1is",
    "b .+0x8000000", "bl .-0x8000004", "cbz x0, .+0x100000", "ldr x0, .+0x100000",
    "sub x0, x1, :lo12:far", "mov x0, :lo12:far", "movz x0, #:abs_g0:far", "ldr x0, =far",
    "casal x0, x1, [x2]", "ldaddal w0, w1, [x2, #8]", "stadd x0, [x1]", "bti jj",
]


def mutate(line: str, rng: random.Random) -> str:
    """Apply one to three random edits: insert, delete, replace, splice a token."""
    for _ in range(rng.randint(1, 3)):
        position = rng.randint(0, len(line))
        kind = rng.randrange(5)
        if kind == 0:
            line = line[:position] + rng.choice(TOKENS) + line[position:]
        elif kind == 1 and line:
            line = line[:position] + line[position + 1:]
        elif kind == 2 and line:
            line = line[:position] + chr(rng.randrange(32, 127)) + line[position + 1:]
        elif kind == 3:
            cut = rng.randint(0, len(line))
            line = line[:cut] + line[position:]
        else:
            words = line.split()
            if words:
                words[rng.randrange(len(words))] = rng.choice(TOKENS)
            line = " ".join(words)
    return line


def lines(seed: int, count: int) -> list[str]:
    """``count`` lines: known traps, valid generated statements and their mutations."""
    rng = random.Random(seed)
    valid: list[str] = []
    while len(valid) < 2000:
        program = generate_program(rng, 30)
        valid += [line.split(": ")[-1] for line in program.source.splitlines()]
    out = list(KNOWN_TRAPS)
    while len(out) < count:
        pick = rng.random()
        if pick < 0.25:
            out.append(rng.choice(valid))
        elif pick < 0.95:
            out.append(mutate(rng.choice(valid), rng))
        else:
            out.append("".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 8))))
    return out


def check(line: str, index: int) -> tuple[str, str | None]:
    """Assemble one line inside a small program; return (outcome, problem or None)."""
    base = 0x400FF8 + 4 * (index % 4)
    source = "L0: nop\n" + line + "\nL1: nop\n"
    try:
        assemble(source, base, {"far": 0x12345678})
    except AsmError as error:
        code = error.code
        if code not in ERROR_CODES or not code.startswith("ASM_"):
            return code, f"unexpected code {code} for {line!r}"
        where = error.location
        if where.line is None or where.column is None or where.column < 1:
            return code, f"unlocated error {error} for {line!r}"
        return code, None
    except Exception as error:  # the point of the exercise: anything else is a bug
        return "CRASH", f"{type(error).__name__}: {error} for {line!r}"
    return "ok", None


def main() -> int:
    """Run the fuzz campaign and print its summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--count", type=int, default=12000)
    args = parser.parse_args()
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    corpus = lines(args.seed, args.count)
    for index, line in enumerate(corpus):
        outcome, problem = check(line, index)
        outcomes[outcome] += 1
        if problem is not None:
            problems.append(problem)
    print(json.dumps({"seed": args.seed, "lines": len(corpus), "outcomes": dict(outcomes),
                      "problems": problems[:20]}, sort_keys=True))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
