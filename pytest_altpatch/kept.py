"""Entries kept between runs in the user's cache: parsed documents, built images.

Each kind of entry has a directory under :func:`~pytest_altpatch.resources.cache_root`
and keeps each entry as ``<key[:2]>/<key>``, the key a hex digest of everything the
entry depends on (its owner computes it).  The store knows nothing of what entries mean:

* An entry's bytes are its own key, a newline and the payload compressed with zlib (a
  built image is mostly zero padding: 28 times smaller, for 0.2 ms); one that does
  not start with its key or does not decompress (truncated, another key's, another
  format) counts as absent.
* Entries are written aside and renamed, so a concurrent reader sees all of one or none.
* A hit refreshes the entry's modification time.  When a kind's entries grow past its
  byte bound, the least recently used go until a quarter of the bound is free.  The
  bound is checked at a process's first write, after each further quarter of it the
  process writes, and by :meth:`KeptEntries.trim` (the worker server calls it while it
  warms up, so its forked children need not each check).
* :meth:`KeptEntries.load` and :meth:`KeptEntries.keep` hold values as plain data
  (:mod:`pytest_altpatch.plain_data`): read back through its allow-list, so a hostile
  entry runs no code; an entry that does not unpickle counts as absent.
* Owners key what they keep on the code it depends on: :func:`file_stamps` and
  :func:`installed_stamps` name files by name, size and modification time, as
  Python's bytecode cache trusts a source.
* ``ALTPATCH_NO_CACHE=1`` turns every kind off; a cache that cannot be written is
  skipped without a word.  Deleting the directory is always safe.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pickle
import tempfile
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Final

from pytest_altpatch.plain_data import dumps, loads
from pytest_altpatch.resources import cache_root

#: Setting this to 1 makes every owner compute afresh and keep nothing.
NO_CACHE_ENV: Final = "ALTPATCH_NO_CACHE"
#: Files of writes in progress (or of a writer killed mid-write) start with this.
_ASIDE_PREFIX: Final = ".entry-"
#: This package's folder (its sources are what most kept entries depend on).
_PACKAGE: Final = os.path.dirname(os.path.realpath(__file__))


class KeptEntries:
    """The kept entries of one kind, in ``<cache_root>/<kind>/``, bounded in bytes."""

    def __init__(self, kind: str, max_bytes: int) -> None:
        self.kind = kind
        self.max_bytes = max_bytes
        #: Bytes this process wrote since it last checked the bound (None: never checked).
        self._written: int | None = None

    @staticmethod
    def enabled() -> bool:
        """Whether caching is on (``ALTPATCH_NO_CACHE`` is not 1)."""
        return os.environ.get(NO_CACHE_ENV) != "1"

    def directory(self) -> Path | None:
        """Where the entries live, or None when caching is off."""
        if not self.enabled():
            return None
        return cache_root() / self.kind

    def load(self, key: str) -> object | None:
        """The plain-data value kept under ``key``, or None (absent, damaged, another
        format, or a pickle the allow-list refuses)."""
        payload = self.read(key)
        if payload is None:
            return None
        try:
            return loads(payload)
        except Exception:  # another format, or damaged past the key: absent
            return None

    def keep(self, key: str, value: object) -> None:
        """Keep the plain-data ``value`` under ``key`` (a value plain data cannot hold is
        not kept, nor is anything when the cache cannot be written)."""
        if not self.enabled():
            return
        try:
            payload = dumps(value)
        except (pickle.PicklingError, TypeError, AttributeError):
            return
        self.write(key, payload)

    def read(self, key: str) -> bytes | None:
        """The payload kept under ``key``, or None (absent, damaged, or caching off)."""
        directory = self.directory()
        if directory is None:
            return None
        path = directory / key[:2] / key
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        head = key.encode("ascii") + b"\n"
        if not blob.startswith(head):
            return None
        try:
            payload = zlib.decompress(blob[len(head):])
        except zlib.error:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: the last to be trimmed
        return payload

    def write(self, key: str, payload: bytes) -> None:
        """Keep ``payload`` under ``key`` (nothing happens if the cache cannot be written)."""
        directory = self.directory()
        if directory is None:
            return
        blob = key.encode("ascii") + b"\n" + zlib.compress(payload, 1)
        folder = directory / key[:2]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, aside = tempfile.mkstemp(dir=folder, prefix=_ASIDE_PREFIX)
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(blob)
                os.replace(aside, folder / key)
            except BaseException:
                Path(aside).unlink(missing_ok=True)
                raise
        except OSError:  # a read-only home, a full disk: no cache
            return
        if self._written is None or self._written >= self.max_bytes // 4:
            self.trim()
        self._written = (self._written or 0) + len(blob)

    def trim(self) -> None:
        """If the entries pass the bound, remove the least recently used until a quarter
        of it is free (with the files of writes that never finished)."""
        self._written = 0
        directory = self.directory()
        if directory is None:
            return
        entries: list[tuple[int, int, str]] = []
        try:
            with os.scandir(directory) as folders:
                for folder in folders:
                    if not folder.is_dir(follow_symlinks=False):
                        continue
                    with os.scandir(folder.path) as files:
                        for entry in files:
                            with contextlib.suppress(OSError):
                                info = entry.stat(follow_symlinks=False)
                                entries.append((info.st_mtime_ns, info.st_size, entry.path))
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        entries.sort()
        for _, size, path in entries:
            if total <= self.max_bytes * 3 // 4:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size


def file_stamps(home: str, files: Sequence[str]) -> bytes:
    """Each of ``files`` by its path under ``home``, its size and its modification time:
    what Python's own bytecode cache trusts a source by (reading and hashing each file
    costs several times as much, and an item waits for it)."""
    lines = []
    inside = os.path.join(home, "")
    for path in files:
        info = os.stat(path)
        # (a path under home is named by its tail: relpath costs 10 us a file)
        name = path[len(inside):] if path.startswith(inside) else os.path.relpath(path, home)
        lines.append(f"{name} {info.st_size} {info.st_mtime_ns}\n")
    return "".join(lines).encode()


@lru_cache(maxsize=1)
def package_stamps() -> bytes:
    """Every Python source of this package as :func:`file_stamps`, in a fixed order
    (bytecode caches skipped): worked out once per process (about 1 ms)."""
    found = []
    for folder, subfolders, names in os.walk(_PACKAGE):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        found += [os.path.join(folder, name) for name in sorted(names) if name.endswith(".py")]
    return file_stamps(_PACKAGE, found)


def installed_stamps(package: str) -> bytes:
    """The installed ``package`` as :func:`file_stamps` of its Python files and shared
    libraries (its own folder and ``lib/``), found, not imported; a line saying it is
    absent where it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return f"{package} absent\n".encode()
    home = os.path.dirname(spec.origin)
    found = [*glob.glob("*.py", root_dir=home), *glob.glob("*.so*", root_dir=home),
             *glob.glob("lib/*.so*", root_dir=home)]
    return f"{package} {home}\n".encode() + file_stamps(
        home, [os.path.join(home, name) for name in sorted(found)])


__all__ = ["NO_CACHE_ENV", "KeptEntries", "file_stamps", "installed_stamps",
           "package_stamps"]
