"""The compiler flags a native patcher is built with (``altpatch native cflags``)."""

from __future__ import annotations

from typing import Final

from pytest_altpatch.native.manifest import INCLUDE_DIR, load_shim

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


__all__ = ["ABI_FLAGS", "cflags"]
