"""spec layer of pytest-altpatch."""
