"""scenarios layer of pytest-altpatch."""
