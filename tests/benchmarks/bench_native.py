"""Native patchers side by side: a corpus run with the C example, the A64 example, real
Xen 4.17 (Debian's alternative.c + insn.c through the shim) and the Python reference.

Run: ``python tests/benchmarks/bench_native.py [SCHEDULES]`` (default
``rr:100,random:1-3,adversarial``).  Prints, per patcher, the judged items, how many
passed, and host seconds (one run each; the machine is shared, so compare in one run).
Patchers whose tools or sources are missing are reported as skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.native.cflags import cflags
from pytest_altpatch.native.patcher import load_native_patcher
from pytest_altpatch.native.xen_source import (
    build_xen_patcher,
    extract_sources,
    fetch_orig_tarball,
)
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.patchers.registry import resolve_patcher
from pytest_altpatch.pipeline import run_corpus

ROOT = Path(__file__).resolve().parents[2]


def _c_example(work: Path, xen: bool = False) -> Patcher:
    manifest = "manifest-xen.yaml" if xen else "manifest.yaml"
    for name in (manifest, "patcher.c"):
        shutil.copy(ROOT / "conformance" / "native" / "c" / name, work / name)
    extra = ["-DALTPATCH_XEN", "-o", "patcher-xen.o"] if xen else []
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-g", *cflags(), "-c", "patcher.c",
                    *extra], cwd=work, check=True)
    return load_native_patcher(work / manifest)


def _line(label: str, patcher: Patcher, schedules: str) -> str:
    start = time.perf_counter()
    results, skipped = run_corpus(patcher, schedules)
    seconds = time.perf_counter() - start
    passed = sum(r.passed for r in results)
    return (f"{label:<28} {patcher.dialect:<10} {len(results):>5} items {passed:>5} passed "
            f"{skipped:>3} n/a {seconds:8.2f} s  {1000 * seconds / max(len(results), 1):7.1f} "
            "ms/item")


def main() -> None:
    """Print one line per patcher."""
    schedules = sys.argv[1] if len(sys.argv) > 1 else "rr:100,random:1-3,adversarial"
    print(f"schedules: {schedules}")
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        rows: list[tuple[str, Patcher | str]] = [
            ("reference:xen-4.17", resolve_patcher("reference:xen-4.17")),
            ("reference:linux-4.9", resolve_patcher("reference:linux-4.9")),
            ("native A64 example", load_native_patcher(
                ROOT / "conformance" / "native" / "a64" / "manifest.yaml")),
        ]
        if shutil.which("aarch64-linux-gnu-gcc") is None:
            rows += [("native C example", "no aarch64-linux-gnu-gcc"),
                     ("native real Xen 4.17", "no aarch64-linux-gnu-gcc")]
        else:
            (work / "c").mkdir()
            rows.append(("native C example", _c_example(work / "c")))
            rows.append(("native C example (Xen)", _c_example(work / "c", xen=True)))
            try:
                sources = extract_sources(fetch_orig_tarball())
                rows.append(("native real Xen 4.17", load_native_patcher(
                    build_xen_patcher(sources, work / "xen"))))
            except AltpatchError as exc:
                rows.append(("native real Xen 4.17", exc.message))
        for label, patcher in rows:
            if isinstance(patcher, str):
                print(f"{label:<28} skipped: {patcher}")
            else:
                print(_line(label, patcher, schedules), flush=True)


if __name__ == "__main__":
    main()
