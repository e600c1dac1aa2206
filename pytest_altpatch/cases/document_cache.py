"""Parsed, schema-valid YAML documents kept between runs, as pytest keeps bytecode.

Parsing a case with located marks and validating it against the case schema cost about
2 ms per file, most of a collection's time.  Neither depends on anything but the file's
bytes, the name it is reported under, the schema files and the code that does the
work, so :func:`load_valid_document` keeps each document that parsed and validated with
no problem under a key hashed from exactly those, in ``<cache_root>/documents/``
(:mod:`pytest_altpatch.kept`: bounded, least recently used trimmed first).

* A document with any problem is never kept: its errors are found again, at their lines.
* What resolving a document gives is kept beside it (:mod:`.kept_resolved`), keyed
  on the document's key and, for a case, the catalog.
* A kept entry that cannot be read back (truncated, another format, not plain data)
  counts as absent.
* ``ALTPATCH_NO_CACHE=1`` turns the cache off; a cache that cannot be written is
  skipped without a word.  Deleting the directory is always safe.
"""

from __future__ import annotations

import hashlib
import os
import sys
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, cast

from pytest_altpatch.cases.located import LocatedDocument, decode_utf8, read_bounded
from pytest_altpatch.errors import Location, SpecError
from pytest_altpatch.kept import NO_CACHE_ENV, KeptEntries, installed_stamps

#: Bumped when what an entry holds changes shape.
ENTRY_FORMAT: Final = 2
#: Parsed documents of about 200 files take 3 MiB; the bound keeps a few corpora.
_DOCUMENTS: Final = KeptEntries("documents", 64 * 1024 * 1024)


#: The code a kept document depends on, beside this module: the located document, the
#: parser and the schema check (read as files: a kept hit imports none of them).
_CODE: Final = ("located.py", "yamlload.py", "schema.py", "schema_safety.py")


@lru_cache(maxsize=1)
def _code_fingerprint() -> bytes:
    """What the parse and the check depend on besides their inputs: this code, PyYAML as
    installed (its files, libyaml's extension among them, found and not imported) and
    the interpreter."""
    digest = hashlib.sha256(f"{ENTRY_FORMAT} {sys.version_info[:3]}\n".encode())
    digest.update(installed_stamps("yaml"))
    here = Path(__file__)
    for name in _CODE:
        digest.update(here.with_name(name).read_bytes())
    return digest.digest()


@lru_cache(maxsize=16)
def _schema_fingerprint(schema_dir: str, stamp: tuple[tuple[str, int, int], ...]) -> bytes:
    """Every schema file a document can be checked against (``$ref`` s stay in the dir)."""
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        digest.update(name.encode() + b"\0" + (Path(schema_dir) / name).read_bytes())
    return digest.digest()


def _schemas_of(schema_file: Path) -> bytes:
    directory = schema_file.parent
    try:
        stats = [(entry.name, entry.stat()) for entry in os.scandir(directory)
                 if entry.is_file()]
        stamp = tuple(sorted((name, info.st_mtime_ns, info.st_size) for name, info in stats))
        return _schema_fingerprint(str(directory), stamp)
    except OSError:  # unreadable: then it cannot be validated against either
        return b""


def _key(raw: bytes, file: str, schema_file: Path) -> str:
    digest = hashlib.sha256(_code_fingerprint())
    digest.update(_schemas_of(schema_file))
    digest.update(schema_file.name.encode() + b"\0" + file.encode() + b"\0")
    digest.update(raw)
    return digest.hexdigest()


def _read_entry(key: str) -> LocatedDocument | None:
    entry = _DOCUMENTS.load(key)
    if not isinstance(entry, tuple) or len(entry) != 5:  # absent, or another format
        return None
    file, value, locations, key_locations, text_starts = cast("tuple[Any, ...]", entry)
    if not isinstance(file, str) or not all(
            isinstance(table, dict) for table in (locations, key_locations, text_starts)):
        return None
    if not all(isinstance(where, Location) for where in locations.values()):
        return None
    return LocatedDocument(file, value, MappingProxyType(locations),
                           MappingProxyType(key_locations), MappingProxyType(text_starts))


def _write_entry(key: str, document: LocatedDocument) -> None:
    _DOCUMENTS.keep(key, (document.file, document.value, dict(document.locations),
                          dict(document.key_locations), dict(document.text_starts)))


def document_key(path: Path, file: str, schema_file: Path) -> tuple[bytes, str]:
    """The bytes of ``path`` (reported as ``file``) and the key its document is kept
    under against ``schema_file`` ("" when caching is off): what the document is a pure
    function of.  Raises the :class:`SpecError` of a file that cannot be read."""
    raw = read_bounded(path, file)
    return raw, _key(raw, file, schema_file) if _DOCUMENTS.enabled() else ""


def load_valid_document(path: Path, file: str, schema_file: Path, *,
                        read: tuple[bytes, str] | None = None
                        ) -> tuple[LocatedDocument, list[SpecError]]:
    """Read, parse and validate ``path`` (reported as ``file``) against ``schema_file``
    (``read``: its :func:`document_key`, when the caller has it).

    Raises the :class:`SpecError` of a file that cannot be read or parsed; returns the
    document and its schema problems (none when it came from the cache).
    """
    raw, key = read if read is not None else document_key(path, file, schema_file)
    caching = bool(key)
    if caching:
        kept = _read_entry(key)
        if kept is not None:
            return kept, []
    from pytest_altpatch.cases.schema import validate  # noqa: PLC0415 - a miss only
    from pytest_altpatch.cases.yamlload import load_yaml_text  # noqa: PLC0415

    document = load_yaml_text(decode_utf8(raw, file), file)
    problems = validate(document, schema_file)
    if caching and not problems:
        _write_entry(key, document)
    return document, problems


__all__ = ["ENTRY_FORMAT", "NO_CACHE_ENV", "document_key", "load_valid_document"]
