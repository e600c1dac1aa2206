"""Kept images (``pytest_altpatch.image.kept_images``): a kept image is the one a fresh
build gives, for every bundled case and dialect; a build error is never kept; every
input of a build is part of the key; and a kept entry is only ever plain data."""

from __future__ import annotations

import os
import pickle
import zlib
from pathlib import Path

import pytest
from conftest import make_case
from conftest import numbering_for as small_numbering

from pytest_altpatch import kept as kept_store
from pytest_altpatch import plain_data
from pytest_altpatch.cases.case import read_case
from pytest_altpatch.cases.catalog import read_catalog
from pytest_altpatch.cases.model import CapNumbering, Case, Dialect
from pytest_altpatch.errors import AsmError
from pytest_altpatch.image import builder, kept_images
from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.model import Image
from pytest_altpatch.kept import NO_CACHE_ENV
from pytest_altpatch.plain_data import dumps, loads
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.harness import harness_source
from pytest_altpatch.scenarios.session import numbering_for
from pytest_altpatch.supervisor import item_request

TEXT = "_start:\n    mov x0, #1\n    ret\n"


def entries(root: Path) -> list[Path]:
    """The kept images under a cache root."""
    folder = root / "images"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def no_build(*_: object, **__: object) -> None:
    raise AssertionError("built although the image was kept")


def test_each_bundled_case_reads_back_the_image_it_builds(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = bundled_corpus()
    catalog, _ = read_catalog(root)
    assert catalog is not None
    built: list[tuple[Case, Dialect, CapNumbering, Image, Image]] = []
    for path in sorted((root / "cases").rglob("*.yaml")):
        case, _ = read_case(path, catalog, corpus_root=root)
        assert case is not None
        for dialect in case.dialects:
            numbering = catalog.numberings[numbering_for(catalog, dialect)]
            try:
                fresh = build_image(case, dialect=dialect, numbering=numbering,
                                    harness_text=harness_source())
            except Exception:  # a negative case: its error is checked below
                continue
            first = kept_images.build_image_kept(case, dialect=dialect, numbering=numbering,
                                                 harness_text=harness_source())
            built.append((case, dialect, numbering, fresh, first))
    assert len(built) >= 150 and len(entries(cache)) == len(built)
    monkeypatch.setattr(builder, "build_image", no_build)
    for case, dialect, numbering, fresh, first in built:
        kept = kept_images.build_image_kept(case, dialect=dialect, numbering=numbering,
                                            harness_text=harness_source())
        assert kept is not first and kept == fresh == first, (case.id, dialect)


def test_a_build_error_is_raised_afresh_and_never_kept(cache: Path) -> None:
    case = make_case("_start:\n    movv x0, #1\n")
    for _ in range(2):
        with pytest.raises(AsmError) as info:
            kept(case)
        assert info.value.location.line == 21  # the case's second text line, every time
    assert entries(cache) == []


def kept(case: Case, dialect: Dialect = "linux-4.9", ncaps: int = 3,
         harness_text: str | None = None) -> Image:
    """The kept build of ``case`` with the small test numbering."""
    return kept_images.build_image_kept(case, dialect=dialect,
                                        numbering=small_numbering(dialect, ncaps),
                                        harness_text=harness_text)


def test_every_input_of_a_build_is_part_of_the_key(cache: Path) -> None:
    case = make_case(TEXT)
    kept(case)
    kept(case, dialect="xen-4.17")
    kept(case, ncaps=4)
    kept(case, harness_text="harness_entry:\n    ret\n")
    kept(make_case(TEXT.replace("#1", "#2")))
    assert len(entries(cache)) == 5
    image = kept(case, harness_text="h:\n    nop\n")
    assert image.symbols["h"] == image.harness_start


def test_an_entry_that_is_not_plain_image_data_is_rebuilt(
        cache: Path, tmp_path: Path) -> None:
    case = make_case(TEXT)
    fresh = kept(case)
    (entry,) = entries(cache)
    head = entry.read_bytes().split(b"\n", 1)[0] + b"\n"
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self) -> tuple[object, ...]:
            return (Path.touch, (marker,))

    for payload in (pickle.dumps(Hostile()), pickle.dumps(("not", "an image")), b"\x80junk"):
        entry.write_bytes(head + zlib.compress(payload))  # well formed, but not an image
        assert kept(case) == fresh
        assert not marker.exists()  # the hostile entry's code never ran
        assert zlib.decompress(entry.read_bytes()[len(head):]) == dumps(fresh)  # afresh


def test_switched_off_nothing_is_kept(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    kept(make_case(TEXT))
    assert not cache.exists()


def test_an_edited_source_is_a_new_code_fingerprint(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "package"
    (package / "layer" / "__pycache__").mkdir(parents=True)
    source = package / "layer" / "module.py"
    source.write_text("X = 1\n")
    (package / "layer" / "__pycache__" / "module.cpython.pyc").write_bytes(b"ignored")
    monkeypatch.setattr(kept_store, "_PACKAGE", str(package))
    monkeypatch.setattr(kept_images, "package_stamps", kept_store.package_stamps.__wrapped__)
    fingerprint = kept_images.code_fingerprint.__wrapped__
    first = fingerprint()
    (package / "layer" / "__pycache__" / "other.py").write_text("")  # a cache: not code
    assert fingerprint() == first
    stat = source.stat()
    source.write_text("X = 2\n")  # same size: the modification time tells
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    edited = fingerprint()
    assert edited != first
    (package / "new.py").write_text("")  # a new module is new code too
    assert fingerprint() not in (first, edited)


def test_a_case_is_pickled_for_its_key_once_and_keyed_by_its_value(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = make_case(TEXT)
    pickled: list[object] = []
    monkeypatch.setattr(plain_data, "dumps", lambda value: pickled.append(value) or
                        dumps(value))  # (what a digest pickles with)
    first = kept_images.case_digest(case)
    kept(case)
    kept(case, "xen-4.17")  # another dialect: the same case digest
    assert sum(value is case for value in pickled) == 1
    copy = loads(dumps(case))
    assert copy is not case and kept_images.case_digest(copy) == first
    assert kept_images.case_digest(make_case(TEXT.replace("#1", "#2"))) != first


def test_the_digest_a_child_is_handed_is_the_one_it_keys_with(cache: Path) -> None:
    """A worker child keys its case's image with the digest its session sent (it does
    not pickle the case again): handed another case's digest, it reads that case's
    kept image."""
    one, other = make_case(TEXT), make_case(TEXT.replace("#1", "#2"))
    other_image = kept(other)
    digest = kept_images.case_digest(other)
    assert digest is not None
    kept_images.remember_case_digest(one, digest)
    assert kept(one) == other_image != build_image(
        one, dialect="linux-4.9", numbering=small_numbering("linux-4.9", 3))


def test_an_item_request_carries_its_cases_digest(cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    case = make_case(TEXT)
    catalog, _ = read_catalog(bundled_corpus())
    assert catalog is not None

    def request() -> object:
        return item_request(case, catalog, mode="boot", patcher="reference", dialect=None,
                            schedule="rr:100", seed=0, timeout=None).case_digest

    assert request() == kept_images.case_digest(case) is not None
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert request() is None
