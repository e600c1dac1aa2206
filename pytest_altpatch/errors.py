"""The one exception family every user-caused error belongs to.

Each error carries a stable string ``code`` (from :data:`ERROR_CODES`), a human
message, the ``phase`` of the pipeline it belongs to, and a :class:`Location` that
says where the problem is: ``file:line:column`` and a JSON path for specs, site
index and address for images, section/offset/symbol for ELF files.  Codes are part
of the public contract (cases name them in ``expect.error``); messages are for
people and may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Phase = Literal["load", "build", "boot", "late", "hotplug", "internal"]

PHASES: Final[tuple[Phase, ...]] = ("load", "build", "boot", "late", "hotplug")

#: Every error code the project can raise, with its one-line meaning.  Adding a code
#: is a compatible change; renaming or removing one is a breaking change of the corpus.
ERROR_CODES: Final[Mapping[str, str]] = {
    # --- corpus and case files (phase: load) ---
    "SPEC_IO": "a case or catalog file cannot be read",
    "SPEC_SYNTAX": "the file is not valid YAML",
    "SPEC_SCHEMA": "the document does not match the JSON schema",
    "SPEC_DUPLICATE_KEY": "a mapping repeats a key",
    "SPEC_DUPLICATE_ID": "two cases share one id",
    "SPEC_UNKNOWN_CPU": "a platform names a CPU the catalog does not know",
    "SPEC_UNKNOWN_ERRATUM": "a name refers to an erratum the catalog does not know",
    "SPEC_UNKNOWN_FEATURE": "a name refers to a feature the registry does not know",
    "SPEC_UNKNOWN_CAP": "a capability name is not known to the catalog or the case",
    "SPEC_UNKNOWN_DIALECT": "a dialect name is not one of the known dialects",
    "SPEC_BAD_RANGE": "a MIDR range, revision or numeric field is out of its range",
    "SPEC_BAD_REFERENCE": "a reference inside the case points at nothing",
    "SPEC_VERSION": "the corpus or case format is newer than this plugin understands",
    "SPEC_BAD_PLATFORM": "a platform item (CPU reference or inline CPU) cannot be parsed",
    "SPEC_UNKNOWN_CODE": "a case names an error or finding code that is not registered",
    "SPEC_DIALECT_MISMATCH": "a catalog numbering restates a dialect rule the table contradicts",
    # --- the assembler (phase: build) ---
    "ASM_SYNTAX": "a source line cannot be parsed",
    "ASM_UNDEFINED_SYMBOL": "a source line uses a symbol that is not defined",
    "ASM_DUPLICATE_LABEL": "a label is defined twice",
    "ASM_OUT_OF_RANGE": "an operand or PC-relative target does not fit its field",
    "ASM_UNSUPPORTED": "an instruction or directive the assembler does not support",
    # --- instruction fields ---
    "BRANCH_OUT_OF_RANGE": "a branch target does not fit the branch's immediate field",
    "ADR_OUT_OF_RANGE": "an ADR target is more than 1 MiB away",
    "ADRP_OUT_OF_RANGE": "an ADRP target page is more than 4 GiB away",
    "LITERAL_OUT_OF_RANGE": "a literal load target is more than 1 MiB away",
    "MISALIGNED_TARGET": "a PC-relative target is not aligned as the field requires",
    "NOT_PC_RELATIVE": "the word is not a PC-relative instruction",
    "NOT_IMMEDIATE_FORM": "the word has no immediate field of the requested kind",
    # --- building an image (phase: build) ---
    "BUILD_LENGTH_MISMATCH": "an alternative's site and replacement differ in length",
    "BUILD_MACRO": "alternative macros are unbalanced or malformed",
    "BUILD_UNKNOWN_CALLBACK": "an alternative names a callback not in the registry",
    "BUILD_UNKNOWN_CAP": "an alternative names a capability the dialect does not number",
    "BUILD_LAYOUT": "sections overlap or do not fit the address space",
    "BUILD_ALT_ENTRY": "a hand-written alternatives table entry cannot be encoded",
    # --- ELF files and relocations (phase: build or late) ---
    "ELF_MALFORMED": "the ELF file is truncated or inconsistent",
    "ELF_WRONG_MACHINE": "the ELF file is not 64-bit little-endian AArch64",
    "ELF_NO_ALT_TABLE": "no alternatives table was found in the ELF file",
    "RELOC_UNSUPPORTED": "a relocation type is not supported",
    "RELOC_OUT_OF_RANGE": "a relocated value does not fit its field",
    "RELOC_UNDEFINED_SYMBOL": "a relocation refers to a symbol defined nowhere",
    # --- patching (phase: boot or late) ---
    "LENGTH_MISMATCH": "an alternative's site and replacement lengths differ",
    "CALLBACK_LENGTH": "a callback alternative has a non-zero replacement length",
    "LITERAL_IN_REPLACEMENT": "a replacement uses a PC-relative literal the dialect refuses",
    "CALLBACK_NOT_IN_TEXT": "a callback does not live in the base image's text",
    "PATCHER_UNKNOWN": "the named patcher cannot be found or loaded",
    "PATCHER_RAISED": "the patcher raised an exception",
    "PATCHER_UNSUPPORTED": "the patcher does not support what the case needs",
    # --- late patching: payload load and apply (phase: late) ---
    "ALT_TABLE_SIZE": "the payload's .altinstructions size is not a multiple of 12",
    "ORIG_OUT_OF_REGION": "a payload alternative's site lies outside the payload text",
    "REPL_OUT_OF_REGION": "a payload replacement lies outside .altinstr_replacement",
    "NO_TEXT": "a payload has alternatives but no text section",
    "NO_REPLACEMENT_SECTION": "a payload has alternatives but no .altinstr_replacement",
    "EXPECTATION_FAILED": "a function's old bytes are not what the payload expects",
    # --- the emulated machine (raised to the caller that configures it) ---
    "MACHINE_CONFIG": "a machine or CPU configuration value is invalid",
    "MACHINE_SCHEDULE": "a schedule name cannot be parsed",
    "MACHINE_MAPPING": "a mapping request overlaps, is misaligned or is out of range",
    "MACHINE_STATE": "a machine operation is not valid in the CPU's current state",
    # --- hot-plugged CPUs (phase: hotplug) ---
    "LATE_CPU_ERRATUM": "a late CPU needs an erratum workaround the system did not enable",
    "LATE_CPU_MISSING_FEATURE": "a late CPU lacks a system feature that is enabled",
    "LATE_CPU_MIDR_MISMATCH": "a late CPU's MIDR differs from the boot CPU's (Xen)",
    "LATE_CPU_CACHE_LINE": "a late CPU's D-cache line size differs from the boot CPU's (Xen)",
    # --- native patchers (ABI v1; phase: load, or the phase of the entry) ---
    "NATIVE_MANIFEST": "a native patcher manifest is unreadable or malformed",
    "NATIVE_OBJECT": "a native patcher object cannot be read, assembled or linked",
    "NATIVE_UNDEFINED_SYMBOL": "native patcher objects use symbols nothing defines or binds",
    "NATIVE_ENTRY": "a native patcher entry is missing or returned an unregistered error",
    # --- shipped kernel images and their target profiles (phase: build) ---
    "PROFILE_UNKNOWN": "no target profile has that name (and no such profile file exists)",
    "PROFILE_INVALID": "a target profile file is malformed (version, field or value)",
    "IMAGE_MISSING_SYMBOL": "a kernel image lacks a symbol its target profile names",
    "IMAGE_UNAVAILABLE": "a shipped kernel image cannot be had (download or unpacking failed)",
    # --- choosing a patcher (phase: load) ---
    "PATCHER_DIALECT": "a dialect asked for is unknown, or not one the patcher implements",
    # --- patcher entries ---
    "PATCHER_BAD_RESULT": "a patcher entry returned a value of the wrong kind",
    # --- supervised workers (phase: boot or late) ---
    "PATCHER_TIMEOUT": "the item's worker ran past the host timeout and was killed",
    "PATCHER_DIED": "the item's worker died from a signal (or its server went away)",
    "PATCHER_EXITED": "the item's worker exited, or the patcher raised SystemExit or "
                      "KeyboardInterrupt, before an outcome was made",
    # --- bounded inputs (phase: load) ---
    "SPEC_TAG": "a YAML tag outside the safe core schema, or a tagged value it cannot hold",
    "SPEC_CHARACTER": "a string holds a surrogate or control character",
    "SPEC_SCHEMA_REF": "a JSON schema $ref points outside the corpus's schema/ directory",
    "SPEC_SCHEMA_PATTERN": "a JSON schema pattern is invalid or could backtrack without bound",
}


@dataclass(frozen=True)
class Location:
    """Where an error is: any subset of the fields may be known."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    json_path: str | None = None
    site: int | None = None
    address: int | None = None
    section: str | None = None
    offset: int | None = None
    symbol: str | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            head = self.file
            if self.line is not None:
                head += f":{self.line}"
                if self.column is not None:
                    head += f":{self.column}"
            parts.append(head)
        elif self.line is not None:
            parts.append(f"line {self.line}" + (f":{self.column}" if self.column else ""))
        if self.json_path:
            parts.append(f"at {self.json_path}")
        if self.site is not None:
            parts.append(f"site #{self.site}")
        if self.address is not None:
            parts.append(f"address {self.address:#x}")
        if self.section is not None:
            parts.append(f"section {self.section}")
        if self.offset is not None:
            parts.append(f"offset {self.offset:#x}")
        if self.symbol is not None:
            parts.append(f"symbol {self.symbol}")
        return ", ".join(parts)

    def merged(self, outer: Location) -> Location:
        """Fill this location's unknown fields from ``outer`` (e.g. a case file)."""
        values = {
            name: getattr(self, name) if getattr(self, name) is not None else getattr(outer, name)
            for name in self.__dataclass_fields__
        }
        return Location(**values)


@dataclass(frozen=True)
class ErrorInfo:
    """A plain-data view of an :class:`AltpatchError`, for outcomes and JSON reports."""

    code: str
    message: str
    phase: str
    location: Location = field(default_factory=Location)
    hint: str | None = None


class AltpatchError(Exception):
    """Base of every error a user can cause; ``code`` is stable, ``message`` is prose."""

    default_phase: Phase = "internal"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        location: Location | None = None,
        phase: Phase | None = None,
        hint: str | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unregistered error code {code!r}")
        self.code = code
        self.message = message
        self.location = location if location is not None else Location()
        self.phase: Phase = phase if phase is not None else self.default_phase
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """One line for people: ``location: CODE: message (hint)``."""
        where = str(self.location)
        text = f"{self.code}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return f"{where}: {text}" if where else text

    def relocated(self, outer: Location) -> AltpatchError:
        """Return a copy whose location is completed from ``outer``."""
        clone = type(self)(
            self.code,
            self.message,
            location=self.location.merged(outer),
            phase=self.phase,
            hint=self.hint,
        )
        return clone

    def with_phase(self, phase: Phase) -> AltpatchError:
        """Return a copy attributed to ``phase`` (e.g. an ELF error during late load)."""
        return type(self)(
            self.code, self.message, location=self.location, phase=phase, hint=self.hint
        )

    def info(self) -> ErrorInfo:
        """The error as plain data."""
        return ErrorInfo(self.code, self.message, self.phase, self.location, self.hint)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments need an explicit recipe to survive pickling (xdist).
        return (_rebuild, (type(self), self.code, self.message, self.location, self.phase,
                           self.hint))


def _rebuild(
    cls: type[AltpatchError],
    code: str,
    message: str,
    location: Location,
    phase: Phase,
    hint: str | None,
) -> AltpatchError:
    return cls(code, message, location=location, phase=phase, hint=hint)


class SpecError(AltpatchError):
    """A case, catalog or corpus file is wrong."""

    default_phase: Phase = "load"


class AsmError(AltpatchError):
    """Assembly source is wrong (syntax, symbols, ranges, unsupported forms)."""

    default_phase: Phase = "build"


class EncodingError(AltpatchError):
    """An instruction field cannot hold the requested value."""

    default_phase: Phase = "build"


class BuildError(AltpatchError):
    """A case cannot be laid out as an image."""

    default_phase: Phase = "build"


class ElfError(AltpatchError):
    """An ELF file is unreadable, foreign, or cannot be relocated."""

    default_phase: Phase = "build"


class NativeError(AltpatchError):
    """A native patcher cannot be loaded or linked (manifest, objects, symbols)."""

    default_phase: Phase = "load"


class PatchError(AltpatchError):
    """A patcher refused or failed to patch (reported with site index and address)."""

    default_phase: Phase = "boot"


class KernelError(AltpatchError):
    """A shipped kernel image or its target profile cannot be used as asked."""

    default_phase: Phase = "build"


__all__ = [
    "ERROR_CODES",
    "PHASES",
    "AltpatchError",
    "AsmError",
    "BuildError",
    "ElfError",
    "EncodingError",
    "ErrorInfo",
    "KernelError",
    "Location",
    "NativeError",
    "PatchError",
    "Phase",
    "SpecError",
]
