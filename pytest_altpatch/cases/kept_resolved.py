"""Resolved cases and catalogs kept between runs, beside the documents they come from.

Resolving a parsed case against the catalog (platforms, the sources' labels and macro
uses, each phase's expected streams) took about 12 ms for a 200-site case, and reading
the catalog's documents back and building the catalog about 10 ms: most of what
``altpatch run`` did before its item could start.  A resolved value is a pure function
of the documents it comes from (their kept keys, :func:`.document_cache.document_key`:
the bytes, the name they are reported under, the schema and the parser), of the
catalog a case is resolved against, and of this package's code, so it is kept under a
key hashed from exactly those, in ``<cache_root>/resolved/``
(:mod:`pytest_altpatch.kept`: bounded, least recently used trimmed first).

* Only what resolved with no problem is kept; anything else is resolved afresh, and its
  problems are found again at their lines.
* The catalog enters a case's key as the digest of its plain-data pickle, worked out
  once per catalog object.
* A kept entry is read back through :mod:`pytest_altpatch.plain_data`'s allow-list; one
  that is not of the kind asked for counts as absent.
* ``ALTPATCH_NO_CACHE=1`` turns it off, as it does every kept kind.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, TypeVar

from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.kept import KeptEntries, package_stamps
from pytest_altpatch.plain_data import PlainDigests

#: Bumped when what an entry holds changes shape.
ENTRY_FORMAT: Final = 1
#: A 200-site case takes 170 KB (20 KB kept, compressed), a bundled case's 5-20 KB.
_RESOLVED: Final = KeptEntries("resolved", 64 * 1024 * 1024)
#: Digests of the catalogs this process keyed (a session resolves every case against
#: one catalog).
_CATALOG_DIGESTS: Final = PlainDigests(8)

_Value = TypeVar("_Value", Case, Catalog)


@lru_cache(maxsize=1)
def _code() -> bytes:
    """What resolving depends on besides its inputs: this package's code and the
    interpreter."""
    digest = hashlib.sha256(f"{ENTRY_FORMAT} {sys.version_info[:3]}\n".encode())
    digest.update(package_stamps())
    return digest.digest()


def case_key(document_key: str, catalog: Catalog) -> str | None:
    """The key of the case whose document is kept under ``document_key``, resolved
    against ``catalog`` (None: nothing of it is kept)."""
    if not document_key or not _RESOLVED.enabled():
        return None
    catalog_digest = _CATALOG_DIGESTS.of(catalog)
    if catalog_digest is None:
        return None
    digest = hashlib.sha256(b"case\n" + _code() + catalog_digest)
    digest.update(document_key.encode("ascii"))
    return digest.hexdigest()


def catalog_key(document_keys: Sequence[str]) -> str | None:
    """The key of the catalog built from the documents kept under ``document_keys``, in
    that order (None: nothing of it is kept)."""
    if not document_keys or not all(document_keys) or not _RESOLVED.enabled():
        return None
    digest = hashlib.sha256(b"catalog\n" + _code())
    for key in document_keys:
        digest.update(key.encode("ascii") + b"\n")
    return digest.hexdigest()


def load(key: str | None, kind: type[_Value]) -> _Value | None:
    """The ``kind`` kept under ``key``, or None (absent, damaged or of another kind)."""
    if key is None:
        return None
    value = _RESOLVED.load(key)
    return value if isinstance(value, kind) else None


def keep(key: str | None, value: Case | Catalog) -> None:
    """Keep ``value``, resolved with no problem, under ``key`` (None: nothing kept)."""
    if key is not None:
        _RESOLVED.keep(key, value)


__all__ = ["ENTRY_FORMAT", "case_key", "catalog_key", "keep", "load"]
