"""Benchmark the A64 layer: assemble a 50-instruction block cold and warm; disassemble.

Run: ``python tests/benchmarks/bench_a64.py``.  Prints best-of-N timings:

* cold: nothing cached (assembly memo and keystone statement cache cleared);
* new base: the memo misses (different base) but keystone's per-statement cache is warm,
  which is what a corpus run sees for a block reused at another address;
* warm: the memoised path (same source, base and symbols);
* disassembly of 1,000 words.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a64.programs import generate_program

from pytest_altpatch.a64 import asm, assemble, disassemble, keystone_backend


def best_of(runs: int, action: Callable[[], object]) -> float:
    """Fastest wall-clock time of ``runs`` calls, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Print the benchmark numbers."""
    program = generate_program(random.Random(7), 50, data=False)
    source, base, symbols = program.source, program.base, program.symbols

    def cold() -> None:
        asm._assemble_memo.cache_clear()
        keystone_backend._keystone_word.cache_clear()
        assemble(source, base, symbols)

    bases = iter(range(base + 0x1000, base + 0x1000 * 10_000, 0x1000))

    def new_base() -> None:
        assemble(source, next(bases), symbols)

    assemble(source, base, symbols)
    code = assemble(generate_program(random.Random(8), 1000, data=False).source, base,
                    symbols).code
    print(f"assemble 50 instructions, cold:      {best_of(20, cold) * 1e3:8.3f} ms")
    print(f"assemble 50 instructions, new base:  {best_of(20, new_base) * 1e3:8.3f} ms")
    print(f"assemble 50 instructions, memoised:  "
          f"{best_of(20, lambda: assemble(source, base, symbols)) * 1e6:8.3f} us")
    print(f"disassemble 1,000 words:             "
          f"{best_of(10, lambda: disassemble(code, base)) * 1e3:8.3f} ms")
    print(f"disassemble 1,000 words, symbolic:   "
          f"{best_of(10, lambda: disassemble(code, base, symbols)) * 1e3:8.3f} ms")


if __name__ == "__main__":
    main()
