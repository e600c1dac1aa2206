"""Throughput of the image layer: build, ELF write/read, payload load, inspect.

Run: ``.venv/bin/python tests/benchmarks/bench_image.py``.  Not collected by pytest.
The assembler memoises identical inputs, so each build round uses a fresh base.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.image import (
    build_image,
    build_payload,
    default_layout,
    inspect_elf,
    load_relocatable,
    packed_placement,
    read_image,
    write_image,
    write_relocatable,
)
from pytest_altpatch.image.layout import rebased
from pytest_altpatch.resources import bundled_corpus


def best_of(label: str, rounds: int, work: Callable[[int], object]) -> None:
    """Print the best per-call time over three batches of ``rounds`` calls."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for index in range(rounds):
            work(index)
        best = min(best, (time.perf_counter() - start) / rounds)
    print(f"{label:<40} {best * 1e3:8.2f} ms")


def main() -> None:
    catalog = load_catalog()
    path = Path(bundled_corpus()) / "cases" / "payload" / "late-alternatives-apply-revert.yaml"
    case = load_case(path, catalog)
    dialect = case.dialects[0]
    numbering = catalog.numberings[dialect]
    layout = default_layout(dialect)
    counter = iter(range(10**6))

    def build(_: int) -> object:
        fresh = rebased(layout, layout.text_base + 0x1000 * next(counter))
        return build_image(case, dialect=dialect, numbering=numbering, layout=fresh)

    image = build_image(case, dialect=dialect, numbering=numbering)
    elf = write_image(image)
    obj = write_relocatable(build_payload(case.payloads[0], image))
    base = image.layout.text_base + 0x100_0000
    best_of(f"build_image ({case.id})", 10, build)
    best_of("write_image", 50, lambda _: write_image(image))
    best_of("read_image", 50, lambda _: read_image(elf))
    best_of("load_relocatable (payload)", 50, lambda _: load_relocatable(
        obj, base_symbols=image.symbols, placement=packed_placement(base)))
    best_of("inspect_elf (image)", 20, lambda _: inspect_elf(elf))


if __name__ == "__main__":
    main()
