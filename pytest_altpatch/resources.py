"""Where the bundled corpus lives, for wheel and editable installs alike."""

from __future__ import annotations

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


__all__ = ["bundled_corpus"]
