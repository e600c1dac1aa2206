"""image layer of pytest-altpatch."""
