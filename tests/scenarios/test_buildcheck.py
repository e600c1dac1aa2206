"""The build check of ``altpatch run`` and ``lint``: the images it built are handed on
(``altpatch run`` prepares its judging from them instead of reading them again), and
its errors are those of a build."""

from __future__ import annotations

import io

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cli import build_parser
from pytest_altpatch.cli import run as cli_run
from pytest_altpatch.image import kept_images
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.buildcheck import build_checked, build_problems
from pytest_altpatch.scenarios.session import build_for

CORPUS = bundled_corpus() / "cases"


def test_the_images_it_checked_are_those_a_run_builds(cache: object) -> None:
    catalog = load_catalog()
    case = load_case(CORPUS / "dialects" / sorted(p.name for p in (CORPUS / "dialects")
                                                  .glob("*.yaml"))[0], catalog)
    images, problems = build_checked(case, catalog)
    assert problems == []
    assert sorted(images) == sorted(case.dialects)
    for dialect, image in images.items():
        assert image == build_for(case, catalog, dialect)


def test_a_case_that_must_not_build_is_neither_built_nor_reported() -> None:
    catalog = load_catalog()
    case = load_case(CORPUS / "table" / "macro-length-mismatch.yaml", catalog)
    assert build_checked(case, catalog) == ({}, [])
    assert build_problems(case, catalog) == []


def test_altpatch_run_reads_each_kept_image_once(
        cache: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """``altpatch run``'s load step checks the build and prepares the judge from the
    same images: a second read of the user cache is the waste this guards against."""
    path = CORPUS / "branch" / sorted(p.name for p in (CORPUS / "branch").glob("*.yaml"))[0]
    catalog = load_catalog()
    case = load_case(path, catalog)
    for dialect in case.dialects:
        build_for(case, catalog, dialect)  # kept now
    reads: list[str] = []
    original = kept_images._IMAGES.read

    def counted(key: str) -> bytes | None:
        reads.append(key)
        return original(key)

    monkeypatch.setattr(kept_images._IMAGES, "read", counted)
    args = build_parser().parse_args(["run", str(path), "--inprocess"])
    err = io.StringIO()
    loaded = cli_run._load(args, err)
    assert loaded is not None, err.getvalue()
    assert len(reads) == len(case.dialects) == len(set(reads))
