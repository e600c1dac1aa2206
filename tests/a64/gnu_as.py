"""Assemble with GNU binutils (as + ld -Ttext) as an independent reference."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

AS = shutil.which("aarch64-linux-gnu-as")
LD = shutil.which("aarch64-linux-gnu-ld")
OBJCOPY = shutil.which("aarch64-linux-gnu-objcopy")
AVAILABLE = AS is not None and LD is not None and OBJCOPY is not None
MISSING_REASON = "GNU binutils for aarch64 (aarch64-linux-gnu-as/ld/objcopy) not installed"


def gnu_assemble(source: str, base: int, symbols: dict[str, int]) -> bytes:
    """The .text bytes GNU as produces for ``source`` linked at ``base``."""
    assert AS is not None and LD is not None and OBJCOPY is not None
    with tempfile.TemporaryDirectory(prefix="a64-gnu-") as tmp:
        work = Path(tmp)
        (work / "t.s").write_text(source)
        subprocess.run([AS, "-march=armv8.8-a", "-o", str(work / "t.o"), str(work / "t.s")],
                       check=True, capture_output=True, text=True)
        defsyms = [f"--defsym={name}={value:#x}" for name, value in sorted(symbols.items())]
        subprocess.run([LD, f"-Ttext={base:#x}", "-e", f"{base:#x}", *defsyms,
                        "-o", str(work / "t.elf"), str(work / "t.o")],
                       check=True, capture_output=True, text=True)
        subprocess.run([OBJCOPY, "-O", "binary", "-j", ".text", str(work / "t.elf"),
                        str(work / "t.bin")], check=True, capture_output=True, text=True)
        return (work / "t.bin").read_bytes()
