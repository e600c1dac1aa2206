"""Where the bundled corpus, target profiles and native shims live (wheel and editable
installs alike), and the user cache.  Listing what is shipped imports nothing else, so
the ``altpatch`` parser can name it without loading the layers that read it."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
#: The target profiles shipped with the package (``<name>.yaml``).
PROFILES_DIR = _PACKAGE_DIR / "kernel" / "profiles"
#: The native shims shipped with the package (``<name>/shim.yaml``).
SHIM_ROOT = _PACKAGE_DIR / "native" / "shims"


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


def available_profiles() -> tuple[str, ...]:
    """Names of the target profiles shipped with the package."""
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))


def known_shims() -> tuple[str, ...]:
    """Names of the native shims shipped with the package."""
    if not SHIM_ROOT.is_dir():
        return ()
    return tuple(sorted(p.name for p in SHIM_ROOT.iterdir() if (p / "shim.yaml").is_file()))


__all__ = ["PROFILES_DIR", "SHIM_ROOT", "available_profiles", "bundled_corpus", "cache_root",
           "known_shims"]
