"""Fixtures for the A64 layer tests."""

from __future__ import annotations

import pytest

from .capstone_view import CapstoneView


@pytest.fixture(scope="session")
def cs() -> CapstoneView:
    """A capstone decoder shared by the session."""
    return CapstoneView()
