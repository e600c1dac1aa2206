"""The fields of one ``.altinstructions`` entry, checked, for images and payloads alike.

:func:`entry_fields` answers, for one macro alternative, what its entry says: the
site and its length, the capability field (with the dialect's callback marking), and
what the second field points at (a callback or a replacement unit).  The image builder
writes those as absolute self-relative offsets; the payload builder as PREL32
relocations.  Every refusal (unknown callback or capability, unequal lengths, fields
that do not fit) lives here once, so the two paths cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_altpatch.cases.model import CapNumbering, RawAltEntry
from pytest_altpatch.dialects import CB_BIT, Dialect, traits
from pytest_altpatch.errors import BuildError, Location
from pytest_altpatch.image import callbacks as cb
from pytest_altpatch.image.alt_table import cap_field_for
from pytest_altpatch.image.assembler import Assembled, replacement_key, site_bounds
from pytest_altpatch.image.macros import Alternative


@dataclass(frozen=True)
class EntryFields:
    """What one macro alternative's entry holds, before it is encoded or relocated."""

    site: int
    site_len: int
    cap_field: int
    repl_len: int
    #: The callback the second field points at, or None for a replacement.
    callback: str | None
    #: The unit key of the replacement the second field points at (None: a callback).
    replacement: str | None


def check_lengths(site_len: int, repl_len: int, where: Location, end_line: int) -> None:
    """Refuse unequal site and replacement lengths, as the kernel macros' ``.org`` does."""
    if repl_len != site_len:
        raise BuildError(
            "BUILD_LENGTH_MISMATCH",
            f"site is {site_len} bytes but replacement is {repl_len} bytes "
            f"(alternative at lines {where.line}-{end_line})",
            location=where,
        )


def cap_number(cap: str | int, numbering: CapNumbering, where: Location) -> int:
    """The number of capability ``cap`` (a name or a raw u16) in ``numbering``."""
    if isinstance(cap, int):
        if not 0 <= cap <= 0xFFFF:
            raise BuildError("BUILD_MACRO", f"capability {cap} does not fit the u16 field",
                             location=where)
        return cap
    number = numbering.number(cap)
    if number is None:
        raise BuildError(
            "BUILD_UNKNOWN_CAP",
            f"capability {cap!r} has no number in {numbering.dialect}",
            location=where,
            hint="declare case-local capabilities under caps:",
        )
    return number


def require_callback(name: str, dialect: Dialect, where: Location) -> None:
    """Refuse a callback the dialect cannot mark or the registry does not know."""
    if traits(dialect).callbacks == "none":
        raise BuildError("BUILD_UNKNOWN_CALLBACK", f"dialect {dialect} has no callback "
                         f"alternatives (callback {name!r})", location=where)
    if name not in cb.CALLBACKS:
        raise BuildError("BUILD_UNKNOWN_CALLBACK", f"callback {name!r} is not registered "
                         f"(known: {', '.join(sorted(cb.CALLBACKS))})", location=where)


def _callback_cap_field(alt: Alternative, callback: str, dialect: Dialect,
                        numbering: CapNumbering) -> int:
    where = alt.location
    require_callback(callback, dialect, where)
    marking = traits(dialect).callbacks
    if alt.cap is None and marking == "bit15":
        raise BuildError("BUILD_MACRO", f"dialect {dialect} needs a capability for "
                         f"callback {callback!r}", location=where)
    # In "ncaps" dialects a callback has no capability of its own: the field is NCAPS.
    cap = 0 if alt.cap is None or marking == "ncaps" else cap_number(alt.cap, numbering, where)
    if cap >= CB_BIT:
        raise BuildError("BUILD_MACRO", f"capability {cap} collides with the callback "
                         "bit", location=where)
    return cap_field_for(dialect, cap, is_callback=True, ncaps=numbering.ncaps)


def entry_fields(alt: Alternative, assembled: Assembled, dialect: Dialect,
                 numbering: CapNumbering) -> EntryFields:
    """The checked fields of ``alt``'s entry, from the settled assembly.

    Raises :class:`BuildError` ``BUILD_UNKNOWN_CALLBACK``, ``BUILD_UNKNOWN_CAP``,
    ``BUILD_LENGTH_MISMATCH`` or ``BUILD_MACRO``, at the macro's location.
    """
    where = alt.location
    site, site_len = site_bounds(alt, assembled.labels)
    replacement: str | None = None
    if alt.callback is not None:
        field = _callback_cap_field(alt, alt.callback, dialect, numbering)
        repl_len = 0
    else:
        assert alt.cap is not None  # every replacement form carries a capability
        field = cap_number(alt.cap, numbering, where)
        replacement = replacement_key(alt.index)
        repl_len = len(assembled.results[replacement].code)
        check_lengths(site_len, repl_len, where, alt.end_line)
    if site_len > 0xFF:
        raise BuildError("BUILD_MACRO", f"site of {site_len} bytes does not fit the u8 "
                         "length field", location=where)
    return EntryFields(site, site_len, field, repl_len, alt.callback, replacement)


def raw_cap_field(raw: RawAltEntry, numbering: CapNumbering, where: Location) -> int:
    """The capability field of a hand-written entry (its cap, plus bit 15 if asked)."""
    field = cap_number(raw.cap, numbering, where)
    return field | CB_BIT if raw.cb_bit else field


__all__ = [
    "EntryFields",
    "cap_number",
    "check_lengths",
    "entry_fields",
    "raw_cap_field",
    "require_callback",
]
