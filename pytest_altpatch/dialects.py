"""The dialects: one row per kernel flavour, with every trait the code asks about.

A dialect is the set of rules one family of real patchers follows (Linux 4.6, 4.9 and
6.1 arm64, Xen 4.17 arm64, and ``strict``, the rules a careful patcher would follow).
Every module that needs to know how a dialect behaves asks its :class:`DialectTraits`
row through :func:`traits`; nothing else compares a dialect's name.

The facts and where they come from are in ``corpus/INTERPRETING.md`` (§4 dialects) and
the references it cites.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Dialect = Literal["linux-4.6", "linux-4.9", "linux-6.1", "xen-4.17", "strict"]
DIALECTS: Final[tuple[Dialect, ...]] = ("linux-4.6", "linux-4.9", "linux-6.1", "xen-4.17", "strict")
#: The dialect a command runs when none is asked for and the case allows it.
DEFAULT_DIALECT: Final[Dialect] = "linux-6.1"

#: Whose rules detection, hot-plug and late patching follow.
Semantics = Literal["linux", "xen"]
#: How a dialect marks a callback entry in the table's capability field.
CallbackMarking = Literal["none", "ncaps", "bit15"]
#: The maintenance sequence after a patch (Linux <= 6.0 cleans each line and then
#: invalidates the range, 6.1 cleans to PoU and invalidates all, Xen cleans the alias).
Maintenance = Literal["civac-then-ialluis", "flush-icache-range", "xen"]
#: Where D/I line sizes come from: the sanitised system minimum, or CPU0's own CTR_EL0.
LineSource = Literal["sanitised", "own"]
#: What a re-target out of the instruction's range does: truncate the field (as the
#: kernels' encoders do) or refuse the block.
OutOfRange = Literal["truncate", "error"]
#: Replacements in a separate ``.altinstr_replacement`` section (Xen, Linux <= 5.7) or a
#: subsection after the site's own text (Linux >= 5.8).
ReplacementPlacement = Literal["section", "subsection"]
#: The late patching path: Xen's livepatch payloads or Linux's module loader.
LateMode = Literal["livepatch", "modules"]

#: Bit 15 of the table's capability field marks a callback in ``bit15`` dialects.
CB_BIT: Final = 1 << 15


@dataclass(frozen=True)
class DialectTraits:
    """Everything that differs between dialects (one row of :data:`DIALECT_TABLE`)."""

    name: Dialect
    semantics: Semantics
    #: The catalog capability numberings this dialect reads, in order of preference
    #: (``strict`` has its own, and numbers as linux-6.1 in a catalog without it).
    numberings: tuple[str, ...]
    callbacks: CallbackMarking
    #: Whether a callback entry may still be conditional on a capability (bit-15 style).
    conditional_callbacks: bool
    #: Whether ADRP in a replacement is re-targeted when copied.
    adrp_reloc: bool
    #: Whether a PC-relative literal load in a replacement is refused.
    refuse_literals: bool
    #: With ``refuse_literals``: whether SIMD&FP literal loads (V = 1) are refused too.
    #: Linux's literal check does not match them, so its dialects copy them unchanged.
    refuse_simd_fp_literals: bool
    #: Whether boot patches the boot CPU's own alternatives first, the rest after.
    two_pass: bool
    maintenance: Maintenance
    line_source: LineSource
    out_of_range: OutOfRange
    placement: ReplacementPlacement
    late_mode: LateMode
    #: Where text is linked.  Xen <= 4.17 links arm64 Xen at 2 MiB; the Linux dialects
    #: use an address with bit 39 set (a kernel-like image high in the VA space, so
    #: address truncation bugs show); ``strict`` sits just below the 2**40 limit.
    text_base: int
    #: Features (corpus/catalog/patcher-features.yaml) the dialect's patchers support.
    features: frozenset[str]

    def numbering_in(self, available: Collection[str]) -> str:
        """The first of this dialect's numberings that ``available`` has (else the
        dialect's own name, for the caller's error to name)."""
        return next((n for n in self.numberings if n in available), self.name)

    @property
    def is_xen(self) -> bool:
        """Whether detection, hot-plug and late patching follow Xen's rules."""
        return self.semantics == "xen"


_COMMON: Final = frozenset({
    "boot-alternatives", "branch-reloc", "length-check", "write-alias", "smp-rendezvous",
    "late-alternatives", "hotplug", "cpu-detection", "late-cpu-check",
})
_LINUX_4_9: Final = _COMMON | {"adrp-reloc", "literal-refusal", "callbacks", "ncaps-callbacks"}
_LINUX_6_1: Final = _COMMON | {"adrp-reloc", "literal-refusal", "callbacks", "cap-callbacks",
                               "two-pass"}
_LINUX_BASE: Final = 0x0000_0080_0008_0000

DIALECT_TABLE: Final[Mapping[Dialect, DialectTraits]] = MappingProxyType({
    "linux-4.6": DialectTraits(
        "linux-4.6", semantics="linux", numberings=("linux-4.6",), callbacks="none",
        conditional_callbacks=False, adrp_reloc=False, refuse_literals=False,
        refuse_simd_fp_literals=False, two_pass=False, maintenance="flush-icache-range",
        line_source="own", out_of_range="truncate", placement="section",
        late_mode="modules", text_base=_LINUX_BASE, features=_COMMON,
    ),
    "linux-4.9": DialectTraits(
        "linux-4.9", semantics="linux", numberings=("linux-4.9",), callbacks="ncaps",
        conditional_callbacks=False, adrp_reloc=True, refuse_literals=True,
        refuse_simd_fp_literals=False, two_pass=False, maintenance="flush-icache-range",
        line_source="sanitised", out_of_range="truncate", placement="section",
        late_mode="modules", text_base=_LINUX_BASE, features=_LINUX_4_9,
    ),
    "linux-6.1": DialectTraits(
        "linux-6.1", semantics="linux", numberings=("linux-6.1",), callbacks="bit15",
        conditional_callbacks=True, adrp_reloc=True, refuse_literals=True,
        refuse_simd_fp_literals=False, two_pass=True, maintenance="civac-then-ialluis",
        line_source="sanitised", out_of_range="truncate", placement="subsection",
        late_mode="modules", text_base=_LINUX_BASE, features=_LINUX_6_1,
    ),
    "xen-4.17": DialectTraits(
        "xen-4.17", semantics="xen", numberings=("xen-4.17",), callbacks="ncaps",
        conditional_callbacks=False, adrp_reloc=False, refuse_literals=False,
        refuse_simd_fp_literals=False, two_pass=False, maintenance="xen",
        line_source="own", out_of_range="truncate", placement="section",
        late_mode="livepatch", text_base=0x0000_0000_0020_0000,
        features=_COMMON | {"callbacks", "ncaps-callbacks", "livepatch", "payload-validation"},
    ),
    "strict": DialectTraits(
        "strict", semantics="linux", numberings=("strict", "linux-6.1"), callbacks="bit15",
        conditional_callbacks=True, adrp_reloc=True, refuse_literals=True,
        refuse_simd_fp_literals=True, two_pass=True, maintenance="civac-then-ialluis",
        line_source="sanitised", out_of_range="error", placement="subsection",
        late_mode="modules", text_base=0x0000_00FF_F000_0000,
        features=_LINUX_6_1 | {"strict-ranges"},
    ),
})


def traits(dialect: str) -> DialectTraits:
    """The row of ``dialect`` (raises KeyError naming the known dialects if unknown)."""
    try:
        return DIALECT_TABLE[dialect]  # type: ignore[index]
    except KeyError:
        raise KeyError(f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})") from None


def is_dialect(name: str) -> bool:
    """Whether ``name`` is one of :data:`DIALECTS`."""
    return name in DIALECT_TABLE


def preferred_dialect(dialects: Sequence[Dialect]) -> Dialect:
    """The one dialect ``show`` and ``build`` use for a case written for ``dialects``:
    the default dialect if listed, else the first listed."""
    return DEFAULT_DIALECT if DEFAULT_DIALECT in dialects else dialects[0]


__all__ = [
    "CB_BIT", "DEFAULT_DIALECT", "DIALECTS", "DIALECT_TABLE", "CallbackMarking", "Dialect",
    "DialectTraits", "LateMode", "LineSource", "Maintenance", "OutOfRange",
    "ReplacementPlacement", "Semantics", "is_dialect", "preferred_dialect", "traits",
]
