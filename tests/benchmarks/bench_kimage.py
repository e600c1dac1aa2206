"""Benchmark and table of the shipped Xen 4.17 image in the machine.

Run: ``python tests/benchmarks/bench_kimage.py``.  Needs Debian's
xen-hypervisor-4.17-arm64-dbg (cached, or fetched with apt-get download).  Prints:

* ``altpatch image run`` for two capability sets and two platforms: entries applied,
  sites and words changed, branch re-targets, findings, host seconds per run;
* the differential oracle's table: platform x entries applied x words changed x
  differences against the reference xen-4.17 dialect.
"""

from __future__ import annotations

import time

from pytest_altpatch.cases.catalog import load_catalog
from pytest_altpatch.kernel.debian import image_for_profile
from pytest_altpatch.kernel.layout import read_kernel_image
from pytest_altpatch.kernel.oracle import compare_with_reference
from pytest_altpatch.kernel.profile import load_profile
from pytest_altpatch.kernel.runner import RunRequest, platform_cpus, resolved_caps, run_image

RUNS = (
    ("--caps 6,9,11,16 (4 CPUs)", None, "6,9,11,16", 4),
    ("--caps 0..17 (4 CPUs)", None, ",".join(map(str, range(18))), 4),
    ("--platform 2x A57 r0p1 + 2x A53 r0p2", "2x cortex-a57/r0p1, 2x cortex-a53/r0p2", None,
     None),
    ("--platform 4x Neoverse-N1 r3p0", "4x neoverse-n1/r3p0", None, None),
)
ORACLE = (
    "cortex-a57/r0p1, cortex-a53/r0p2",
    "2x cortex-a72/r0p0",
    "2x neoverse-n1/r3p0",
    "2x thunderx2/r1p1",
    "2x kryo/r0p0",
    "cortex-a75/r0p0, cortex-a55/r1p0",
    "2x cortex-a77/r0p1",
)


def main() -> None:
    """Print both tables."""
    catalog = load_catalog()
    profile = load_profile("xen-4.17-debian")
    image = read_kernel_image(image_for_profile(profile.package))
    print(f"{'run':<40} {'caps':<22} {'applied':>7} {'sites':>5} {'words':>5} "
          f"{'retgt':>5} {'find':>4} {'secs':>6}")
    for label, platform, caps_text, count in RUNS:
        cpus = platform_cpus(catalog, platform, count)
        caps = (frozenset(int(c) for c in caps_text.split(",")) if caps_text
                else resolved_caps(catalog, profile, cpus))
        started = time.perf_counter()
        run = run_image(image, profile, catalog, RunRequest(cpus, caps))
        seconds = time.perf_counter() - started
        shown = ",".join(map(str, sorted(caps))) if len(caps) < 8 else f"{len(caps)} caps"
        print(f"{label:<40} {shown:<22} {run.applied:>4}/{len(run.entries):<3}"
              f"{run.sites_changed:>5} {run.words_changed:>5} {run.retargets:>5} "
              f"{len(run.findings):>4} {seconds:>6.2f}")
    print()
    print(f"{'platform':<36} {'caps':<16} {'applied':>7} {'words':>5} {'diffs':>5} "
          f"{'secs':>6}")
    for platform in ORACLE:
        cpus = platform_cpus(catalog, platform, None)
        caps = resolved_caps(catalog, profile, cpus)
        started = time.perf_counter()
        result = compare_with_reference(image, profile, catalog, RunRequest(cpus, caps))
        seconds = time.perf_counter() - started
        print(f"{platform:<36} {','.join(map(str, sorted(caps))) or '-':<16} "
              f"{result.run.applied:>7} {result.run.words_changed:>5} "
              f"{len(result.differences):>5} {seconds:>6.2f}")


if __name__ == "__main__":
    main()
