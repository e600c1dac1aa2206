"""Shared test configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.kept import NO_CACHE_ENV

pytest_plugins = ["pytester"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty user cache root for this test (``pytest_altpatch.kept``)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ALTPATCH_CACHE", str(root))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    return root
