"""patchers layer of pytest-altpatch."""
