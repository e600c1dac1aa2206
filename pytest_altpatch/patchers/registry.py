"""Resolve a patcher name (``reference:linux-6.1``, ``package.module:attr``) to patchers.

One run may judge several dialects: ``--altpatch-dialect linux-4.9,xen-4.17`` (or
``all``) gives the reference patcher once per dialect, and a patcher class or factory
once per dialect (called with ``dialect=``).  A patcher *instance* implements one
dialect: asking it for another is a ``PATCHER_DIALECT`` error, never ignored.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import cast

from pytest_altpatch import __version__
from pytest_altpatch.cases.suggestions import did_you_mean
from pytest_altpatch.dialects import DEFAULT_DIALECT, DIALECTS, is_dialect, traits
from pytest_altpatch.errors import PatchError
from pytest_altpatch.patchers.contract import Patcher
from pytest_altpatch.patchers.facts import PatcherFacts

#: The ``--altpatch-dialect`` word for every dialect.
ALL_DIALECTS = "all"


def parse_dialects(text: str | None) -> tuple[str, ...] | None:
    """``linux-4.9,strict`` or ``all`` -> dialect names; None when ``text`` is empty.

    An unknown name is a ``PATCHER_DIALECT`` error with a did-you-mean hint.
    """
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not names:
        return None
    if ALL_DIALECTS in names:
        return DIALECTS
    for name in names:
        if name not in DIALECTS:
            hint = did_you_mean(name, DIALECTS)
            raise PatchError("PATCHER_DIALECT", f"unknown dialect {name!r}", phase="load",
                             hint=hint or f"known: {', '.join(DIALECTS)}, or {ALL_DIALECTS}")
    return tuple(dict.fromkeys(names))


def is_reference(name: str) -> bool:
    """Whether ``name`` is the bundled reference patcher (``reference[:DIALECT]``)."""
    return name.partition(":")[0] == "reference"


def dialect_free_reference(name: str) -> bool:
    """Whether ``name`` is the reference patcher with no dialect of its own, so it can
    run under every dialect a case lists."""
    return name == "reference"


def resolve_patchers(name: str, dialects: tuple[str, ...] | None) -> tuple[Patcher, ...]:
    """The patchers to judge: one per dialect asked for, or the one ``name`` gives.

    ``reference`` with no ``dialects`` is the default dialect; ``reference:D`` is that
    dialect only (naming others as well is an error).
    """
    if is_reference(name):
        from pytest_altpatch.patchers.reference import ReferencePatcher  # noqa: PLC0415

        return tuple(ReferencePatcher(d) for d in reference_dialects(name, dialects))
    if dialects is None:
        return (resolve_patcher(name),)
    return tuple(resolve_patcher(name, dialect=d) for d in dialects)


def reference_dialects(name: str, dialects: tuple[str, ...] | None) -> tuple[str, ...]:
    """The dialect of each reference patcher ``resolve_patchers(name, dialects)`` gives,
    for ``name`` the reference (``reference[:DIALECT]``); raises its coded error."""
    rest = name.partition(":")[2]
    if not rest:
        return dialects or (DEFAULT_DIALECT,)
    if dialects is not None and dialects != (rest,):
        raise PatchError("PATCHER_DIALECT",
                         f"{name!r} implements {rest}; it cannot run as "
                         f"{', '.join(dialects)}", phase="load",
                         hint="name the dialect once: --altpatch-patcher reference "
                              "--altpatch-dialect ...")
    return (_reference_dialect(name, rest, None),)


def reference_facts(name: str, dialects: tuple[str, ...] | None) -> tuple[PatcherFacts, ...]:
    """What the patchers ``resolve_patchers(name, dialects)`` gives declare, for ``name``
    the reference, without importing it (a session only judges the reference's items:
    its facts follow from its dialects' rules)."""
    chosen = reference_dialects(name, dialects)
    if not all(is_dialect(dialect) for dialect in chosen):  # (the patcher's own error)
        return PatcherFacts.of_all(resolve_patchers(name, dialects), dialects)
    asked: tuple[str | None, ...] = dialects if dialects is not None and len(
        dialects) == len(chosen) else (None,) * len(chosen)
    return tuple(PatcherFacts(f"reference:{dialect}", __version__, dialect,
                              frozenset(str(f) for f in traits(dialect).features), ask)
                 for dialect, ask in zip(chosen, asked, strict=True))


def _takes_dialect(make: Callable[..., object]) -> bool:
    """Whether a class or factory accepts ``dialect=`` (else it makes its own dialect,
    which is then checked against the one asked for)."""
    try:
        parameters = inspect.signature(make).parameters.values()
    except (TypeError, ValueError):  # no signature to read: try the keyword
        return True
    return any(p.name == "dialect" or p.kind is inspect.Parameter.VAR_KEYWORD
               for p in parameters)


def resolve_patcher(name: str, *, dialect: str | None = None) -> Patcher:
    """Return the patcher ``name`` designates.

    ``reference`` and ``reference:DIALECT`` are the reference patcher (``dialect``
    overrides the default when no dialect is named); ``native:PATH`` is the native
    patcher a manifest describes (conformance/native-abi.md).  ``module:attr`` imports
    ``module`` and takes ``attr``: a patcher instance, or a class or factory called
    with no arguments (or with ``dialect=`` when one is given).  A dialect the result
    does not implement is a ``PATCHER_DIALECT`` error.
    """
    if dialect is not None:
        parse_dialects(dialect)  # an unknown name is a dialect error, with a suggestion
    kind, _, rest = name.partition(":")
    if kind == "reference":
        return _reference(name, rest, dialect)
    if kind == "native":
        return _native(rest, name, dialect)
    if not rest:
        raise PatchError("PATCHER_UNKNOWN", f"cannot resolve patcher {name!r}", phase="load",
                         hint="use reference[:DIALECT] or package.module:attribute")
    target = _imported(kind, rest)
    made = False
    # A class is instantiated even when its class attributes already look like the
    # protocol (its methods are unbound until then); an instance is used as it is.
    if inspect.isclass(target) or (not isinstance(target, Patcher) and callable(target)):
        target = _made(cast("Callable[..., object]", target), name, dialect)
        made = True
    if not isinstance(target, Patcher):
        raise PatchError("PATCHER_UNKNOWN",
                         f"{name!r} does not provide the patcher protocol (name, version, "
                         "dialect, features and the three apply_* entries)", phase="load")
    if dialect is not None and target.dialect != dialect:
        how = "was created for" if made else "is an instance implementing"
        raise PatchError("PATCHER_DIALECT",
                         f"{name!r} {how} {target.dialect!r}, not {dialect!r}", phase="load",
                         hint="drop --altpatch-dialect, or give a class or factory taking "
                              "dialect=")
    return target


def _reference(name: str, rest: str, dialect: str | None) -> Patcher:
    """``reference[:DIALECT]``: the reference patcher of the named (or asked) dialect."""
    from pytest_altpatch.patchers.reference import ReferencePatcher  # noqa: PLC0415

    return ReferencePatcher(_reference_dialect(name, rest, dialect))


def _reference_dialect(name: str, rest: str, dialect: str | None) -> str:
    """The dialect ``reference[:rest]`` asked for ``dialect`` runs (or its coded error)."""
    chosen = rest or dialect or DEFAULT_DIALECT
    if not is_dialect(chosen):
        hint = did_you_mean(chosen, DIALECTS)
        raise PatchError("PATCHER_DIALECT", f"no reference dialect {chosen!r}",
                         phase="load", hint=hint or f"known: {', '.join(DIALECTS)}")
    if rest and dialect is not None and dialect != rest:
        raise PatchError("PATCHER_DIALECT", f"{name!r} implements {rest}, not {dialect}",
                         phase="load")
    return chosen


def _native(manifest: str, name: str, dialect: str | None) -> Patcher:
    """``native:PATH``: the native patcher a manifest describes."""
    # Imported here: only native runs need the linker and executor.
    from pytest_altpatch.native.patcher import load_native_patcher  # noqa: PLC0415

    if not manifest:
        raise PatchError("PATCHER_UNKNOWN", "native: needs a manifest path",
                         phase="load", hint="native:PATH/TO/manifest.yaml")
    native = load_native_patcher(manifest)
    if dialect is not None and native.dialect != dialect:
        raise PatchError("PATCHER_DIALECT", f"{name!r} implements {native.dialect!r} "
                         f"(its manifest's dialect), not {dialect!r}", phase="load")
    return native


def _imported(module_name: str, attribute: str) -> object:
    """``module:attr``: the attribute (dotted) of the imported module."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PatchError("PATCHER_UNKNOWN", f"cannot import {module_name!r}: {exc}",
                         phase="load") from None
    try:
        target: object = module
        for part in attribute.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise PatchError("PATCHER_UNKNOWN", f"{module_name!r} has no attribute {attribute!r}",
                         phase="load") from None
    return target


def _made(make: Callable[..., object], name: str, dialect: str | None) -> object:
    """What a patcher class or factory returns (given ``dialect=`` when it takes one)."""
    try:
        return make(dialect=dialect) if dialect and _takes_dialect(make) else make()
    except Exception as exc:
        raise PatchError("PATCHER_UNKNOWN", f"creating {name!r} failed: "
                         f"{type(exc).__name__}: {exc}", phase="load",
                         hint="a class or factory is called with no arguments, or with "
                              "dialect=NAME when a dialect is asked for") from None


__all__ = ["ALL_DIALECTS", "DEFAULT_DIALECT", "dialect_free_reference", "is_reference",
           "parse_dialects", "reference_dialects", "reference_facts", "resolve_patcher",
           "resolve_patchers"]
