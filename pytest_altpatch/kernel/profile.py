"""Target profiles: what the harness must provide for one family of shipped kernel images.

A profile is a versioned YAML data file (``profiles/<name>.yaml``, or any file given by
path).  It names symbols of the image and gives each a meaning the harness knows:
service stubs (a function the harness stands in for), data to set before the run,
EL2-only instruction words to emulate and in which functions, the entry symbol, the
table bounds and the image's dialect and NCAPS.  It carries nothing of the kernel's
code.  :func:`check_symbols` turns a symbol the image lacks into ``IMAGE_MISSING_SYMBOL``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, cast

from pytest_altpatch.cases.yamlload import LocatedDocument, load_yaml_file, load_yaml_text
from pytest_altpatch.dialects import DIALECTS, Dialect
from pytest_altpatch.errors import KernelError, Location, SpecError
from pytest_altpatch.resources import PROFILES_DIR, available_profiles

#: The profile format this code reads.
PROFILE_VERSION: Final = 1

StubKind = Literal["log-format", "vmap-mfns", "vmap-identity", "vunmap", "run-on-all-cpus",
                   "return-zero"]
#: What each stub semantics does (for docs and ``PROFILE_INVALID`` hints).
STUB_KINDS: Final[Mapping[str, str]] = MappingProxyType({
    "log-format": "trace the C string at x0; return 0",
    "vmap-mfns": "map nr*granularity pages from the MFN at [x0] read-write at a fresh "
                 "alias VA; return it (Xen __vmap)",
    "vmap-identity": "return the physical address of the MFN at [x0] as if it were a "
                     "writable VA (a deliberately wrong profile: the text VA)",
    "vunmap": "remove the alias mapping that holds x0",
    "run-on-all-cpus": "run fn=x0(data=x1) on every online CPU (only on CPU x2 when x2 "
                       "names one) and return when all have: first non-zero result or 0",
    "return-zero": "do nothing; return 0",
})
DataKind = Literal["capability-bitmap", "boot-cpu-dcache-line", "online-cpu-mask",
                   "per-cpu-areas", "list-add-tail"]
_DATA_KINDS: Final = frozenset({"capability-bitmap", "boot-cpu-dcache-line",
                                "online-cpu-mask", "per-cpu-areas", "list-add-tail"})
TrapReturn = Literal["per-cpu-offset", "identity-par"]
_TRAP_RETURNS: Final = frozenset({"per-cpu-offset", "identity-par"})
FieldValue = Literal["cpu-index"]


@dataclass(frozen=True)
class PerCpuField:
    """A per-CPU variable set in every CPU's area (``value``: what it holds)."""

    symbol: str
    value: FieldValue
    size: int


@dataclass(frozen=True)
class DataItem:
    """One piece of data the harness sets before the image runs."""

    kind: DataKind
    symbol: str | None = None  # capability-bitmap, boot-cpu-dcache-line, online-cpu-mask
    size: int = 8
    start: str | None = None  # per-cpu-areas: the linked area's bounds
    end: str | None = None
    offsets: str | None = None  # per-cpu-areas: unsigned long __per_cpu_offset[]
    fields: tuple[PerCpuField, ...] = ()
    head: str | None = None  # list-add-tail: the list head, then nodes in order
    nodes: tuple[str, ...] = ()

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol this item names."""
        names = [self.symbol, self.start, self.end, self.offsets, self.head, *self.nodes,
                 *(f.symbol for f in self.fields)]
        return tuple(name for name in names if name is not None)


@dataclass(frozen=True)
class TrapRule:
    """An instruction word the machine cannot execute, and what emulating it returns."""

    name: str
    mask: int
    value: int
    returns: TrapReturn

    def matches(self, word: int) -> bool:
        """Whether ``word`` is this instruction (any register)."""
        return word & self.mask == self.value


@dataclass(frozen=True)
class PackageSource:
    """Where the image comes from: a Debian binary package and its member path."""

    name: str
    architecture: str
    suites: tuple[str, ...]
    member: str


@dataclass(frozen=True)
class TargetProfile:
    """A whole profile (see the module docstring)."""

    name: str
    description: str
    dialect: Dialect
    ncaps: int
    entry: str
    table_start: str
    table_end: str
    apply_entry: str | None
    region_entry: str | None
    stubs: Mapping[str, StubKind]
    data: tuple[DataItem, ...]
    trap_in: tuple[str, ...]
    traps: tuple[TrapRule, ...]
    package: PackageSource | None
    file: str

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol the profile names, in a stable order, once each."""
        names = [self.entry, self.table_start, self.table_end,
                 *([self.apply_entry] if self.apply_entry else []),
                 *([self.region_entry] if self.region_entry else []), *self.stubs,
                 *(name for item in self.data for name in item.symbols), *self.trap_in]
        return tuple(dict.fromkeys(names))


def load_profile(name_or_path: str | Path) -> TargetProfile:
    """The shipped profile ``name``, or the profile file at a path.

    Raises ``PROFILE_UNKNOWN`` for a name that is neither, ``PROFILE_INVALID`` (located
    at file:line) for a malformed file.
    """
    text = str(name_or_path)
    shipped = PROFILES_DIR / f"{text}.yaml"
    path = shipped if "/" not in text and shipped.is_file() else Path(text)
    if not path.is_file():
        raise KernelError("PROFILE_UNKNOWN", f"no target profile {text!r}",
                          hint="shipped: " + ", ".join(available_profiles()))
    try:
        document = load_yaml_file(path, display=path.name if path == shipped else str(path))
    except SpecError as exc:
        raise KernelError("PROFILE_INVALID", exc.message, location=exc.location) from None
    return parse_profile(document)


def parse_profile_text(text: str, file: str = "<profile>") -> TargetProfile:
    """Parse profile YAML ``text`` (for tests and generated profiles)."""
    try:
        document = load_yaml_text(text, file)
    except SpecError as exc:
        raise KernelError("PROFILE_INVALID", exc.message, location=exc.location) from None
    return parse_profile(document)


class _Reader:
    """Typed access to a located YAML document; every mistake is PROFILE_INVALID."""

    def __init__(self, document: LocatedDocument) -> None:
        self.document = document

    def fail(self, path: str, message: str, hint: str | None = None) -> KernelError:
        location = self.document.location(path)
        return KernelError("PROFILE_INVALID", message, location=location, hint=hint)

    def mapping(self, value: object, path: str) -> Mapping[str, object]:
        if not isinstance(value, dict):
            raise self.fail(path, f"{path or 'the profile'} must be a mapping")
        return cast(Mapping[str, object], value)

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"{path} must be a non-empty string")
        return value

    def integer(self, value: object, path: str, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(path, f"{path} must be an integer in [{low}, {high}]")
        return value

    def strings(self, value: object, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(path, f"{path} must be a list of strings")
        return tuple(self.string(item, f"{path}.{index}") for index, item in enumerate(value))

    def only(self, section: Mapping[str, object], path: str, allowed: Sequence[str]) -> None:
        for key in section:
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                raise self.fail(where, f"unknown profile key {key!r}",
                                hint="one of " + ", ".join(allowed))


_TOP_KEYS: Final = ("profile_version", "name", "description", "dialect", "ncaps", "package",
                    "entry", "table", "apply_entry", "region_entry", "stubs", "data", "traps")


def parse_profile(document: LocatedDocument) -> TargetProfile:
    """Validate a loaded profile document into a :class:`TargetProfile`."""
    read = _Reader(document)
    top = read.mapping(document.value, "")
    read.only(top, "", _TOP_KEYS)
    version = top.get("profile_version")
    if version != PROFILE_VERSION:
        raise read.fail("profile_version", f"profile_version {version!r} is not "
                        f"{PROFILE_VERSION}, the version this plugin reads")
    dialect = read.string(top.get("dialect"), "dialect")
    if dialect not in DIALECTS:
        raise read.fail("dialect", f"unknown dialect {dialect!r}", hint=", ".join(DIALECTS))
    table = read.mapping(top.get("table"), "table")
    read.only(table, "table", ("start", "end"))
    stubs_raw = read.mapping(top.get("stubs", {}), "stubs")
    stubs: dict[str, StubKind] = {}
    for symbol, kind in stubs_raw.items():
        if kind not in STUB_KINDS:
            raise read.fail(f"stubs.{symbol}", f"unknown stub semantics {kind!r}",
                            hint=", ".join(STUB_KINDS))
        stubs[symbol] = cast(StubKind, kind)
    data_raw = top.get("data", [])
    if not isinstance(data_raw, list):
        raise read.fail("data", "data must be a list")
    data = tuple(_data_item(read, item, f"data.{index}") for index, item in enumerate(data_raw))
    traps = read.mapping(top.get("traps", {"in": [], "instructions": []}), "traps")
    read.only(traps, "traps", ("in", "instructions"))
    rules_raw = traps.get("instructions", [])
    if not isinstance(rules_raw, list):
        raise read.fail("traps.instructions", "traps.instructions must be a list")
    package_raw = top.get("package")
    package = None
    if package_raw is not None:
        section = read.mapping(package_raw, "package")
        read.only(section, "package", ("name", "architecture", "suites", "member"))
        package = PackageSource(read.string(section.get("name"), "package.name"),
                                read.string(section.get("architecture"), "package.architecture"),
                                read.strings(section.get("suites"), "package.suites"),
                                read.string(section.get("member"), "package.member"))
    apply_entry = top.get("apply_entry")
    region_entry = top.get("region_entry")
    return TargetProfile(
        name=read.string(top.get("name"), "name"),
        description=str(top.get("description", "")),
        dialect=dialect,
        ncaps=read.integer(top.get("ncaps"), "ncaps", 1, 1 << 15),
        entry=read.string(top.get("entry"), "entry"),
        table_start=read.string(table.get("start"), "table.start"),
        table_end=read.string(table.get("end"), "table.end"),
        apply_entry=None if apply_entry is None else read.string(apply_entry, "apply_entry"),
        region_entry=None if region_entry is None
        else read.string(region_entry, "region_entry"),
        stubs=MappingProxyType(stubs),
        data=data,
        trap_in=read.strings(traps.get("in", []), "traps.in"),
        traps=tuple(_trap_rule(read, rule, f"traps.instructions.{index}")
                    for index, rule in enumerate(rules_raw)),
        package=package,
        file=document.file,
    )


def _data_item(read: _Reader, raw: object, path: str) -> DataItem:
    item = read.mapping(raw, path)
    kind = item.get("set")
    if kind not in _DATA_KINDS:
        raise read.fail(f"{path}.set", f"unknown data kind {kind!r}",
                        hint=", ".join(sorted(_DATA_KINDS)))
    if kind == "per-cpu-areas":
        read.only(item, path, ("set", "start", "end", "offsets", "fields"))
        fields_raw = item.get("fields", [])
        if not isinstance(fields_raw, list):
            raise read.fail(f"{path}.fields", "fields must be a list")
        fields = []
        for index, field_raw in enumerate(fields_raw):
            where = f"{path}.fields.{index}"
            field_map = read.mapping(field_raw, where)
            read.only(field_map, where, ("symbol", "value", "size"))
            if field_map.get("value") != "cpu-index":
                raise read.fail(f"{where}.value", "a per-CPU field value must be cpu-index")
            fields.append(PerCpuField(read.string(field_map.get("symbol"), f"{where}.symbol"),
                                      "cpu-index",
                                      _size(read, field_map.get("size", 4), f"{where}.size")))
        return DataItem("per-cpu-areas", start=read.string(item.get("start"), f"{path}.start"),
                        end=read.string(item.get("end"), f"{path}.end"),
                        offsets=read.string(item.get("offsets"), f"{path}.offsets"),
                        fields=tuple(fields))
    if kind == "list-add-tail":
        read.only(item, path, ("set", "head", "nodes"))
        return DataItem("list-add-tail", head=read.string(item.get("head"), f"{path}.head"),
                        nodes=read.strings(item.get("nodes"), f"{path}.nodes"))
    read.only(item, path, ("set", "symbol", "size"))
    return DataItem(cast(DataKind, kind), symbol=read.string(item.get("symbol"), f"{path}.symbol"),
                    size=_size(read, item.get("size", 8), f"{path}.size"))


def _size(read: _Reader, value: object, path: str) -> int:
    if value not in (1, 2, 4, 8):
        raise read.fail(path, f"{path} must be 1, 2, 4 or 8 (bytes)")
    assert isinstance(value, int)  # checked by the membership test above
    return value


def _trap_rule(read: _Reader, raw: object, path: str) -> TrapRule:
    rule = read.mapping(raw, path)
    read.only(rule, path, ("name", "mask", "value", "returns"))
    returns = rule.get("returns")
    if returns not in _TRAP_RETURNS:
        raise read.fail(f"{path}.returns", f"unknown trap result {returns!r}",
                        hint=", ".join(sorted(_TRAP_RETURNS)))
    mask = read.integer(rule.get("mask"), f"{path}.mask", 1, 0xFFFFFFFF)
    value = read.integer(rule.get("value"), f"{path}.value", 0, 0xFFFFFFFF)
    if value & ~mask:
        raise read.fail(f"{path}.value", "value has bits outside mask")
    return TrapRule(read.string(rule.get("name"), f"{path}.name"), mask, value,
                    cast(TrapReturn, returns))


def check_symbols(profile: TargetProfile, symbols: Mapping[str, int], image: str) -> None:
    """``IMAGE_MISSING_SYMBOL`` naming the first symbol of ``profile`` the image lacks."""
    missing = [name for name in profile.symbols if name not in symbols]
    if missing:
        raise KernelError(
            "IMAGE_MISSING_SYMBOL",
            f"{image} has no symbol {missing[0]!r}, which profile {profile.name} names"
            + (f" (and {len(missing) - 1} more: {', '.join(missing[1:4])})"
               if len(missing) > 1 else ""),
            location=Location(file=image, symbol=missing[0]),
        )


__all__ = [
    "PROFILES_DIR",
    "PROFILE_VERSION",
    "STUB_KINDS",
    "DataItem",
    "PackageSource",
    "PerCpuField",
    "TargetProfile",
    "TrapRule",
    "available_profiles",
    "check_symbols",
    "load_profile",
    "parse_profile",
    "parse_profile_text",
]
