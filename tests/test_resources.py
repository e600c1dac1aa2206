"""Finding the bundled corpus."""

from __future__ import annotations

from pytest_altpatch.resources import bundled_corpus


def test_bundled_corpus_has_a_version_file() -> None:
    version = (bundled_corpus() / "VERSION").read_text().strip()
    major, minor, patch = (int(part) for part in version.split("."))
    assert major >= 1 and minor >= 0 and patch >= 0
