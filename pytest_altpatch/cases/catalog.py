"""Loading the catalog: CPUs, errata, features, capability numberings, registries.

The catalog is a directory of YAML files (``corpus/catalog/*.yaml``); each file holds
any of the sections ``cpus``, ``errata``, ``features``, ``numberings``,
``patcher_features`` and ``callbacks``.  Names are unique across files.  Errata refer
to CPUs by catalog name; the loader resolves them into MIDR models and masks, so
nothing downstream ever sees a CPU *name* where it needs a MIDR.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar, cast

from pytest_altpatch.cases import kept_resolved
from pytest_altpatch.cases.document_cache import document_key, load_valid_document
from pytest_altpatch.cases.located import LocatedDocument, join_path
from pytest_altpatch.cases.model import (
    MIDR_ARCHITECTURE_MASK,
    MIDR_IMPLEMENTER_MASK,
    CapNumbering,
    Catalog,
    CpuModel,
    Erratum,
    Feature,
    MidrRange,
    RevidrFix,
    Scope,
    midr_rv,
)
from pytest_altpatch.cases.schema import schema_path
from pytest_altpatch.cases.suggestions import did_you_mean
from pytest_altpatch.dialects import DIALECTS, CallbackMarking, Dialect, is_dialect, traits
from pytest_altpatch.errors import Location, SpecError
from pytest_altpatch.resources import bundled_corpus

CATALOG_DIR = "catalog"

_REVISION = re.compile(r"^r(\d+)p(\d+)$")

#: Per section: the model class it builds (for messages) in file order.
SECTIONS: tuple[str, ...] = (
    "cpus", "errata", "features", "numberings", "patcher_features", "callbacks",
)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when below it, else absolute."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return relative if not relative.startswith("..") else str(path)


def parse_revision(text: str, location: Location) -> int:
    """``rNpM`` -> ``N << 20 | M``; both fields are 4 bits wide."""
    found = _REVISION.match(text)
    if found is None:
        raise SpecError("SPEC_BAD_RANGE", f"{text!r} is not a revision like r1p2",
                        location=location)
    variant, revision = int(found.group(1)), int(found.group(2))
    if variant > 0xF or revision > 0xF:
        raise SpecError(
            "SPEC_BAD_RANGE",
            f"revision {text!r} does not fit MIDR (variant and revision are 0..15)",
            location=location,
        )
    return midr_rv(variant, revision)


def format_revision(rv: int) -> str:
    """``N << 20 | M`` -> ``rNpM``."""
    return f"r{(rv >> 20) & 0xF}p{rv & 0xF}"


@dataclass
class _Section:
    """One named entry of a catalog section, with the document it came from."""

    name: str
    body: Mapping[str, object]
    document: LocatedDocument
    path: str  # JSON path inside the document


def resolve_catalog_dir(root: Path | None) -> tuple[Path, Path]:
    """(catalog directory, corpus root) for a corpus root or a catalog directory."""
    base = root if root is not None else bundled_corpus()
    if (base / CATALOG_DIR).is_dir():
        return base / CATALOG_DIR, base
    return base, base.parent


def _schema_for(corpus_root: Path, name: str) -> Path:
    candidate = schema_path(corpus_root, name)
    return candidate if candidate.is_file() else schema_path(bundled_corpus(), name)


def _read_files(files: list[Path], schema: Path
                ) -> tuple[list[tuple[bytes, str] | SpecError], str | None]:
    """Each catalog file's bytes and document key (or why it cannot be read), and the
    key the catalog they make is kept under (None when one cannot be read)."""
    reads: list[tuple[bytes, str] | SpecError] = []
    for file in files:
        try:
            reads.append(document_key(file, display_path(file), schema))
        except SpecError as exc:
            reads.append(exc)
    keys = [read[1] for read in reads if not isinstance(read, SpecError)]
    return reads, kept_resolved.catalog_key(keys) if len(keys) == len(reads) else None


def read_catalog(root: Path | None = None) -> tuple[Catalog | None, list[SpecError]]:
    """Load the catalog, collecting every problem instead of stopping at the first."""
    catalog_dir, corpus_root = resolve_catalog_dir(root)
    problems: list[SpecError] = []
    files = sorted(catalog_dir.glob("*.yaml")) if catalog_dir.is_dir() else []
    if not files:
        problems.append(SpecError("SPEC_IO", "no catalog files (*.yaml) found",
                                  location=Location(file=display_path(catalog_dir))))
        return None, problems
    schema = _schema_for(corpus_root, "catalog")
    reads, key = _read_files(files, schema)
    kept = kept_resolved.load(key, Catalog)
    if kept is not None:
        return kept, problems
    sections: dict[str, dict[str, _Section]] = {name: {} for name in SECTIONS}
    for file, read in zip(files, reads, strict=True):
        if isinstance(read, SpecError):
            problems.append(read)
            continue
        try:
            document, schema_problems = load_valid_document(file, display_path(file), schema,
                                                            read=read)
        except SpecError as exc:
            problems.append(exc)
            continue
        if schema_problems:
            problems.extend(schema_problems)
            continue
        body = cast(Mapping[str, Mapping[str, Mapping[str, object]]], document.value or {})
        for section in SECTIONS:
            for name, entry in body.get(section, {}).items():
                path = join_path(section, name)
                earlier = sections[section].get(name)
                if earlier is not None:
                    problems.append(SpecError(
                        "SPEC_DUPLICATE_ID",
                        f"{section} entry {name!r} is also defined in {earlier.document.file}",
                        location=document.location(path, key=True),
                    ))
                    continue
                value = entry if isinstance(entry, Mapping) else {"text": entry}
                sections[section][name] = _Section(name, value, document, path)
    cpus = _build(sections["cpus"], _cpu, problems)
    errata = _build(sections["errata"], lambda s: _erratum(s, cpus), problems)
    features = _build(sections["features"], _feature, problems)
    numberings = _build(sections["numberings"], _numbering, problems)
    for dialect in DIALECTS:
        if dialect not in numberings and not any(
            p.code == "SPEC_SCHEMA" for p in problems
        ):
            problems.append(SpecError(
                "SPEC_BAD_REFERENCE", f"the catalog has no capability numbering for {dialect}",
                location=Location(file=display_path(catalog_dir)),
            ))
    registry = {name: str(s.body["text"]) for name, s in sections["patcher_features"].items()}
    callbacks = {name: str(s.body["text"]) for name, s in sections["callbacks"].items()}
    catalog = Catalog(
        cpus=MappingProxyType(cpus),
        errata=MappingProxyType(errata),
        features=MappingProxyType(features),
        numberings=MappingProxyType(numberings),
        patcher_features=MappingProxyType(dict(sorted(registry.items()))),
        callbacks=MappingProxyType(dict(sorted(callbacks.items()))),
    )
    if not problems:
        kept_resolved.keep(key, catalog)
    return catalog, problems


def load_catalog(root: Path | None = None) -> Catalog:
    """Load and resolve the catalog of a corpus (default: the bundled corpus).

    ``root`` is a corpus root (holding ``catalog/``) or a catalog directory.  Raises
    the first :class:`SpecError` (in file order) if anything is wrong.
    """
    catalog, problems = read_catalog(root)
    if problems:
        raise problems[0]
    assert catalog is not None  # read_catalog returns a catalog whenever it has no problem
    return catalog


_T = TypeVar("_T")


def _build(
    entries: Mapping[str, _Section],
    make: Callable[[_Section], _T],
    problems: list[SpecError],
) -> dict[str, _T]:
    built: dict[str, _T] = {}
    for name, section in entries.items():
        try:
            built[name] = make(section)
        except SpecError as exc:
            problems.append(exc)
    return built


def _refs(section: _Section) -> tuple[str, ...]:
    return tuple(str(ref) for ref in cast(list[object], section.body.get("refs", [])))


def _cpu(section: _Section) -> CpuModel:
    body = section.body
    id_regs = cast(Mapping[str, int], body.get("id_regs", {}))
    return CpuModel(
        name=section.name,
        display_name=str(body["name"]),
        implementer=cast(int, body["implementer"]),
        part=cast(int, body["part"]),
        ctr=cast(int, body["ctr"]),
        id_regs=MappingProxyType(dict(sorted(id_regs.items()))),
        architecture=cast(int, body.get("architecture", 0xF)),
        refs=_refs(section),
    )


def _erratum(section: _Section, cpus: Mapping[str, CpuModel]) -> Erratum:
    body = section.body
    document = section.document
    ranges: list[MidrRange] = []
    for index, raw in enumerate(cast(list[Mapping[str, object]], body["matches"])):
        path = join_path(join_path(section.path, "matches"), index)
        cpu_name = str(raw["cpu"])
        cpu = cpus.get(cpu_name)
        if cpu is None:
            raise SpecError(
                "SPEC_UNKNOWN_CPU", f"erratum {section.name!r} names unknown CPU {cpu_name!r}",
                location=document.location(join_path(path, "cpu")),
                hint=did_you_mean(cpu_name, cpus),
            )
        rv_min = (parse_revision(str(raw["from"]), document.location(join_path(path, "from")))
                  if "from" in raw else 0)
        rv_max = (parse_revision(str(raw["to"]), document.location(join_path(path, "to")))
                  if "to" in raw else midr_rv(0xF, 0xF))
        if rv_min > rv_max:
            raise SpecError(
                "SPEC_BAD_RANGE",
                f"range {format_revision(rv_min)}..{format_revision(rv_max)} is empty",
                location=document.location(path),
            )
        fixes: list[RevidrFix] = []
        for fix_index, fix in enumerate(cast(list[Mapping[str, object]], raw.get("fixed", []))):
            fix_path = join_path(join_path(path, "fixed"), fix_index)
            fixes.append(RevidrFix(
                parse_revision(str(fix["rev"]), document.location(join_path(fix_path, "rev"))),
                cast(int, fix["revidr_mask"]),
            ))
        part_mask = cast(int, raw.get("part_mask", 0xFFF))
        ranges.append(MidrRange(
            model=cpu.midr_model,
            rv_min=rv_min,
            rv_max=rv_max,
            model_mask=MIDR_IMPLEMENTER_MASK | MIDR_ARCHITECTURE_MASK | (part_mask << 4),
            fixed=tuple(fixes),
        ))
    return Erratum(
        id=section.name,
        title=str(body["title"]),
        capability=str(body["capability"]),
        scope=cast(Scope, body.get("scope", "local-cpu-erratum")),
        matches=tuple(ranges),
        optional_for_late_cpu=cast(bool, body.get("optional_for_late_cpu", True)),
        permitted_for_late_cpu=cast(bool, body.get("permitted_for_late_cpu", False)),
        tables=tuple(str(t) for t in cast(list[object], body["tables"])),
        refs=_refs(section),
    )


def _feature(section: _Section) -> Feature:
    body = section.body
    register = str(body["register"])
    shift = cast(int, body["shift"])
    width = cast(int, body.get("width", 4))
    register_bits = 32 if register == "ctr_el0" else 64
    if shift + width > register_bits:
        raise SpecError(
            "SPEC_BAD_RANGE",
            f"field [{shift + width - 1}:{shift}] does not fit {register}",
            location=section.document.location(join_path(section.path, "shift")),
        )
    signed = cast(bool, body.get("signed", False))
    minimum = cast(int, body["min"])
    low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    if not low <= minimum <= high:
        raise SpecError(
            "SPEC_BAD_RANGE", f"min {minimum} is outside the field's range {low}..{high}",
            location=section.document.location(join_path(section.path, "min")),
        )
    scope = cast(Scope, body.get("scope", "system-feature"))
    return Feature(
        id=section.name,
        title=str(body["title"]),
        capability=str(body["capability"]),
        register=register,
        shift=shift,
        min_value=minimum,
        width=width,
        signed=signed,
        scope=scope,
        optional_for_late_cpu=cast(bool, body.get("optional_for_late_cpu", False)),
        permitted_for_late_cpu=cast(bool, body.get("permitted_for_late_cpu", True)),
        refs=_refs(section),
    )


def _numbering(section: _Section) -> CapNumbering:
    body = section.body
    document = section.document
    ncaps = cast(int, body["ncaps"])
    numbers = cast(Mapping[str, int], body["numbers"])
    seen: dict[int, str] = {}
    for name, number in numbers.items():
        where = document.location(join_path(join_path(section.path, "numbers"), name))
        if number >= ncaps:
            raise SpecError("SPEC_BAD_RANGE",
                            f"{name} = {number} is not below NCAPS ({ncaps})", location=where)
        if number in seen:
            raise SpecError("SPEC_DUPLICATE_ID",
                            f"{name} and {seen[number]} share number {number}", location=where)
        seen[number] = name
    aliases = cast(Mapping[str, str], body.get("aliases", {}))
    for alias, target in aliases.items():
        if target not in numbers:
            raise SpecError(
                "SPEC_BAD_REFERENCE", f"alias {alias} -> {target}: {target} has no number",
                location=document.location(join_path(join_path(section.path, "aliases"), alias)),
                hint=did_you_mean(target, numbers),
            )
    marking = cast(CallbackMarking, body["callback_marking"])
    conditional = cast(bool, body.get("callbacks_conditional", False))
    _check_dialect_rules(section, marking, conditional)
    return CapNumbering(
        dialect=cast(Dialect, section.name),
        ncaps=ncaps,
        numbers=MappingProxyType(dict(numbers)),
        note=str(body.get("note", "")),
        aliases=MappingProxyType(dict(aliases)),
        callback_marking=marking,
        callbacks_conditional=conditional,
    )


def _check_dialect_rules(section: _Section, marking: CallbackMarking, conditional: bool) -> None:
    """A numbering named after a dialect restates two of its rules for readers of the
    catalog; the code asks the dialect table, so the two must agree."""
    if not is_dialect(section.name):
        return
    row = traits(section.name)
    for key, stated, actual in (("callback_marking", marking, row.callbacks),
                                ("callbacks_conditional", conditional,
                                 row.conditional_callbacks)):
        if stated != actual:
            raise SpecError(
                "SPEC_DIALECT_MISMATCH",
                f"numbering {section.name} says {key}: {_yaml_word(stated)}, but the "
                f"{section.name} dialect has {_yaml_word(actual)}",
                location=section.document.location(join_path(section.path, key)),
            )


def _yaml_word(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def known_capabilities(catalog: Catalog) -> frozenset[str]:
    """Every capability name a case may use: catalog caps and every dialect's names."""
    names = set(catalog.capabilities())
    for numbering in catalog.numberings.values():
        names.update(numbering.numbers)
        names.update(numbering.aliases)
    return frozenset(names)


__all__ = [
    "display_path",
    "format_revision",
    "known_capabilities",
    "load_catalog",
    "parse_revision",
    "read_catalog",
    "resolve_catalog_dir",
]
