"""ABI v1 of native patchers: the facts guest code and the harness share.

One table per concept (services, refusal codes, the environment block, entry call
styles), so ``altpatch.h``, the runtime stubs, the executor and the ABI page all say
the same thing.  conformance/native-abi.md is the prose; tests check the header against
these tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from pytest_altpatch.a64.granule import PAGE_SIZE

ABI_VERSION: Final = 1

#: SVC immediates of the native services (the machine's own: vmap 0x6, vunmap 0x7).
SVC_LOG: Final = 0x100
SVC_BUG: Final = 0x101
SVC_REFUSE: Final = 0x102
SVC_STOP_MACHINE: Final = 0x103
SVC_STOP_MACHINE_WAIT: Final = 0x104
SVC_VIRT_TO_PHYS: Final = 0x105

#: Refusal numbers a native patcher passes to ``altpatch_refuse`` or returns from an
#: ``int`` entry, and the registered error code each one is judged as.
REFUSAL_CODES: Final[Mapping[int, str]] = MappingProxyType({
    1: "LENGTH_MISMATCH",
    2: "CALLBACK_LENGTH",
    3: "LITERAL_IN_REPLACEMENT",
    4: "BRANCH_OUT_OF_RANGE",
    5: "ADR_OUT_OF_RANGE",
    6: "ADRP_OUT_OF_RANGE",
    7: "LITERAL_OUT_OF_RANGE",
    8: "PATCHER_UNSUPPORTED",
    9: "EXPECTATION_FAILED",
    10: "CALLBACK_NOT_IN_TEXT",
})


@dataclass(frozen=True)
class EnvField:
    """One field of ``struct altpatch_env`` (little-endian, at a fixed offset)."""

    name: str
    offset: int
    size: int  # bytes; arrays are 8 * count
    c_type: str
    meaning: str


#: ``struct altpatch_env``: written by the harness before every entry call.
ENV_FIELDS: Final[tuple[EnvField, ...]] = (
    EnvField("abi_version", 0, 4, "uint32_t", "ABI_VERSION (1)"),
    EnvField("ncpus", 4, 4, "uint32_t", "CPUs taking part (online CPUs)"),
    EnvField("ncaps", 8, 4, "uint32_t", "capability numbers of the dialect (Xen ARM_NCAPS)"),
    EnvField("dcache_line", 12, 4, "uint32_t", "system-wide minimum D-cache line, bytes"),
    EnvField("icache_line", 16, 4, "uint32_t", "system-wide minimum I-cache line, bytes"),
    EnvField("flags", 20, 4, "uint32_t", "ALTPATCH_ENV_LIVE | ALTPATCH_ENV_ALIAS"),
    EnvField("boot_cpu", 24, 4, "uint32_t", "the CPU that patches (0)"),
    EnvField("reserved", 28, 4, "uint32_t", "zero"),
    EnvField("text_start", 32, 8, "uint64_t", "the region's executable text"),
    EnvField("text_end", 40, 8, "uint64_t", "one past it"),
    EnvField("text_phys", 48, 8, "uint64_t", "physical address of text_start (for vmap)"),
    EnvField("table_start", 56, 8, "uint64_t", "first .altinstructions entry (read-only)"),
    EnvField("table_end", 64, 8, "uint64_t", "one past the last entry"),
    EnvField("alias_offset", 72, 8, "uint64_t",
             "site + alias_offset is writable (when ALTPATCH_ENV_ALIAS)"),
    EnvField("kernel_text_start", 80, 8, "uint64_t",
             "the base image's executable text (is_active_kernel_text)"),
    EnvField("kernel_text_end", 88, 8, "uint64_t", "one past it"),
    EnvField("sync_va", 96, 8, "uint64_t", "a zeroed, writable word for the rendezvous"),
    EnvField("caps", 104, 32, "uint64_t[4]", "bitmap of the capabilities the system has"),
    EnvField("boot_caps", 136, 32, "uint64_t[4]", "of those, the boot-CPU-scope ones"),
)
ENV_SIZE: Final = 168
ENV_FLAG_LIVE: Final = 1
ENV_FLAG_ALIAS: Final = 2
#: Capabilities an environment bitmap can hold.
MAX_CAPS: Final = 256

#: ``struct altpatch_livepatch``: one per payload, kept between apply and revert (so a
#: patcher may save the old words in each function's ``opaque`` bytes).
LIVEPATCH_FIELDS: Final[tuple[EnvField, ...]] = (
    EnvField("abi_version", 0, 4, "uint32_t", "ABI_VERSION (1)"),
    EnvField("nfuncs", 4, 4, "uint32_t", "entries of funcs[]"),
    EnvField("ncpus", 8, 4, "uint32_t", "CPUs taking part (online CPUs)"),
    EnvField("dcache_line", 12, 4, "uint32_t", "system-wide minimum D-cache line, bytes"),
    EnvField("icache_line", 16, 4, "uint32_t", "system-wide minimum I-cache line, bytes"),
    EnvField("flags", 20, 4, "uint32_t", "ALTPATCH_ENV_ALIAS"),
    EnvField("text_start", 24, 8, "uint64_t", "the base image's text"),
    EnvField("text_end", 32, 8, "uint64_t", "one past it"),
    EnvField("text_phys", 40, 8, "uint64_t", "physical address of text_start"),
    EnvField("alias_offset", 48, 8, "uint64_t", "text + alias_offset is writable (ALIAS)"),
    EnvField("sync_va", 56, 8, "uint64_t", "a zeroed, writable word for the rendezvous"),
)
LIVEPATCH_HEADER_SIZE: Final = 64
#: ``struct altpatch_livepatch_func`` (funcs[] follows the header).
LIVEPATCH_FUNC_FIELDS: Final[tuple[EnvField, ...]] = (
    EnvField("old_addr", 0, 8, "uint64_t", "the old function (base image text)"),
    EnvField("new_addr", 8, 8, "uint64_t", "its replacement; 0: NOP out new_size bytes"),
    EnvField("old_size", 16, 4, "uint32_t", "bytes of the old function"),
    EnvField("new_size", 20, 4, "uint32_t", "bytes the switch replaces"),
    EnvField("expect_len", 24, 4, "uint32_t", "bytes of expect[] to check (0: none)"),
    EnvField("reserved", 28, 4, "uint32_t", "zero"),
    EnvField("expect", 32, 16, "uint8_t[16]", "the old bytes the payload expects"),
    EnvField("opaque", 48, 16, "uint8_t[16]", "the patcher's own (kept from apply to revert)"),
)
LIVEPATCH_FUNC_SIZE: Final = 64
MAX_LIVEPATCH_FUNCS: Final = (PAGE_SIZE - LIVEPATCH_HEADER_SIZE) // LIVEPATCH_FUNC_SIZE

CallStyle = Literal["stop-machine", "every-cpu", "table", "env", "livepatch"]


@dataclass(frozen=True)
class EntryKind:
    """One entry point a manifest may name, and the call styles it may use."""

    name: str
    styles: tuple[CallStyle, ...]
    meaning: str


#: Entry points (``boot`` is required).
ENTRY_KINDS: Final[Mapping[str, EntryKind]] = MappingProxyType({
    "boot": EntryKind("boot", ("stop-machine", "every-cpu"),
                      "boot-time patching of the base image"),
    "boot_early": EntryKind("boot_early", ("env",),
                            "two-pass patchers: boot-CPU-scope capabilities on CPU0 first"),
    "region": EntryKind("region", ("table", "env"),
                        "a late payload's alternatives, on one CPU, the region not live yet"),
    "livepatch_apply": EntryKind("livepatch_apply", ("livepatch",),
                                 "switch a payload's functions in, on every CPU"),
    "livepatch_revert": EntryKind("livepatch_revert", ("livepatch",),
                                  "switch them back out, on every CPU"),
})

#: What each call style passes and expects (x0.. arguments; result in x0).
CALL_STYLES: Final[Mapping[CallStyle, str]] = MappingProxyType({
    "stop-machine": "void fn(void) on the boot CPU; the other CPUs serve "
                    "altpatch_stop_machine(fn, data) by calling fn(data)",
    "every-cpu": "int fn(const struct altpatch_env *env, unsigned int cpu) on every CPU",
    "table": "int fn(const void *table_start, const void *table_end) on CPU0",
    "env": "int fn(const struct altpatch_env *env) on CPU0",
    "livepatch": "int fn(struct altpatch_livepatch *lp, unsigned int cpu) on every CPU",
})


@dataclass(frozen=True)
class Service:
    """One function the runtime provides to native code."""

    name: str
    prototype: str
    meaning: str


#: The service functions (guest stubs in :mod:`.runtime`); declared in altpatch.h.
SERVICES: Final[tuple[Service, ...]] = (
    Service("altpatch_vmap", "void *altpatch_vmap(uint64_t pa, uint64_t size)",
            "map physical [pa, pa+size) read-write at a fresh VA; NULL when refused"),
    Service("altpatch_vunmap", "int altpatch_vunmap(void *va)",
            "remove the vmap alias containing va; 1 on success"),
    Service("altpatch_log", "void altpatch_log(const char *fmt, ...)",
            "a trace event with the format string and up to 7 raw arguments"),
    Service("altpatch_bug", "void altpatch_bug(const char *file, int line, const char *cond)",
            "BUG(): a located finding, or the refusal the shim maps cond to; never returns"),
    Service("altpatch_refuse", "void altpatch_refuse(unsigned int refusal, uint64_t address)",
            "refuse the case with REFUSAL_CODES[refusal], located at address; never returns"),
    Service("altpatch_stop_machine", "int altpatch_stop_machine(int (*fn)(void *), void *data)",
            "run fn(data) on every online CPU (this one too); return when all have returned"),
    Service("altpatch_virt_to_phys", "uint64_t altpatch_virt_to_phys(const void *va)",
            "physical address of va (~0 when unmapped)"),
    Service("altpatch_cpu_id", "unsigned int altpatch_cpu_id(void)",
            "this CPU's number (read from TPIDR_EL0; no exception)"),
    Service("altpatch_is_kernel_text", "int altpatch_is_kernel_text(uint64_t va)",
            "whether va is in the base image's executable text (never replacements)"),
    Service("memcpy", "void *memcpy(void *dst, const void *src, size_t n)",
            "what compilers call for structure copies"),
    Service("memset", "void *memset(void *dst, int c, size_t n)",
            "what compilers call for structure clears"),
)

#: Environment data a manifest binding may name: ``image.<name>`` values.
IMAGE_BINDINGS: Final = ("text_start", "text_end", "table_start", "table_end")

__all__ = [
    "ABI_VERSION",
    "CALL_STYLES",
    "ENTRY_KINDS",
    "ENV_FIELDS",
    "ENV_FLAG_ALIAS",
    "ENV_FLAG_LIVE",
    "ENV_SIZE",
    "IMAGE_BINDINGS",
    "LIVEPATCH_FIELDS",
    "LIVEPATCH_FUNC_FIELDS",
    "LIVEPATCH_FUNC_SIZE",
    "LIVEPATCH_HEADER_SIZE",
    "MAX_CAPS",
    "MAX_LIVEPATCH_FUNCS",
    "REFUSAL_CODES",
    "SERVICES",
    "SVC_BUG",
    "SVC_LOG",
    "SVC_REFUSE",
    "SVC_STOP_MACHINE",
    "SVC_STOP_MACHINE_WAIT",
    "SVC_VIRT_TO_PHYS",
    "CallStyle",
    "EntryKind",
    "EnvField",
    "Service",
]
