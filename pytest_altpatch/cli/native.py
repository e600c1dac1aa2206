"""``altpatch native ...``: compiler flags for native patchers.

``altpatch native cflags [--shim NAME]`` prints the flags a build line needs, the way
``pkg-config --cflags`` does::

    aarch64-linux-gnu-gcc $(altpatch native cflags --shim xen-4.17) -c alternative.c
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any, TextIO

from pytest_altpatch.resources import known_shims


def _cflags_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from pytest_altpatch.native.cflags import cflags  # noqa: PLC0415

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


__all__ = ["register"]
