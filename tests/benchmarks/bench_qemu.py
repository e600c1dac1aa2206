"""The 200-site, 4-CPU boot against QEMU doing the same job (a plain script).

Run: ``python tests/benchmarks/bench_qemu.py [--sites 200] [--cpus 4] [--repeat 3]``.
Skips (exit 0, with the reason) when ``qemu-system-aarch64``, ``aarch64-linux-gnu-as``
or ``aarch64-linux-gnu-ld`` is missing.

The yardstick is a bare-metal program this script generates, assembles and runs under
``qemu-system-aarch64 -M virt -smp 4``: CPU0 brings up the others with PSCI CPU_ON,
patches every site in place (store, DC CVAU, DSB ISH, IC IVAU, DSB ISH; one ISB at the
end), releases the others, and every CPU calls every site's function and checks x0;
CPU0 prints PASS (or FAIL) on the PL011 and powers off with PSCI SYSTEM_OFF.  It
checks nothing about the maintenance itself.  Against it, in the same run:

* ``altpatch run`` on the ``tests/scenarios/sitegen.py`` case with the same sites and
  CPUs, as a whole process (interpreter, imports, catalog, build, boot, probes, judge);
* the same case in this process (build, boot, patch, probes, judge; imports warm).

Each altpatch figure is taken twice: **cold**, with an empty user cache (the image is
built, the documents parsed and validated), and **kept**, with the cache a previous
run left (the image and documents read back; ``pytest_altpatch.kept``).  QEMU's
figure never includes assembling and linking its program, so "kept" is the like for
like comparison, and "cold" the first run after an edit of the case.

Figures are best of ``--repeat``; each is printed with QEMU's time and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "scenarios"))

TOOLS = ("qemu-system-aarch64", "aarch64-linux-gnu-as", "aarch64-linux-gnu-ld")
UART = 0x0900_0000
PSCI_CPU_ON = 0xC400_0003
PSCI_SYSTEM_OFF = 0x8400_0008


def bare_metal_source(sites: int, cpus: int) -> str:
    """GNU as source of the QEMU yardstick (see the module docstring)."""
    out = [".text", ".global _start", "_start:",
           "    mrs x0, mpidr_el1", "    and x0, x0, #0xff", "    cbnz x0, secondary"]
    # CPU_ON for CPUs 1..n-1 (x1 = MPIDR, x2 = entry, x3 = context); errors ignored.
    for cpu in range(1, cpus):
        out += [f"    ldr x0, ={PSCI_CPU_ON:#x}", f"    mov x1, #{cpu}",
                "    ldr x2, =secondary", "    mov x3, #0", "    hvc #0"]
    # Patch every site in place with the full maintenance sequence per site.
    for i in range(sites):
        out += [f"    ldr w1, repl_{i}", f"    adr x2, site_{i}", "    str w1, [x2]",
                "    dc cvau, x2", "    dsb ish", "    ic ivau, x2", "    dsb ish"]
    out += ["    isb", "    adr x4, release", "    mov w5, #1", "    str w5, [x4]",
            "    dsb ish", "    mov x19, #0", "    bl probes"]
    # Wait until every CPU has reported.
    out += ["wait_all:", "    adr x4, done", "    mov x6, #0"]
    for cpu in range(cpus):
        out += [f"    ldr w7, [x4, #{4 * cpu}]", "    add x6, x6, x7"]
    out += [f"    cmp x6, #{cpus}", "    b.ne wait_all",
            "    adr x4, failed", "    ldr w5, [x4]", "    adr x1, pass_text",
            "    cbz w5, 1f", "    adr x1, fail_text", "1:", f"    ldr x2, ={UART:#x}",
            "2:", "    ldrb w3, [x1], #1", "    cbz w3, 3f", "    strb w3, [x2]", "    b 2b",
            "3:", f"    ldr x0, ={PSCI_SYSTEM_OFF:#x}", "    hvc #0", "4:", "    b 4b"]
    out += ["secondary:", "    mrs x19, mpidr_el1", "    and x19, x19, #0xff",
            "    adr x4, release", "5:", "    ldr w5, [x4]", "    cbz w5, 5b", "    isb",
            "    bl probes", "6:", "    wfe", "    b 6b"]
    # probes: call every function, check x0, then mark done[x19]; x20 keeps LR.
    out += ["probes:", "    mov x20, x30"]
    for i in range(sites):
        out += [f"    bl fn_{i}", f"    cmp x0, #{i + 2}", "    b.ne probe_failed"]
    out += ["probes_done:", "    adr x4, done", "    mov w5, #1",
            "    str w5, [x4, x19, lsl #2]", "    dsb ish", "    ret x20",
            "probe_failed:", "    adr x4, failed", "    mov w5, #1", "    str w5, [x4]",
            "    b probes_done"]
    for i in range(sites):
        out += [f"fn_{i}:", f"    mov x0, #{i}", f"site_{i}:", "    add x0, x0, #1", "    ret"]
    out += [".balign 8", ".ltorg"]
    out += [f"repl_{i}: add x0, x0, #2" for i in range(sites)]
    out += [".balign 8", "release: .word 0", "failed: .word 0",
            f"done: .fill {cpus}, 4, 0",
            "pass_text: .asciz \"PASS\\n\"", "fail_text: .asciz \"FAIL\\n\""]
    return "\n".join(out) + "\n"


def build_yardstick(directory: Path, sites: int, cpus: int) -> Path:
    """Assemble and link the yardstick at QEMU virt's RAM base; the ELF's path."""
    source = directory / "yardstick.s"
    source.write_text(bare_metal_source(sites, cpus))
    obj, elf = directory / "yardstick.o", directory / "yardstick.elf"
    subprocess.run(["aarch64-linux-gnu-as", "-o", str(obj), str(source)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", "-Ttext=0x40080000", "-e", "_start", "-o",
                    str(elf), str(obj)], check=True)
    return elf


def qemu_once(elf: Path, cpus: int) -> float:
    """Whole-process seconds of one QEMU run (asserting it printed PASS)."""
    start = time.perf_counter()
    done = subprocess.run(
        ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-smp", str(cpus),
         "-m", "128", "-display", "none", "-serial", "stdio", "-monitor", "none",
         "-no-reboot", "-kernel", str(elf)],
        capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - start
    if "PASS" not in done.stdout:
        raise SystemExit(f"QEMU yardstick did not pass: {done.stdout!r} {done.stderr!r}")
    return elapsed


def altpatch_once(case: Path, cache: Path) -> float:
    """Whole-process seconds of one ``altpatch run`` with ``cache`` as the user cache
    (asserting it passed)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), ALTPATCH_CACHE=str(cache))
    env.pop("ALTPATCH_NO_CACHE", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest_altpatch.cli", "run", str(case)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"altpatch run failed: {done.stdout} {done.stderr}")
    return elapsed


def in_process_once(case_path: Path, cache: Path) -> float:
    """Seconds of build + boot + patch + probes + judge in this process (imports warm),
    with ``cache`` as the user cache."""
    from pytest_altpatch.a64 import asm, keystone_backend, syntax  # noqa: PLC0415
    from pytest_altpatch.cases import load_case, load_catalog  # noqa: PLC0415
    from pytest_altpatch.judge import judge  # noqa: PLC0415
    from pytest_altpatch.patchers.reference import ReferencePatcher  # noqa: PLC0415
    from pytest_altpatch.scenarios.runner import run_case  # noqa: PLC0415

    os.environ["ALTPATCH_CACHE"] = str(cache)
    os.environ.pop("ALTPATCH_NO_CACHE", None)
    catalog = load_catalog()
    case = load_case(case_path, catalog)
    # Cold assembler caches, as in a fresh process: no figure from a memo hit.
    for memo in (getattr(asm, "_MEMO", None), getattr(asm, "_POSITION_FREE", None),
                 getattr(getattr(syntax, "_PARSED", None), "entries", None)):
        if memo is not None:
            memo.clear()
    for cached in (getattr(asm, "_assemble_memo", None), keystone_backend._keystone_word):
        if cached is not None:
            cached.cache_clear()
    start = time.perf_counter()
    outcome = run_case(case, catalog, mode="boot", patcher=ReferencePatcher(case.dialects[0]))
    passed = judge(case, outcome).passed
    elapsed = time.perf_counter() - start
    if not passed:
        raise SystemExit("the generated case did not pass in process")
    return elapsed


def main() -> None:
    """Run the three figures and print them against QEMU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--cpus", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed")
        return
    from sitegen import case_yaml  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        elf = build_yardstick(directory, args.sites, args.cpus)
        case = directory / "sites.yaml"
        big, little = (args.cpus + 1) // 2, args.cpus // 2
        platform = f"[\"{big}x cortex-a57/r1p0\"" + (
            f", \"{little}x cortex-a53/r0p4\"]" if little else "]")
        case.write_text(case_yaml(args.sites, platform, dialects="[linux-6.1]"))
        kept = directory / "kept-cache"
        in_process_once(case, kept)  # warm the imports once, and fill the kept cache
        qemu = float("inf")
        best = {figure: float("inf") for figure in ("whole cold", "whole kept",
                                                    "inside cold", "inside kept")}
        for run in range(args.repeat):  # interleaved, so load changes hit all alike
            qemu = min(qemu, qemu_once(elf, args.cpus))
            for where, once in (("whole", altpatch_once), ("inside", in_process_once)):
                cold = directory / f"cold-cache-{where}-{run}"  # empty: nothing kept
                best[f"{where} cold"] = min(best[f"{where} cold"], once(case, cold))
                best[f"{where} kept"] = min(best[f"{where} kept"], once(case, kept))
    print(f"{args.sites} sites on {args.cpus} CPUs, best of {args.repeat}:")
    print(f"  qemu-system-aarch64 whole process (yardstick):  {qemu * 1e3:8.1f} ms")
    rows = (("whole", "altpatch run, whole process", 4), ("inside",
            "in process (build, boot, probes, judge)", 1.5))
    for where, title, goal in rows:
        for state in ("cold", "kept"):
            value = best[f"{where} {state}"]
            print(f"  {title + ', ' + state + ':':<46} {value * 1e3:8.1f} ms  "
                  f"ratio {value / qemu:5.2f}x (goal <= {goal:g}x)")


if __name__ == "__main__":
    main()
