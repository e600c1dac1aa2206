"""Resolve a patcher name (``reference:linux-6.1``, ``package.module:attr``) to a patcher."""

from __future__ import annotations

import importlib

from pytest_altpatch.errors import PatchError
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.patchers.reference import DIALECT_RULES, ReferencePatcher

DEFAULT_DIALECT = "linux-6.1"


def resolve_patcher(name: str, *, dialect: str | None = None) -> Patcher:
    """Return the patcher ``name`` designates.

    ``reference`` and ``reference:DIALECT`` are the reference patcher (``dialect``
    overrides the default when no dialect is named); ``native:PATH`` is the native
    patcher a manifest describes (docs/native-abi.md).  ``module:attr`` imports
    ``module`` and takes ``attr``: a patcher instance, or a class or factory called
    with no arguments (or with ``dialect=`` when one is given).
    """
    kind, _, rest = name.partition(":")
    if kind == "reference":
        chosen = rest or dialect or DEFAULT_DIALECT
        if chosen not in DIALECT_RULES:
            raise PatchError("PATCHER_UNKNOWN", f"no reference dialect {chosen!r}",
                             phase="load", hint=f"known: {', '.join(DIALECT_RULES)}")
        return ReferencePatcher(chosen)
    if kind == "native":
        # Imported here: only native runs need the linker and executor.
        from pytest_altpatch.native.patcher import load_native_patcher  # noqa: PLC0415

        if not rest:
            raise PatchError("PATCHER_UNKNOWN", "native: needs a manifest path",
                             phase="load", hint="native:PATH/TO/manifest.yaml")
        return load_native_patcher(rest)
    if not rest:
        raise PatchError("PATCHER_UNKNOWN", f"cannot resolve patcher {name!r}", phase="load",
                         hint="use reference[:DIALECT] or package.module:attribute")
    try:
        module = importlib.import_module(kind)
    except ImportError as exc:
        raise PatchError("PATCHER_UNKNOWN", f"cannot import {kind!r}: {exc}",
                         phase="load") from None
    try:
        target: object = module
        for part in rest.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise PatchError("PATCHER_UNKNOWN", f"{kind!r} has no attribute {rest!r}",
                         phase="load") from None
    if not isinstance(target, Patcher) and callable(target):
        try:
            target = target(dialect=dialect) if dialect else target()
        except Exception as exc:
            raise PatchError("PATCHER_UNKNOWN", f"creating {name!r} failed: {exc}",
                             phase="load") from None
    if not isinstance(target, Patcher):
        raise PatchError("PATCHER_UNKNOWN",
                         f"{name!r} does not provide the patcher protocol (name, version, "
                         "dialect, features and the three apply_* entries)", phase="load")
    return target


__all__ = ["DEFAULT_DIALECT", "resolve_patcher"]
