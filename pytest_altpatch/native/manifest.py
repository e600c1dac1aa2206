"""The native patcher manifest (ABI v1): what to link, how to call it, what it binds.

A manifest is a small YAML file next to the patcher's objects::

    name: xen-4.17-alternative
    version: 4.17.5
    dialect: xen-4.17
    features: [boot-alternatives, branch-reloc, ...]
    shim: xen-4.17
    objects: [alternative.o, insn.o]

``objects`` are ELF64 AArch64 relocatable objects (``.o``) or A64 assembly sources
(``.s``/``.S``, assembled by our assembler), relative to the manifest.  A ``shim``
supplies default ``entries``, ``bindings`` and ``bug_codes``; the manifest's own
override them key by key.  conformance/native-abi.md documents every key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

from pytest_altpatch.cases.yamlload import LocatedDocument, load_yaml_file
from pytest_altpatch.dialects import DIALECTS
from pytest_altpatch.errors import ERROR_CODES, Location, NativeError
from pytest_altpatch.native import abi
from pytest_altpatch.resources import SHIM_ROOT, known_shims

#: The ABI's own headers (each shipped shim's are under SHIM_ROOT/<name>/include/).
INCLUDE_DIR: Final = Path(__file__).parent / "include"
OBJECT_SUFFIXES: Final = (".o", ".a", ".s", ".S")
_AR_MAGIC: Final = b"!<arch>\n"
_KEYS: Final = frozenset({"name", "version", "dialect", "features", "objects", "shim",
                          "entries", "bindings", "bug_codes"})
_SHIM_KEYS: Final = frozenset({"name", "summary", "entries", "bindings", "bug_codes",
                               "features"})


@dataclass(frozen=True)
class Entry:
    """An entry point: the symbol to call and how (an :data:`abi.CALL_STYLES` key)."""

    kind: str
    symbol: str
    call: abi.CallStyle


@dataclass(frozen=True)
class ObjectFile:
    """One object or source file of a native patcher, read once."""

    path: Path
    data: bytes
    #: Set for an archive member: the linker takes it only if it defines a symbol
    #: something else needs (as ld does).
    archive: str | None = None

    @property
    def name(self) -> str:
        """The file name (how reports and errors name the object): ``lib.a(m.o)``
        for an archive member."""
        return f"{self.archive}({self.path.name})" if self.archive else self.path.name

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file's bytes."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def is_source(self) -> bool:
        """Whether it is assembly for our assembler rather than an ELF object."""
        return self.path.suffix in (".s", ".S")


@dataclass(frozen=True)
class Shim:
    """A shim header set and the defaults it brings to a manifest."""

    name: str
    summary: str
    include: Path
    entries: Mapping[str, Entry]
    bindings: Mapping[str, str]
    bug_codes: Mapping[str, str]
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest with the shim's defaults merged in."""

    path: Path
    name: str
    version: str
    dialect: str
    features: frozenset[str]
    objects: tuple[ObjectFile, ...]
    entries: Mapping[str, Entry]
    bindings: Mapping[str, str] = field(default_factory=dict)
    bug_codes: Mapping[str, str] = field(default_factory=dict)
    shim: Shim | None = None


def _error(doc: LocatedDocument, path: str, message: str, *, hint: str | None = None
           ) -> NativeError:
    return NativeError("NATIVE_MANIFEST", message, location=doc.location(path), hint=hint)


def _text(doc: LocatedDocument, value: object, path: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
        raise _error(doc, path, f"{path} must be a non-empty string")
    return str(value)


def _mapping(doc: LocatedDocument, value: object, path: str) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(doc, path, f"{path} must be a mapping")
    return cast(Mapping[str, object], value)


def _entries(doc: LocatedDocument, value: object, path: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for kind, spec in _mapping(doc, value, path).items():
        where = f"{path}.{kind}"
        known = abi.ENTRY_KINDS.get(kind)
        if known is None:
            raise _error(doc, where, f"unknown entry {kind!r}",
                         hint=f"known: {', '.join(abi.ENTRY_KINDS)}")
        body = _mapping(doc, spec, where)
        unknown = set(body) - {"symbol", "call"}
        if unknown:
            raise _error(doc, where, f"unknown key(s) {', '.join(sorted(unknown))} in {where}")
        symbol = _text(doc, body.get("symbol"), f"{where}.symbol")
        call = _text(doc, body.get("call", known.styles[0]), f"{where}.call")
        if call not in known.styles:
            raise _error(doc, f"{where}.call", f"entry {kind} cannot use call style {call!r}",
                         hint=f"allowed: {', '.join(known.styles)}")
        entries[kind] = Entry(kind, symbol, call)
    return entries


def _bindings(doc: LocatedDocument, value: object, path: str) -> dict[str, str]:
    bindings: dict[str, str] = {}
    for symbol, target in _mapping(doc, value, path).items():
        where = f"{path}.{symbol}"
        text = _text(doc, target, where)
        kind, _, name = text.partition(".")
        valid = (kind == "image" and name in abi.IMAGE_BINDINGS) or text == "env" \
            or (kind == "env" and name in {f.name for f in abi.ENV_FIELDS}) \
            or (kind == "symbol" and bool(name))
        if not valid:
            raise _error(doc, where, f"binding {symbol}: {text!r} is not a binding",
                         hint="use image.text_start|text_end|table_start|table_end, env, "
                              "env.FIELD (of struct altpatch_env) or symbol.NAME")
        bindings[str(symbol)] = text
    return bindings


def _bug_codes(doc: LocatedDocument, value: object, path: str) -> dict[str, str]:
    codes: dict[str, str] = {}
    for condition, code in _mapping(doc, value, path).items():
        text = _text(doc, code, f"{path}.{condition}")
        if text not in ERROR_CODES:
            raise _error(doc, f"{path}.{condition}", f"{text!r} is not a registered error code")
        codes[str(condition)] = text
    return codes


def _features(doc: LocatedDocument, value: object, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _error(doc, path, f"{path} must be a list of feature names")
    return tuple(_text(doc, item, f"{path}.{i}") for i, item in enumerate(value))


def load_shim(name: str, *, where: Location | None = None) -> Shim:
    """The shipped shim ``name`` (NATIVE_MANIFEST when there is none)."""
    path = SHIM_ROOT / name / "shim.yaml"
    if not name.replace("-", "").replace(".", "").replace("_", "").isalnum() \
            or not path.is_file():
        raise NativeError("NATIVE_MANIFEST", f"no shim {name!r}", location=where or Location(),
                          hint=f"known: {', '.join(known_shims())}")
    doc = load_yaml_file(path)
    body = _mapping(doc, doc.value, "")
    unknown = set(body) - _SHIM_KEYS
    if unknown:
        raise _error(doc, "", f"unknown shim key(s): {', '.join(sorted(unknown))}")
    return Shim(
        name=name, summary=str(body.get("summary", "")), include=path.parent / "include",
        entries=_entries(doc, body.get("entries"), "entries"),
        bindings=_bindings(doc, body.get("bindings"), "bindings"),
        bug_codes=_bug_codes(doc, body.get("bug_codes"), "bug_codes"),
        features=_features(doc, body.get("features"), "features"),
    )


def archive_members(path: Path, data: bytes, where: Location) -> list[ObjectFile]:
    """The ``.o`` members of a System V / GNU ``ar`` archive."""
    if not data.startswith(_AR_MAGIC):
        raise NativeError("NATIVE_OBJECT", f"{path.name} is not an ar archive", location=where)
    members: list[ObjectFile] = []
    long_names = b""
    position = len(_AR_MAGIC)
    while position + 60 <= len(data):
        header = data[position:position + 60]
        try:
            size = int(header[48:58].decode("ascii").strip() or "0")
        except (UnicodeDecodeError, ValueError):
            raise NativeError("NATIVE_OBJECT", f"{path.name}: bad member header at "
                              f"{position:#x}", location=where) from None
        body = data[position + 60:position + 60 + size]
        if header[58:60] != b"`\n" or len(body) != size:
            raise NativeError("NATIVE_OBJECT", f"{path.name}: truncated member at "
                              f"{position:#x}", location=where)
        raw = header[:16].decode("utf-8", "replace").rstrip()
        position += 60 + size + (size & 1)
        if raw == "//":
            long_names = body
            continue
        if raw in ("/", "/SYM64/"):
            continue  # the symbol index: the linker reads members' own tables
        if raw.startswith("/") and raw[1:].isdigit():
            start = int(raw[1:])
            end = long_names.find(b"\n", start)
            raw = long_names[start:end if end >= 0 else None].decode("utf-8", "replace")
        name = raw.rstrip("/")
        if name.endswith(".o"):
            members.append(ObjectFile(path.parent / name, body, archive=path.name))
    return members


def load_manifest(path: Path) -> Manifest:
    """Read, check and merge (with its shim) the manifest at ``path``."""
    if not path.is_file():
        raise NativeError("NATIVE_MANIFEST", f"no manifest at {path}",
                          location=Location(file=str(path)))
    doc = load_yaml_file(path)
    body = _mapping(doc, doc.value, "")
    unknown = set(body) - _KEYS
    if unknown:
        raise _error(doc, "", f"unknown manifest key(s): {', '.join(sorted(unknown))}",
                     hint=f"known: {', '.join(sorted(_KEYS))}")
    name = _text(doc, body.get("name"), "name")
    version = _text(doc, body.get("version"), "version")
    dialect = _text(doc, body.get("dialect"), "dialect")
    if dialect not in DIALECTS:
        raise _error(doc, "dialect", f"unknown dialect {dialect!r}",
                     hint=f"known: {', '.join(DIALECTS)}")
    shim: Shim | None = None
    if body.get("shim") is not None:
        shim = load_shim(_text(doc, body["shim"], "shim"), where=doc.location("shim"))
    features = set(shim.features if shim else ())
    if "features" in body:
        features = set(_features(doc, body["features"], "features"))
    raw_objects = body.get("objects")
    if not isinstance(raw_objects, list) or not raw_objects:
        raise _error(doc, "objects", "objects must be a non-empty list of files")
    objects: list[ObjectFile] = []
    for index, item in enumerate(raw_objects):
        where = f"objects.{index}"
        relative = Path(_text(doc, item, where))
        file = relative if relative.is_absolute() else path.parent / relative
        if file.suffix not in OBJECT_SUFFIXES:
            raise _error(doc, where, f"{relative}: not an object (.o) or assembly (.s, .S)")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise _error(doc, where, f"cannot read {relative}: {exc.strerror or exc}") from None
        if file.suffix == ".a":
            objects += archive_members(file, data, doc.location(where))
        else:
            objects.append(ObjectFile(file, data))
    entries = dict(shim.entries if shim else {})
    entries.update(_entries(doc, body.get("entries"), "entries"))
    if "boot" not in entries:
        raise _error(doc, "entries", "no boot entry (entries.boot.symbol)")
    bindings = dict(shim.bindings if shim else {})
    bindings.update(_bindings(doc, body.get("bindings"), "bindings"))
    bug_codes = dict(shim.bug_codes if shim else {})
    bug_codes.update(_bug_codes(doc, body.get("bug_codes"), "bug_codes"))
    return Manifest(
        path=path, name=name, version=version, dialect=dialect,
        features=frozenset(features), objects=tuple(objects),
        entries=entries, bindings=bindings,
        bug_codes=bug_codes, shim=shim,
    )


__all__ = [
    "INCLUDE_DIR",
    "SHIM_ROOT",
    "Entry",
    "Manifest",
    "ObjectFile",
    "Shim",
    "known_shims",
    "load_manifest",
    "load_shim",
]
