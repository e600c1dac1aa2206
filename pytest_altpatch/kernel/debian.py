"""Fetching a shipped kernel image from Debian's archive, cached outside the repository.

Nothing of the image is ever committed: a profile names a binary package and the
member path of the image inside it.  :func:`image_for_profile` looks for the package's
``.deb`` in the cache (``$ALTPATCH_CACHE`` or ``~/.cache/pytest-altpatch``, under
``debian/``), downloads it with ``apt-get download`` when it is missing (arm64 package
lists in a temporary directory; nothing is installed and the system's apt state is
not touched), unpacks it with ``dpkg -x`` into ``extract/<deb name>/`` and returns the
member's path.  Every way this can fail is ``IMAGE_UNAVAILABLE`` with the reason, so a
test can skip with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from pytest_altpatch.errors import KernelError
from pytest_altpatch.kernel.profile import PackageSource
from pytest_altpatch.resources import cache_root

#: Debian's archive and the keyring apt verifies it with (package debian-archive-keyring).
MIRROR: Final = "http://deb.debian.org/debian"
SECURITY_MIRROR: Final = "http://security.debian.org/debian-security"
KEYRING: Final = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: Setting this to 1 forbids network access (the cache must already hold the package).
OFFLINE_ENV: Final = "ALTPATCH_OFFLINE"
_TIMEOUT: Final = 600.0




def cached_deb(package: PackageSource, root: Path | None = None) -> Path | None:
    """The newest cached ``.deb`` of ``package`` (by file name), or None."""
    found = sorted((root or cache_root()).joinpath("debian").glob(
        f"{package.name}_*_{package.architecture}.deb"))
    return found[-1] if found else None


def _sources(package: PackageSource) -> str:
    signed = f" signed-by={KEYRING}" if KEYRING.is_file() else ""
    lines = []
    for suite in package.suites:
        mirror = SECURITY_MIRROR if suite.endswith("-security") else MIRROR
        lines.append(f"deb [arch={package.architecture}{signed}] {mirror} {suite} main")
    return "\n".join(lines) + "\n"


def _apt(work: Path, package: PackageSource, *arguments: str) -> None:
    """Run apt-get with every piece of state in ``work`` (sources, lists, cache)."""
    for sub in ("lists/partial", "cache/archives/partial", "etc/preferences.d"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "etc/sources.list").write_text(_sources(package))
    options = [
        f"Dir::Etc::SourceList={work / 'etc/sources.list'}",
        "Dir::Etc::SourceParts=/dev/null",
        f"Dir::Etc::PreferencesParts={work / 'etc/preferences.d'}",
        f"Dir::State::Lists={work / 'lists'}",
        f"Dir::Cache={work / 'cache'}",
        f"Dir::State::status={work / 'status'}",
        f"APT::Architecture={package.architecture}",
        f"APT::Architectures={package.architecture}",
        "Debug::NoLocking=1",
    ]
    (work / "status").touch()
    command = ["apt-get", "-q", *(part for option in options for part in ("-o", option)),
               *arguments]
    try:
        done = subprocess.run(command, cwd=work, capture_output=True, text=True,
                              timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelError("IMAGE_UNAVAILABLE", f"apt-get {arguments[0]} failed: {exc}") from None
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise KernelError("IMAGE_UNAVAILABLE",
                          f"apt-get {arguments[0]} exited {done.returncode}: {tail[0]}")


def download_deb(package: PackageSource, root: Path | None = None) -> Path:
    """Download ``package`` into the cache with ``apt-get download``; returns the file."""
    if os.environ.get(OFFLINE_ENV) == "1":
        raise KernelError("IMAGE_UNAVAILABLE",
                          f"{package.name} is not cached and {OFFLINE_ENV}=1 forbids downloading")
    if shutil.which("apt-get") is None:
        raise KernelError("IMAGE_UNAVAILABLE", f"{package.name} is not cached and there is "
                          "no apt-get to download it")
    target = (root or cache_root()) / "debian"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="altpatch-apt-") as temp:
        work = Path(temp)
        _apt(work, package, "update")
        _apt(work, package, "download", f"{package.name}:{package.architecture}")
        debs = sorted(work.glob(f"{package.name}_*.deb"))
        if not debs:
            raise KernelError("IMAGE_UNAVAILABLE", f"apt-get download left no {package.name} .deb")
        final = target / debs[-1].name
        shutil.move(str(debs[-1]), final)
    return final


def unpack_member(deb: Path, member: str, root: Path | None = None) -> Path:
    """``member`` of ``deb``, unpacked once with ``dpkg -x`` into the cache."""
    directory = (root or cache_root()) / "extract" / deb.stem
    path = directory / member
    if path.is_file():
        return path
    if shutil.which("dpkg") is None:
        raise KernelError("IMAGE_UNAVAILABLE", f"no dpkg to unpack {deb.name}")
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        done = subprocess.run(["dpkg", "-x", str(deb), str(partial)], capture_output=True,
                              text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelError("IMAGE_UNAVAILABLE", f"dpkg -x {deb.name} failed: {exc}") from None
    if done.returncode or not (partial / member).is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise KernelError("IMAGE_UNAVAILABLE",
                          f"{deb.name} does not unpack to {member}: {done.stderr.strip()}")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return path


def image_for_profile(package: PackageSource | None, *, download: bool = True,
                      root: Path | None = None) -> Path:
    """The image a profile's package ships, from the cache or downloaded (see module)."""
    if package is None:
        raise KernelError("IMAGE_UNAVAILABLE", "the profile names no package to fetch")
    deb = cached_deb(package, root)
    if deb is None:
        if not download:
            raise KernelError("IMAGE_UNAVAILABLE", f"{package.name} is not in the cache "
                              f"{(root or cache_root()) / 'debian'}")
        deb = download_deb(package, root)
    return unpack_member(deb, package.member, root)


__all__ = [
    "OFFLINE_ENV",
    "cache_root",
    "cached_deb",
    "download_deb",
    "image_for_profile",
    "unpack_member",
]
