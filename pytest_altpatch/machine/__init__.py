"""machine layer of pytest-altpatch."""
