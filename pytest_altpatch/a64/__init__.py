"""a64 layer of pytest-altpatch."""
