"""``altpatch image run`` and ``altpatch image fetch``: a shipped kernel image's own
patcher in the machine.

``run`` prints every table entry (index, site and symbol+offset, capability, applied or
not, the site's words before and after, disassembled), the capabilities on, findings
and a short timeline; ``--json`` gives the same as data.  Exit 0 when the run ended
with every CPU done and no finding, 1 otherwise, 2 for unusable input.  ``fetch``
prints the path of the profile's image, downloading and unpacking it into the cache
when needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pytest_altpatch.errors import SpecError
from pytest_altpatch.resources import available_profiles

EXIT_OK = 0
EXIT_FINDINGS = 1


def parse_caps(text: str, ncaps: int) -> frozenset[int]:
    """``"6,9,11"`` as capability numbers (each below NCAPS); ``""`` is none."""
    caps: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            number = int(part, 0)
        except ValueError:
            raise SpecError("SPEC_BAD_RANGE", f"--caps: {part!r} is not a number") from None
        if not 0 <= number < ncaps:
            raise SpecError("SPEC_BAD_RANGE", f"--caps: {number} is not below NCAPS {ncaps}")
        caps.add(number)
    return frozenset(caps)


def run_image_command(args: argparse.Namespace) -> int:
    """Run a kernel image's boot-time patching under a target profile."""
    from pytest_altpatch.cases import load_catalog  # noqa: PLC0415
    from pytest_altpatch.kernel.layout import read_kernel_image  # noqa: PLC0415
    from pytest_altpatch.kernel.profile import load_profile  # noqa: PLC0415
    from pytest_altpatch.kernel.report import render_text, to_json  # noqa: PLC0415
    from pytest_altpatch.kernel.runner import (  # noqa: PLC0415
        RunRequest,
        platform_cpus,
        resolved_caps,
        run_image,
    )

    profile = load_profile(args.profile)
    catalog = load_catalog()
    image = read_kernel_image(Path(args.image))
    cpus = platform_cpus(catalog, args.platform, args.cpus)
    caps = resolved_caps(catalog, profile, cpus) if args.caps is None \
        else parse_caps(args.caps, profile.ncaps)
    run = run_image(image, profile, catalog,
                    RunRequest(cpus, caps, schedule=args.schedule, seed=args.seed))
    if args.json:
        print(json.dumps(to_json(run), indent=2))
    else:
        print(render_text(run, all_entries=not args.changed_only), end="")
    clean = (run.reason == "stopped" and not run.findings and not run.stray_writes
             and all(state == "done" for state in run.cpu_states))
    return EXIT_OK if clean else EXIT_FINDINGS


def fetch_command(args: argparse.Namespace) -> int:
    """Print the path of a profile's image (downloaded and unpacked into the cache)."""
    from pytest_altpatch.kernel.debian import image_for_profile  # noqa: PLC0415
    from pytest_altpatch.kernel.profile import load_profile  # noqa: PLC0415

    profile = load_profile(args.profile)
    print(image_for_profile(profile.package, download=not args.offline))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``image run`` and ``image fetch`` to the ``altpatch`` command."""
    image = subparsers.add_parser("image", help="run a shipped kernel image's own patcher")
    commands = image.add_subparsers(dest="image_command", metavar="SUBCOMMAND")
    run = commands.add_parser("run", help="run an image's boot-time patching",
                              description=run_image_command.__doc__)
    run.add_argument("image", help="the linked image with symbols (e.g. xen-syms)")
    run.add_argument("--profile", required=True,
                     help="target profile name (" + ", ".join(available_profiles())
                          + ") or file")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--platform", help="CPUs, e.g. '2x cortex-a57/r1p3, 2x "
                                          "cortex-a53/r0p4': caps are resolved for them")
    which.add_argument("--caps", help="capability numbers to turn on, e.g. 6,9,11")
    run.add_argument("--cpus", type=int, default=None,
                     help="number of CPUs (platform cycled; default: the platform's, 4)")
    run.add_argument("--schedule", default="rr:100", help="rr:K, random:SEED or adversarial")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.add_argument("--changed-only", action="store_true",
                     help="list only entries that were applied or changed")
    run.set_defaults(run=run_image_command)
    fetch = commands.add_parser("fetch", help="download a profile's image into the cache",
                                description=fetch_command.__doc__)
    fetch.add_argument("--profile", required=True)
    fetch.add_argument("--offline", action="store_true", help="use the cache only")
    fetch.set_defaults(run=fetch_command)


__all__ = ["fetch_command", "parse_caps", "register", "run_image_command"]
