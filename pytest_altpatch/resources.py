"""Where the bundled corpus lives (wheel and editable installs alike), and the user cache."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_corpus() -> Path:
    """Return the directory of the corpus shipped with this package.

    A wheel carries the corpus as ``pytest_altpatch/_corpus``; an editable install
    (or a source checkout on ``sys.path``) uses the repository's ``corpus/``.
    """
    packaged = _PACKAGE_DIR / "_corpus"
    if (packaged / "VERSION").is_file():
        return packaged
    return _PACKAGE_DIR.parent / "corpus"


def cache_root() -> Path:
    """The user's cache (``$ALTPATCH_CACHE``, else ``~/.cache/pytest-altpatch``): Debian
    downloads and parsed case documents live there, never inside a repository."""
    configured = os.environ.get("ALTPATCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "pytest-altpatch"


__all__ = ["bundled_corpus", "cache_root"]
