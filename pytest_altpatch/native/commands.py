"""``altpatch native ...``: compiler flags for native patchers.

``altpatch native cflags [--shim NAME]`` prints the flags a build line needs, the way
``pkg-config --cflags`` does::

    aarch64-linux-gnu-gcc $(altpatch native cflags --shim xen-4.17) -c alternative.c
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any, Final, TextIO

from pytest_altpatch.native.manifest import INCLUDE_DIR, known_shims, load_shim

#: What the ABI needs of the code: no libc, no FP/SIMD registers (the machine serves no
#: FP state), absolute small-model addressing the loader relocates (no PIC/GOT), and
#: no unwind tables or stack protector (nothing provides them).
ABI_FLAGS: Final = (
    "-ffreestanding", "-fno-builtin", "-fno-pic", "-fno-pie", "-mgeneral-regs-only",
    "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
    "-fno-common", "-mcmodel=small",
)


def cflags(shim: str | None = None) -> tuple[str, ...]:
    """The compiler flags for a native patcher (with ``shim``'s include directory)."""
    includes = [f"-I{INCLUDE_DIR}"]
    if shim is not None:
        includes.insert(0, f"-I{load_shim(shim).include}")
    return (*ABI_FLAGS, *includes)


def _cflags_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    out.write(" ".join(shlex.quote(flag) for flag in cflags(args.shim)) + "\n")
    return 0


def register(subparsers: Any) -> None:
    """Add ``native cflags``."""
    native = subparsers.add_parser(
        "native", help="native patchers (ABI v1)",
        description="Native patcher helpers (conformance/native-abi.md).")
    commands = native.add_subparsers(dest="native_command", metavar="COMMAND")
    flags = commands.add_parser("cflags", help="print compiler flags for a native patcher")
    flags.add_argument("--shim", default=None, choices=known_shims() or None,
                       help="also the include directory of this shim header set")
    flags.set_defaults(run=_cflags_command)


__all__ = ["ABI_FLAGS", "cflags", "register"]
