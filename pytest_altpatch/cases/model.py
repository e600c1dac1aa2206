"""Frozen models of catalogs and cases, with every reference resolved.

These are the values the rest of the pipeline consumes: the image builder reads
``Case.image`` and ``Case.payloads``, the scenarios read ``Case.platform`` and the
catalog, the judge reads ``Case.expect``.  Nothing here knows YAML; the loader builds
these objects and records where each came from (``Case.locations``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from pytest_altpatch.dialects import (
    CB_BIT,
    DEFAULT_DIALECT,
    DIALECTS,
    CallbackMarking,
    Dialect,
    preferred_dialect,
)
from pytest_altpatch.errors import Location

Scope = Literal["local-cpu-erratum", "system-feature", "boot-cpu", "weak-local"]
SCOPES: Final[tuple[Scope, ...]] = ("local-cpu-erratum", "system-feature", "boot-cpu", "weak-local")

Mode = Literal["boot", "late"]


#: The ID registers a CPU instance carries values for (lower-case, as in
#: ``Feature.register``); the machine serves these to MRS, others read as zero.
ID_REGISTERS: Final[tuple[str, ...]] = (
    "id_aa64pfr0_el1",
    "id_aa64pfr1_el1",
    "id_aa64dfr0_el1",
    "id_aa64isar0_el1",
    "id_aa64isar1_el1",
    "id_aa64isar2_el1",
    "id_aa64mmfr0_el1",
    "id_aa64mmfr1_el1",
    "id_aa64mmfr2_el1",
    "id_aa64zfr0_el1",
)

ExpectPhase = Literal["load", "build", "boot", "late", "hotplug"]

# MIDR_EL1 fields (Arm ARM D19.2): implementer [31:24], variant [23:20],
# architecture [19:16], part number [15:4], revision [3:0].
MIDR_IMPLEMENTER_MASK: Final = 0xFF << 24
MIDR_VARIANT_MASK: Final = 0xF << 20
MIDR_ARCHITECTURE_MASK: Final = 0xF << 16
MIDR_PARTNUM_MASK: Final = 0xFFF << 4
MIDR_REVISION_MASK: Final = 0xF
MIDR_MODEL_MASK: Final = MIDR_IMPLEMENTER_MASK | MIDR_ARCHITECTURE_MASK | MIDR_PARTNUM_MASK
MIDR_RV_MASK: Final = MIDR_VARIANT_MASK | MIDR_REVISION_MASK


def _frozen(mapping: Mapping[str, object] | None = None) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping or {}))


def midr_model(implementer: int, part: int, architecture: int = 0xF) -> int:
    """The MIDR value of a CPU model with variant and revision zero."""
    return (implementer << 24) | (architecture << 16) | (part << 4)


def ctr_dminline_bytes(ctr: int) -> int:
    """Smallest D-cache line in bytes from a CTR_EL0 value (DminLine, bits [19:16])."""
    return 4 << ((ctr >> 16) & 0xF)


def ctr_iminline_bytes(ctr: int) -> int:
    """Smallest I-cache line in bytes from a CTR_EL0 value (IminLine, bits [3:0])."""
    return 4 << (ctr & 0xF)


def midr_rv(variant: int, revision: int) -> int:
    """The variant/revision part of a MIDR (``rNpM`` -> ``N << 20 | M``)."""
    return (variant << 20) | revision


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class RevidrFix:
    """A revision that is not affected when REVIDR_EL1 has any bit of ``revidr_mask``."""

    rv: int
    revidr_mask: int


@dataclass(frozen=True)
class MidrRange:
    """CPUs whose ``midr & model_mask == model`` and whose variant/revision is in range.

    Both ends are inclusive and compare ``variant << 20 | revision``, so r0p15 < r1p0.
    ``model_mask`` is narrower than :data:`MIDR_MODEL_MASK` for part-family matches
    (Qualcomm Kryo: any part 0x2XX).
    """

    model: int
    rv_min: int = 0
    rv_max: int = MIDR_RV_MASK
    model_mask: int = MIDR_MODEL_MASK
    fixed: tuple[RevidrFix, ...] = ()

    def contains(self, midr: int, revidr: int = 0) -> bool:
        """Whether a CPU reading ``midr``/``revidr`` is in this range and not fixed."""
        if midr & self.model_mask != self.model & self.model_mask:
            return False
        rv = midr & MIDR_RV_MASK
        if not self.rv_min <= rv <= self.rv_max:
            return False
        return not any(fix.rv == rv and revidr & fix.revidr_mask for fix in self.fixed)


@dataclass(frozen=True)
class CpuModel:
    """A real CPU core from the catalog (``cortex-a53``)."""

    name: str
    display_name: str
    implementer: int
    part: int
    ctr: int
    id_regs: Mapping[str, int] = field(default_factory=_frozen)  # type: ignore[arg-type]
    architecture: int = 0xF
    refs: tuple[str, ...] = ()

    @property
    def midr_model(self) -> int:
        """MIDR with variant and revision zero."""
        return midr_model(self.implementer, self.part, self.architecture)


@dataclass(frozen=True)
class Erratum:
    """An erratum (or MIDR-matched workaround) and the capability it turns on."""

    id: str
    title: str
    capability: str
    scope: Scope
    matches: tuple[MidrRange, ...]
    #: A late CPU may lack the capability the system has (Linux OPTIONAL_FOR_LATE_CPU).
    optional_for_late_cpu: bool = True
    #: A late CPU may have the capability the system lacks (Linux PERMITTED_FOR_LATE_CPU).
    permitted_for_late_cpu: bool = False
    #: Which kernels' tables list it: any of "linux", "xen".
    tables: tuple[str, ...] = ("linux",)
    refs: tuple[str, ...] = ()

    def affects(self, midr: int, revidr: int = 0) -> bool:
        """Whether a CPU reading ``midr``/``revidr`` matches any entry."""
        return any(entry.contains(midr, revidr) for entry in self.matches)


@dataclass(frozen=True)
class Feature:
    """A capability decided by an ID register field over all early CPUs (lower-safe)."""

    id: str
    title: str
    capability: str
    register: str  # lower-case system register name, e.g. "id_aa64isar0_el1"
    shift: int
    min_value: int
    width: int = 4
    signed: bool = False
    scope: Scope = "system-feature"
    optional_for_late_cpu: bool = False
    permitted_for_late_cpu: bool = True
    refs: tuple[str, ...] = ()

    def field_value(self, register_value: int) -> int:
        """Extract this feature's field, sign-extended when the field is signed."""
        raw = (register_value >> self.shift) & ((1 << self.width) - 1)
        if self.signed and raw >> (self.width - 1):
            raw -= 1 << self.width
        return raw

    def present(self, register_value: int) -> bool:
        """Whether one CPU's register value meets the minimum."""
        return self.field_value(register_value) >= self.min_value


@dataclass(frozen=True)
class CapNumbering:
    """How one dialect numbers capabilities, and its NCAPS."""

    dialect: Dialect
    ncaps: int
    numbers: Mapping[str, int]
    note: str = ""
    #: Catalog capability name -> this dialect's own name for it (Xen: ARM_HAS_SB).
    aliases: Mapping[str, str] = field(default_factory=_frozen)  # type: ignore[arg-type]
    #: "none": no callbacks; "ncaps": cap field == ncaps; "bit15": bit 15 | real cap.
    callback_marking: CallbackMarking = "ncaps"
    #: Whether a callback is applied only when its capability is on (linux-6.1, strict).
    callbacks_conditional: bool = False

    def number(self, capability: str) -> int | None:
        """The capability's number in this dialect, or None if it has none."""
        found = self.numbers.get(capability)
        if found is None and capability in self.aliases:
            found = self.numbers.get(self.aliases[capability])
        return found

    def name(self, number: int) -> str | None:
        """The capability name for ``number``, or None."""
        for cap_name, cap_number in self.numbers.items():
            if cap_number == number:
                return cap_name
        return None


@dataclass(frozen=True)
class Catalog:
    """CPUs, errata, features and per-dialect capability numberings."""

    cpus: Mapping[str, CpuModel]
    errata: Mapping[str, Erratum]
    features: Mapping[str, Feature]
    numberings: Mapping[str, CapNumbering]
    #: Names a case may list under ``requires`` (the corpus feature registry).
    patcher_features: Mapping[str, str] = field(default_factory=_frozen)  # type: ignore[arg-type]
    #: Callback names a table entry or macro may use, with their one-line meaning.
    callbacks: Mapping[str, str] = field(default_factory=_frozen)  # type: ignore[arg-type]

    def capabilities(self) -> tuple[str, ...]:
        """Every capability name the catalog can turn on, sorted."""
        names = {e.capability for e in self.errata.values()}
        names |= {f.capability for f in self.features.values()}
        return tuple(sorted(names))


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class CpuInstance:
    """One CPU of a platform, with the register values its guest code will read."""

    label: str  # as written: "cortex-a57/r1p2", "inline"
    model: str | None  # catalog name, None for inline CPUs
    midr: int
    revidr: int
    ctr: int
    id_regs: Mapping[str, int]
    location: Location = field(default_factory=Location)

    @property
    def dminline_bytes(self) -> int:
        """Smallest D-cache line in bytes (CTR_EL0.DminLine, bits [19:16])."""
        return ctr_dminline_bytes(self.ctr)

    @property
    def iminline_bytes(self) -> int:
        """Smallest I-cache line in bytes (CTR_EL0.IminLine, bits [3:0])."""
        return ctr_iminline_bytes(self.ctr)

    def register_value(self, register: str) -> int:
        """The value this CPU reads from ``register`` (``ctr_el0``, ``midr_el1``,
        ``revidr_el1`` or an ID register; unknown ID registers read as zero)."""
        fixed = {"ctr_el0": self.ctr, "midr_el1": self.midr, "revidr_el1": self.revidr}
        if register in fixed:
            return fixed[register]
        return self.id_regs.get(register, 0)


@dataclass(frozen=True)
class ExtraCap:
    """A case-specific capability: forced on/off, or tied to a catalog erratum/feature."""

    name: str
    when: Literal["always", "never"] | None = None
    erratum: str | None = None
    feature: str | None = None
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class RawAltEntry:
    """One hand-written ``.altinstructions`` entry for negative cases.

    ``site`` and ``replacement`` are label expressions (``label``, ``label+8``) or
    absolute addresses; ``cap`` is a capability name or a raw number (which may be
    >= NCAPS on purpose); ``callback`` names a registry callback instead of code.
    """

    site: str | int
    replacement: str | int | None
    cap: str | int
    site_len: int
    repl_len: int
    callback: str | None = None
    cb_bit: bool = False  # set bit 15 of the cap field (linux-6.1 callback marking)
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class SourceBlock:
    """Assembly text from a case, with the file line its first line sits on."""

    text: str
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class ImageSpec:
    """The base image of a case."""

    text: SourceBlock
    data: SourceBlock | None = None
    rodata: SourceBlock | None = None
    alt_table: tuple[RawAltEntry, ...] | None = None


@dataclass(frozen=True)
class FunctionReplacement:
    """A livepatch function: ``old`` in the base image is redirected to ``new``."""

    old: str
    new: str | None  # None: NOP the old function out
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class PayloadSpec:
    """A late-loaded payload (livepatch/xSplice) built as a relocatable object."""

    name: str
    text: SourceBlock
    data: SourceBlock | None = None
    replaces: tuple[FunctionReplacement, ...] = ()
    expect_old: Mapping[str, str] = field(default_factory=_frozen)  # type: ignore[arg-type]
    location: Location = field(default_factory=Location)
    #: Hand-written ``.altinstructions`` entries appended after the macro entries (for
    #: negative cases: sites outside the payload text, misplaced replacements, ...).
    alt_table: tuple[RawAltEntry, ...] | None = None
    #: Extra zero bytes at the end of ``.altinstructions`` (a size not a multiple of 12).
    alt_table_trailing_bytes: int = 0


@dataclass(frozen=True)
class ProbeSpec:
    """Call a guest function on some CPUs after patching and check registers."""

    call: str
    cpus: Literal["all"] | tuple[int, ...]
    args: Mapping[str, int]
    result: Mapping[str, int]  # empty for a probe expected to fault
    location: Location = field(default_factory=Location)
    #: A finding code the call must raise (``ro-write``) instead of giving a result.
    fault: str | None = None


@dataclass(frozen=True)
class ErrorExpectation:
    """A negative case: this error code, in this phase."""

    code: str
    phase: ExpectPhase
    location: Location = field(default_factory=Location)
    #: Further (code, phase) pairs the case also allows (``any_of``).
    alternatives: tuple[tuple[str, ExpectPhase], ...] = ()

    @property
    def choices(self) -> tuple[tuple[str, ExpectPhase], ...]:
        """Every (code, phase) the case allows, the first one first."""
        return ((self.code, self.phase), *self.alternatives)


@dataclass(frozen=True)
class StreamExpectation:
    """The instruction stream expected at a label after patching."""

    label: str
    asm: str
    location: Location = field(default_factory=Location)
    #: Further streams the case also allows (``any_of``: the architecture permits each).
    alternatives: tuple[str, ...] = ()

    @property
    def choices(self) -> tuple[str, ...]:
        """Every allowed stream, the first one first."""
        return (self.asm, *self.alternatives)


@dataclass(frozen=True)
class PhaseExpectation:
    """What must hold after one phase (boot, payload load, apply, revert)."""

    caps: tuple[str, ...] | None = None  # exactly this set, when given
    text: tuple[StreamExpectation, ...] = ()
    probes: tuple[ProbeSpec, ...] = ()
    findings: tuple[str, ...] = ()  # codes the case expects; anything else fails
    error: ErrorExpectation | None = None
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class LateExpectation:
    """Late patching: after the payload's alternatives, after apply, after revert."""

    load: PhaseExpectation | None = None
    apply: PhaseExpectation | None = None
    revert: PhaseExpectation | None = None
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class HotplugExpectation:
    """The verdict for one hot-plugged CPU."""

    cpu: int  # CPU number (INTERPRETING §2): len(platform) + index into Case.late_cpus
    verdict: Literal["accepted", "refused"]
    code: str | None = None
    location: Location = field(default_factory=Location)
    #: Further refusal codes the case also allows (``code: {any_of: [...]}``).
    alternatives: tuple[str, ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        """Every allowed refusal code (empty for an accepted CPU)."""
        return (self.code, *self.alternatives) if self.code is not None else ()


@dataclass(frozen=True)
class Expectations:
    """Everything a case expects, per phase."""

    boot: PhaseExpectation | None = None
    late: LateExpectation | None = None
    hotplug: tuple[HotplugExpectation, ...] = ()
    #: A negative case whose error comes before boot (load or build phase).
    error: ErrorExpectation | None = None
    #: The machine after the boot-CPU pass, before the secondaries start (two-pass).
    boot_cpu: PhaseExpectation | None = None


#: Default distance from the base text to the payload window (8 MiB).
DEFAULT_PAYLOAD_OFFSET: Final = 0x0080_0000


@dataclass(frozen=True)
class BootOptions:
    """Boot-time switches of the emulated kernel."""

    #: Xen: park secondaries whose MIDR differs from the boot CPU unless hmp-unsafe.
    hmp_unsafe: bool = True
    #: Xen: park secondaries whose D-cache line size differs from the boot CPU.
    park_dcache_mismatch: bool = False
    #: SMCCC conduit the firmware reports; ``arm64_update_smccc_conduit`` writes
    #: ``HVC #0`` or ``SMC #0`` accordingly.
    smccc_conduit: Literal["hvc", "smc"] = "hvc"
    #: Distance from the base text to the livepatch payload window (Xen places
    #: payloads a few MiB away so a single B reaches them).
    payload_offset: int = DEFAULT_PAYLOAD_OFFSET


@dataclass(frozen=True)
class Case:
    """One conformance case, fully resolved against the catalog."""

    path: str
    id: str
    title: str
    refs: tuple[str, ...]
    requires: tuple[str, ...]
    dialects: tuple[Dialect, ...]
    platform: tuple[CpuInstance, ...]
    image: ImageSpec
    expect: Expectations
    late_cpus: tuple[CpuInstance, ...] = ()
    caps: tuple[ExtraCap, ...] = ()
    payloads: tuple[PayloadSpec, ...] = ()
    options: BootOptions = field(default_factory=BootOptions)
    location: Location = field(default_factory=Location)
    #: JSON path (``expect.boot.text.fn``) -> where it is in the file.
    locations: Mapping[str, Location] = field(default_factory=_frozen)  # type: ignore[arg-type]

    def location_of(self, json_path: str) -> Location:
        """The file location of ``json_path``, falling back to its nearest parent."""
        path = json_path
        while path:
            found = self.locations.get(path)
            if found is not None:
                return found
            path = path.rpartition(".")[0]
        return self.location


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus: version, catalog and cases sorted by id."""

    root: str
    version: str
    catalog: Catalog
    cases: tuple[Case, ...]


__all__ = [
    "CB_BIT",
    "DEFAULT_DIALECT",
    "DIALECTS",
    "ID_REGISTERS",
    "MIDR_MODEL_MASK",
    "MIDR_RV_MASK",
    "SCOPES",
    "BootOptions",
    "CallbackMarking",
    "CapNumbering",
    "Case",
    "Catalog",
    "Corpus",
    "CpuInstance",
    "CpuModel",
    "Dialect",
    "Erratum",
    "ErrorExpectation",
    "ExpectPhase",
    "Expectations",
    "ExtraCap",
    "Feature",
    "FunctionReplacement",
    "HotplugExpectation",
    "ImageSpec",
    "LateExpectation",
    "MidrRange",
    "Mode",
    "PayloadSpec",
    "PhaseExpectation",
    "ProbeSpec",
    "RawAltEntry",
    "RevidrFix",
    "Scope",
    "SourceBlock",
    "StreamExpectation",
    "ctr_dminline_bytes",
    "ctr_iminline_bytes",
    "midr_model",
    "midr_rv",
    "preferred_dialect",
]
