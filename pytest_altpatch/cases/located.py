"""Documents with where each value came from, and the bounded reading of their files.

What the case and catalog layers need of a parsed document, and of the file it came
from, without the YAML parser (:mod:`.yamlload`): a document kept between runs
(:mod:`.document_cache`) is read back without loading PyYAML at all.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_altpatch.errors import Location, SpecError

#: Bound on the size of a file we are willing to read.
MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class LocatedDocument:
    """A YAML document as plain values plus where each value and key sits."""

    file: str
    value: object
    #: JSON path -> location of the value node ("" is the document root).
    locations: Mapping[str, Location] = field(default_factory=dict)
    #: JSON path -> location of the mapping *key* that introduces the value.
    key_locations: Mapping[str, Location] = field(default_factory=dict)
    #: JSON path -> 1-based file line of the first text line of a string value.
    text_starts: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def location(self, json_path: str, *, key: bool = False) -> Location:
        """The location of ``json_path`` (its key if ``key``), else its nearest parent."""
        path = json_path
        while True:
            table = self.key_locations if key else self.locations
            found = table.get(path)
            if found is not None:
                return found
            key = False
            if not path:
                return Location(file=self.file, json_path=json_path or None)
            path = path.rpartition(".")[0]


def join_path(parent: str, child: str | int) -> str:
    """Dotted JSON path of ``child`` under ``parent``."""
    return f"{parent}.{child}" if parent else str(child)


def read_bounded(path: Path, file: str, limit: int = MAX_BYTES) -> bytes:
    """The bytes of regular file ``path``, refusing FIFOs, devices and files over ``limit``
    before reading them (``SPEC_IO``)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; we refuse it just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SpecError("SPEC_IO", f"cannot read file: {exc.strerror or exc}",
                        location=Location(file=file)) from None
    with os.fdopen(fd, "rb") as stream:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise SpecError("SPEC_IO", "not a regular file (a FIFO, device or socket)",
                            location=Location(file=file))
        if status.st_size > limit:
            raise SpecError("SPEC_IO", f"file is larger than {limit} bytes",
                            location=Location(file=file))
        try:
            raw = stream.read(limit + 1)
        except OSError as exc:
            raise SpecError("SPEC_IO", f"cannot read file: {exc.strerror or exc}",
                            location=Location(file=file)) from None
    if len(raw) > limit:  # it grew while we looked
        raise SpecError("SPEC_IO", f"file is larger than {limit} bytes",
                        location=Location(file=file))
    return raw


def decode_utf8(raw: bytes, file: str) -> str:
    """``raw`` as text; not UTF-8 is ``SPEC_IO`` at the line of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError("SPEC_IO", "file is not valid UTF-8",
                        location=Location(file=file, line=line)) from None


__all__ = ["MAX_BYTES", "LocatedDocument", "decode_utf8", "join_path", "read_bounded"]
