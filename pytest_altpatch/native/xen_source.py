"""Xen 4.17's own alternative.c and arm64/insn.c from Debian, built as a native patcher.

Nothing of Xen is in this repository: the source package is fetched at run time from
Debian's archive (``apt-get source --download-only`` with a sources file in a
temporary directory, so nothing on the system changes), cached under
``~/.cache/pytest-altpatch/``, and only the two files are extracted.  They are
compiled unchanged through the ``xen-4.17`` shim, or with one of :data:`MUTATIONS`
(one-line bugs) applied, to show that the corpus catches them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pytest_altpatch.dialects import Dialect
from pytest_altpatch.errors import NativeError
from pytest_altpatch.native.cflags import cflags

CACHE: Final = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "pytest-altpatch"
DEBIAN_CACHE: Final = CACHE / "debian"
SOURCE_FILES: Final = ("xen/arch/arm/alternative.c", "xen/arch/arm/arm64/insn.c")
SOURCES_LINE: Final = "deb-src http://deb.debian.org/debian bookworm main\n"
COMPILER: Final = "aarch64-linux-gnu-gcc"
#: The dialect Debian bookworm's Xen (4.17) follows, and the shim its sources build with.
DIALECT: Final[Dialect] = "xen-4.17"
SHIM: Final = "xen-4.17"
MANIFEST: Final = """\
name: {dialect}-alternative
version: {version}
dialect: {dialect}
shim: {shim}
objects: [alternative.o, insn.o]
"""


@dataclass(frozen=True)
class Mutation:
    """A one-line change to a source file: ``old`` (exactly once) becomes ``new``."""

    name: str
    file: str
    old: str
    new: str
    summary: str


#: The one-line bugs the corpus must catch.
MUTATIONS: Final = {
    "waiter-no-isb": Mutation(
        "waiter-no-isb", "alternative.c",
        "            cpu_relax();\n        isb();\n", "            cpu_relax();\n",
        "the waiting CPUs leave the rendezvous without isb()"),
    "dcache-short": Mutation(
        "dcache-short", "alternative.c",
        "(sizeof (*origptr) * nr_inst));", "(sizeof (*origptr) * (nr_inst - 1)));",
        "the D-cache clean of each site stops one instruction short (its last line is "
        "never cleaned)"),
    "branch-inside-lt": Mutation(
        "branch-inside-lt", "alternative.c",
        "pc <= (replptr + alt->repl_len)", "pc < (replptr + alt->repl_len)",
        "the branch-inside-the-replacement check uses < where Xen has <="),
}


def cached_orig_tarball() -> Path | None:
    """Debian's ``xen_4.17*.orig.tar.xz`` in the cache, if any (newest name last)."""
    if not DEBIAN_CACHE.is_dir():
        return None
    found = sorted(DEBIAN_CACHE.glob("xen_4.17*.orig.tar.xz"))
    return found[-1] if found else None


def fetch_orig_tarball() -> Path:
    """Download Debian bookworm's xen source package into the cache (apt-get source,
    a private sources list and state in a temporary directory)."""
    cached = cached_orig_tarball()
    if cached is not None:
        return cached
    if shutil.which("apt-get") is None:
        raise NativeError("NATIVE_OBJECT", "apt-get is not available to fetch Xen's source")
    DEBIAN_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="altpatch-apt-") as temp:
        root = Path(temp)
        (root / "sources.list").write_text(SOURCES_LINE)
        for sub in ("lists/partial", "cache/archives/partial"):
            (root / sub).mkdir(parents=True)
        options = [
            "-o", f"Dir::Etc::SourceList={root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}",
            "-o", "APT::Sandbox::User=root", "-o", "Acquire::Retries=2",
        ]
        for command in (["update"], ["source", "--download-only", "xen"]):
            done = subprocess.run(["apt-get", "-q", *options, *command], cwd=DEBIAN_CACHE,
                                  capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise NativeError("NATIVE_OBJECT", f"apt-get {' '.join(command)} failed: "
                                  f"{done.stderr.strip()[-300:]}")
    fetched = cached_orig_tarball()
    if fetched is None:
        raise NativeError("NATIVE_OBJECT", "apt-get source fetched no xen_4.17 tarball "
                          "(is bookworm still at 4.17?)")
    return fetched


def extract_sources(tarball: Path) -> Path:
    """Extract only :data:`SOURCE_FILES` once; the directory holding them."""
    version = tarball.name.removeprefix("xen_").removesuffix(".orig.tar.xz")
    target = CACHE / "extract" / f"xen-{version}"
    if all((target / Path(name).name).is_file() for name in SOURCE_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            for wanted in SOURCE_FILES:
                if member.isfile() and member.name.endswith("/" + wanted):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        (target / Path(wanted).name).write_bytes(handle.read())
    missing = [n for n in SOURCE_FILES if not (target / Path(n).name).is_file()]
    if missing:
        raise NativeError("NATIVE_OBJECT", f"{tarball.name} lacks {', '.join(missing)}")
    return target


def build_xen_patcher(sources: Path, workdir: Path, *, mutation: str | None = None,
                      version: str = "4.17") -> Path:
    """Compile the two files (with ``mutation`` applied) into ``workdir``; the manifest."""
    if shutil.which(COMPILER) is None:
        raise NativeError("NATIVE_OBJECT", f"{COMPILER} is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    change = MUTATIONS[mutation] if mutation is not None else None
    for name in SOURCE_FILES:
        file = Path(name).name
        text = (sources / file).read_text()
        if change is not None and change.file == file:
            if text.count(change.old) != 1:
                raise NativeError("NATIVE_OBJECT", f"mutation {change.name}: the line to "
                                  f"change is not exactly once in {file}")
            text = text.replace(change.old, change.new)
        (workdir / file).write_text(text)
        try:
            done = subprocess.run(
                [COMPILER, "-O2", "-g", "-std=gnu11", *cflags(SHIM), "-c", file,
                 "-o", file.replace(".c", ".o")],
                cwd=workdir, capture_output=True, text=True, timeout=1200, check=False)
        except subprocess.TimeoutExpired:
            raise NativeError("NATIVE_OBJECT", f"compiling {file} took more than 1200 s"
                              ) from None
        if done.returncode != 0:
            raise NativeError("NATIVE_OBJECT", f"compiling {file} failed: "
                              f"{done.stderr.strip()[-600:]}")
    manifest = workdir / "manifest.yaml"
    manifest.write_text(MANIFEST.format(version=version, dialect=DIALECT, shim=SHIM))
    return manifest


__all__ = [
    "MUTATIONS",
    "SOURCE_FILES",
    "Mutation",
    "build_xen_patcher",
    "cached_orig_tarball",
    "extract_sources",
    "fetch_orig_tarball",
]
