"""Built images kept between runs, as bytecode is: a case's image is built once.

Building is most of an item's own time (a 200-site case: about 50 ms of assembling;
reading a kept image back: about 2 ms), and every item of a corpus run builds in its
own worker child, the session too when it checks that a case builds.  An image is a
pure function of the case, the dialect, its capability numbering, the harness text,
the code that builds it and the assembler engines, so :func:`build_image_kept` keeps
each image that built under a key hashed from exactly those, in
``<cache_root>/images/`` (:mod:`pytest_altpatch.kept`: bounded, least recently used
trimmed first).

* A build error is never kept: it is raised afresh, at its line, every time.
* The code is every Python source of this package (what an image depends on is most
  of it) and the installed keystone and capstone, each file by its name, size and
  modification time (as bytecode caches trust sources), stamped once per process; the
  interpreter's version is part of the key too.
* The case enters the key as the digest of its plain-data pickle, worked out once per
  case object (:func:`case_digest`); a worker child is handed the one its session
  worked out with its request, instead of pickling the case again.
* A kept entry is read back with :mod:`pytest_altpatch.plain_data`'s allow-list, and
  one that is not an :class:`Image` counts as absent.
* ``ALTPATCH_NO_CACHE=1`` turns it off, as it does the document cache.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from pytest_altpatch.image.model import Image
from pytest_altpatch.kept import KeptEntries, installed_stamps, package_stamps
from pytest_altpatch.plain_data import PlainDigests, dumps

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import CapNumbering, Case
    from pytest_altpatch.dialects import Dialect

#: Bumped when what an entry holds changes shape.
ENTRY_FORMAT: Final = 2  # 2: a source map's spans kept as their fields
#: A 200-site image takes 200 KB (10 KB kept, compressed), a bundled case's 20-80 KB (3 KB).
_IMAGES: Final = KeptEntries("images", 64 * 1024 * 1024)


@lru_cache(maxsize=1)
def code_fingerprint() -> bytes:
    """What a build depends on besides its arguments: this package's sources, the
    assembler and disassembler engines as installed, and the interpreter (about 1 ms,
    once per process; the engines are found, not imported)."""
    digest = hashlib.sha256(f"{ENTRY_FORMAT} {sys.version_info[:3]}".encode())
    digest.update(package_stamps())
    for engine in ("keystone", "capstone"):
        digest.update(installed_stamps(engine))
    return digest.digest()


#: Digests of the cases this process keyed or was handed: a case's plain-data pickle is
#: most of an image's key, about 4 ms for a 200-site case, and a run keys it often.
_CASE_DIGESTS: Final = PlainDigests(16)


def case_digest(case: Case) -> bytes | None:
    """The SHA-256 of ``case`` as plain data (None: it is not plain data, so nothing of
    it is kept), worked out once per case object."""
    return _CASE_DIGESTS.of(case)


def remember_case_digest(case: Case, digest: bytes) -> None:
    """Take ``digest`` as :func:`case_digest` of ``case`` (a worker child is handed the
    one its session worked out, for the case it was sent)."""
    _CASE_DIGESTS.remember(case, digest)


def _key(case: Case, dialect: Dialect, numbering: CapNumbering,
         harness_text: str | None) -> str | None:
    digest = case_digest(case)
    if digest is None:
        return None
    try:
        arguments = dumps((dialect, numbering, harness_text))
    except (pickle.PicklingError, TypeError, AttributeError):  # not plain data: not kept
        return None
    return hashlib.sha256(code_fingerprint() + digest + arguments).hexdigest()


def build_image_kept(case: Case, *, dialect: Dialect, numbering: CapNumbering,
                     harness_text: str | None = None) -> Image:
    """:func:`~pytest_altpatch.image.builder.build_image` with the default layout, read
    from the cache when this image was built before; raises what a build raises."""
    key = _key(case, dialect, numbering, harness_text) if _IMAGES.enabled() else None
    if key is not None:
        kept = _IMAGES.load(key)
        if isinstance(kept, Image):
            return kept
    # Imported on a miss only: the assembler engines are for building, not for running.
    from pytest_altpatch.image.builder import build_image  # noqa: PLC0415

    image = build_image(case, dialect=dialect, numbering=numbering, harness_text=harness_text)
    if key is not None:
        _IMAGES.keep(key, image)
    return image


def prepare(*, trim: bool = True) -> None:
    """Compute what every lookup needs and (``trim``) check the bound now: the worker
    server calls this while it warms up, so each forked child inherits both.  A server
    for one or two items leaves the bound to the first write (scanning the entries is
    about 15 ms of a one-item run, and a run whose image is kept writes nothing)."""
    if _IMAGES.enabled():
        code_fingerprint()
        if trim:
            _IMAGES.trim()


__all__ = [
    "ENTRY_FORMAT",
    "build_image_kept",
    "case_digest",
    "code_fingerprint",
    "prepare",
    "remember_case_digest",
]
