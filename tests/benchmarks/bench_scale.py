"""Growth of build, patcher, probes and judge over sites and over CPUs (a plain script).

Run: ``python tests/benchmarks/bench_scale.py`` (the default sweep), or
``--sites 100,1000,10000 --cpus 8`` / ``--sites 1000 --cpus 2,8,32,128``.

Each point is one case from ``tests/scenarios/sitegen.py`` (N sites on M CPUs, half
Cortex-A57, half Cortex-A53, every check on, ``rr:100``; branch sites use B, CBZ and
B.cond, since TBZ cannot reach past 1,000 sites), run in a fresh child process
so its peak RSS is its own.  Every figure is printed with its yardstick (the sweep's
first point) and the ratio; the growth exponent between two points is
``log(t2 / t1) / log(n2 / n1)`` (1.0 is linear, 2.0 quadratic).  The machine is shared,
so compare ratios from one run, not absolute times between runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "scenarios"))

PHASES = ("build", "machine", "patcher", "probes", "judge")


def platform_of(cpus: int) -> str:
    """A big.LITTLE platform of ``cpus`` CPUs (half A57 r1p0, half A53 r0p4)."""
    big, little = (cpus + 1) // 2, cpus // 2
    groups = [f"\"{big}x cortex-a57/r1p0\""]
    if little:
        groups.append(f"\"{little}x cortex-a53/r0p4\"")
    return "[" + ", ".join(groups) + "]"


def write_case(directory: Path, sites: int, cpus: int) -> Path:
    """Write the generated case file and return its path."""
    from sitegen import FAR_FORMS, case_yaml  # noqa: PLC0415

    path = directory / f"sites-{sites}-cpus-{cpus}.yaml"
    # No TBZ sites (+-32 KiB), so every point of a sweep to 10,000 sites has one mix.
    path.write_text(case_yaml(sites, platform_of(cpus), dialects="[linux-6.1]",
                              forms=FAR_FORMS))
    return path


def measure_one(sites: int, cpus: int) -> dict[str, float]:
    """Time each phase of one judged boot run in this process (wraps the runner's steps).

    The process runs this one point and exits, as a worker child runs its one item."""
    from pytest_altpatch import collector  # noqa: PLC0415
    from pytest_altpatch.cases import load_case, load_catalog  # noqa: PLC0415
    from pytest_altpatch.judge import judge  # noqa: PLC0415
    from pytest_altpatch.patchers.reference import ReferencePatcher  # noqa: PLC0415
    from pytest_altpatch.scenarios import runner, session  # noqa: PLC0415

    collector.one_run_process()
    spent = dict.fromkeys(PHASES, 0.0)

    def timed(name: str, owner: object, attribute: str) -> None:
        original = getattr(owner, attribute)

        def wrapper(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        setattr(owner, attribute, wrapper)

    for name, owner, attribute in (("build", runner, "build_for"),
                                   ("machine", session, "_make_machine"),
                                   ("patcher", session.Session, "run_patcher"),
                                   ("probes", session.Session, "run_probes")):
        timed(name, owner, attribute)
    start = time.perf_counter()
    catalog = load_catalog()
    with tempfile.TemporaryDirectory() as tmp:
        case = load_case(write_case(Path(tmp), sites, cpus), catalog)
    spent["load"] = time.perf_counter() - start
    start = time.perf_counter()
    outcome = runner.run_case(case, catalog, mode="boot",
                              patcher=ReferencePatcher("linux-6.1"), schedule="rr:100")
    spent["run"] = time.perf_counter() - start
    start = time.perf_counter()
    verdict = judge(case, outcome)
    spent["judge"] = time.perf_counter() - start
    if not verdict.passed:
        raise SystemExit(f"{sites} sites on {cpus} CPUs did not pass: "
                         f"{[d.message for d in verdict.discrepancies][:3]}")
    spent["total"] = spent["load"] + spent["run"] + spent["judge"]
    spent["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return spent


def run_point(sites: int, cpus: int, timeout: float) -> dict[str, float] | None:
    """One point in a fresh child process; None when it exceeds ``timeout`` seconds."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--one", f"{sites},{cpus}"],
            capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise SystemExit(done.stderr or done.stdout)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    """Growth exponent between (n1, t1) and (n2, t2)."""
    return math.log(max(t2, 1e-6) / max(t1, 1e-6)) / math.log(n2 / n1)


def sweep(label: str, points: list[tuple[int, int]], axis: int, timeout: float) -> None:
    """Run ``points`` and print each phase with the first point as yardstick."""
    print(f"\n== over {label}: " + ", ".join(f"{s} sites/{c} CPUs" for s, c in points))
    results: list[tuple[int, dict[str, float]]] = []
    for point in points:
        figures = run_point(*point, timeout=timeout)
        size = point[axis]
        if figures is None:
            print(f"{point[0]:>6} sites {point[1]:>4} CPUs: did not finish in {timeout:.0f} s")
            break
        results.append((size, figures))
        base = results[0][1]
        cells = " ".join(
            f"{name} {figures[name]:7.3f}s ({figures[name] / max(base[name], 1e-6):6.1f}x)"
            for name in (*PHASES, "total"))
        print(f"{point[0]:>6} sites {point[1]:>4} CPUs: {cells} rss {figures['rss_mib']:.0f} MiB")
    if len(results) < 2:
        return
    print(f"growth exponents over {label} (per step, then first to last):")
    for name in (*PHASES, "total"):
        steps = [exponent(a[1][name], b[1][name], a[0], b[0])
                 for a, b in itertools.pairwise(results)]
        whole = exponent(results[0][1][name], results[-1][1][name], results[0][0], results[-1][0])
        print(f"  {name:8s} " + " ".join(f"{e:5.2f}" for e in steps) + f"   overall {whole:5.2f}")


def main() -> None:
    """Parse the arguments and run the sweeps (or one point with ``--one``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help="SITES,CPUS: measure one point, print JSON")
    parser.add_argument("--sites", default="100,300,1000,3000,10000",
                        help="site counts of the sweep over sites (on --base-cpus CPUs)")
    parser.add_argument("--cpus", default="2,8,32,128,256",
                        help="CPU counts of the sweep over CPUs (with --base-sites sites)")
    parser.add_argument("--base-cpus", type=int, default=8)
    parser.add_argument("--base-sites", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds before a point counts as not finished")
    args = parser.parse_args()
    if args.one:
        sites, cpus = (int(part) for part in args.one.split(","))
        print(json.dumps(measure_one(sites, cpus)))
        return
    site_counts = [int(n) for n in args.sites.split(",") if n]
    cpu_counts = [int(n) for n in args.cpus.split(",") if n]
    if len(site_counts) > 0:
        sweep("sites", [(n, args.base_cpus) for n in site_counts], 0, args.timeout)
    if len(cpu_counts) > 0:
        sweep("CPUs", [(args.base_sites, m) for m in cpu_counts], 1, args.timeout)


if __name__ == "__main__":
    main()
