"""Platform lines: which CPUs a case boots, with the registers each one reads.

Syntax of one item (a YAML list entry, or one comma-separated part of a string)::

    [<count>x] <catalog-cpu>/r<variant>p<revision> [<register>=<value> ...]

e.g. ``2x cortex-a53/r0p4 revidr=0x100``.  Overridable registers: ``revidr``,
``ctr`` and the ID registers (``id_aa64isar0`` or ``id_aa64isar0_el1``).  An item may
also be an inline mapping ``{midr: 0x411fd072, revidr: 0, ctr: 0x8444c004,
id_aa64isar0: 0x0, count: 1}``; registers it omits come from the catalog CPU whose
implementer/part number the MIDR carries, and ``ctr`` is required when there is none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from pytest_altpatch.cases.catalog import format_revision, parse_revision
from pytest_altpatch.cases.located import LocatedDocument, join_path
from pytest_altpatch.cases.model import (
    ID_REGISTERS,
    MIDR_MODEL_MASK,
    Catalog,
    CpuInstance,
    CpuModel,
)
from pytest_altpatch.cases.suggestions import did_you_mean
from pytest_altpatch.errors import Location, SpecError

#: Most CPUs one platform item may expand to.
MAX_COUNT = 256

_ITEM = re.compile(
    r"^(?:(?P<count>\d+)\s*x\s+)?(?P<name>[A-Za-z0-9_.+-]+)(?:/(?P<rev>\S+))?(?P<rest>(?:\s+\S+)*)$"
)
_REGISTER_WIDTH = {"revidr": 64, "ctr": 32, "midr": 32}


def _register_name(key: str) -> str | None:
    """Canonical register name for an override key, or None if it is not one."""
    if key in ("revidr", "ctr", "midr"):
        return key
    full = key if key.endswith("_el1") else f"{key}_el1"
    return full if full in ID_REGISTERS else None


def _check_width(name: str, value: int, location: Location) -> int:
    bits = _REGISTER_WIDTH.get(name, 64)
    if not 0 <= value < 1 << bits:
        raise SpecError("SPEC_BAD_RANGE", f"{name}={value:#x} does not fit {bits} bits",
                        location=location)
    return value


def _instance(
    label: str,
    model: CpuModel | None,
    midr: int,
    overrides: Mapping[str, int],
    location: Location,
) -> CpuInstance:
    id_regs = {register: 0 for register in ID_REGISTERS}
    if model is not None:
        id_regs.update({k: v for k, v in model.id_regs.items() if k in id_regs})
    id_regs.update({k: v for k, v in overrides.items() if k in id_regs})
    ctr = overrides.get("ctr", model.ctr if model is not None else 0)
    return CpuInstance(
        label=label,
        model=None if label == "inline" else (model.name if model else None),
        midr=midr,
        revidr=overrides.get("revidr", 0),
        ctr=ctr,
        id_regs=MappingProxyType(id_regs),
        location=location,
    )


def _parse_string_item(text: str, catalog: Catalog, location: Location) -> list[CpuInstance]:
    found = _ITEM.match(text.strip())
    if found is None:
        raise SpecError(
            "SPEC_BAD_PLATFORM",
            f"cannot parse CPU {text.strip()!r}; expected e.g. '2x cortex-a53/r0p4 revidr=0x100'",
            location=location,
        )
    count = int(found.group("count") or 1)
    if not 1 <= count <= MAX_COUNT:
        raise SpecError("SPEC_BAD_RANGE", f"CPU count {count} is not in 1..{MAX_COUNT}",
                        location=location)
    name = found.group("name")
    model = catalog.cpus.get(name)
    if model is None:
        raise SpecError("SPEC_UNKNOWN_CPU", f"unknown CPU {name!r}", location=location,
                        hint=did_you_mean(name, catalog.cpus))
    if found.group("rev") is None:
        raise SpecError(
            "SPEC_BAD_PLATFORM",
            f"CPU {name!r} needs a revision, e.g. {name}/r0p0 (errata depend on it)",
            location=location,
        )
    rv = parse_revision(found.group("rev"), location)
    overrides: dict[str, int] = {}
    for token in found.group("rest").split():
        key, sep, value = token.partition("=")
        register = _register_name(key.lower())
        if not sep or register is None or register == "midr":
            known = ["revidr", "ctr", *(r.removesuffix("_el1") for r in ID_REGISTERS)]
            raise SpecError(
                "SPEC_BAD_PLATFORM",
                f"{token!r} is not a register override (revidr=, ctr=, id_aa64...=)",
                location=location, hint=did_you_mean(key, known),
            )
        try:
            number = int(value, 0)
        except ValueError:
            raise SpecError("SPEC_BAD_PLATFORM", f"{token!r}: {value!r} is not a number",
                            location=location) from None
        overrides[register] = _check_width(register, number, location)
    label = f"{name}/{format_revision(rv)}"
    if overrides:
        label += " " + " ".join(f"{k.removesuffix('_el1')}={v:#x}" for k, v in overrides.items())
    midr = model.midr_model | rv
    return [_instance(label, model, midr, overrides, location) for _ in range(count)]


def _parse_inline_item(
    item: Mapping[str, object], catalog: Catalog, location: Location
) -> list[CpuInstance]:
    values: dict[str, int] = {}
    count = 1
    for key, value in item.items():
        if key == "count":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
                raise SpecError("SPEC_BAD_RANGE", f"count must be 1..{MAX_COUNT}",
                                location=location)
            count = value
            continue
        register = _register_name(key.lower())
        if register is None:
            raise SpecError("SPEC_BAD_PLATFORM", f"{key!r} is not a CPU register",
                            location=location,
                            hint=did_you_mean(key, ["midr", "revidr", "ctr", *ID_REGISTERS]))
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError("SPEC_BAD_PLATFORM", f"{key} must be an integer",
                            location=location)
        values[register] = _check_width(register, value, location)
    if "midr" not in values:
        raise SpecError("SPEC_BAD_PLATFORM", "an inline CPU needs a midr", location=location)
    midr = values.pop("midr")
    model = next(
        (cpu for cpu in catalog.cpus.values()
         if cpu.midr_model & MIDR_MODEL_MASK == midr & MIDR_MODEL_MASK),
        None,
    )
    if model is None and "ctr" not in values:
        raise SpecError(
            "SPEC_BAD_PLATFORM",
            f"midr {midr:#x} matches no catalog CPU, so the inline CPU needs a ctr",
            location=location,
        )
    return [_instance("inline", model, midr, values, location) for _ in range(count)]


def parse_platform_items(
    items: str | Sequence[object],
    catalog: Catalog,
    *,
    document: LocatedDocument | None = None,
    path: str = "platform",
    problems: list[SpecError] | None = None,
) -> tuple[CpuInstance, ...]:
    """Parse platform items, locating errors via ``document`` when given.

    With ``problems``, errors are appended and parsing goes on with the next item;
    without, the first error is raised.
    """
    entries: list[tuple[object, str]] = (
        [(items, path)] if isinstance(items, str)
        else [(item, join_path(path, index)) for index, item in enumerate(items)]
    )
    result: list[CpuInstance] = []
    for item, item_path in entries:
        location = (document.location(item_path) if document is not None
                    else Location(json_path=item_path))
        try:
            if isinstance(item, str):
                parts = [part for part in item.split(",") if part.strip()]
                if not parts:
                    raise SpecError("SPEC_BAD_PLATFORM", "empty CPU list", location=location)
                for part in parts:
                    result.extend(_parse_string_item(part, catalog, location))
            elif isinstance(item, Mapping):
                result.extend(_parse_inline_item(item, catalog, location))
            else:
                raise SpecError("SPEC_BAD_PLATFORM",
                                f"a CPU is a string or a mapping, not {type(item).__name__}",
                                location=location)
        except SpecError as exc:
            if problems is None:
                raise
            problems.append(exc)
    return tuple(result)


def parse_platform(items: str | Sequence[object], catalog: Catalog) -> tuple[CpuInstance, ...]:
    """CPU instances for platform items: ``"2x cortex-a57/r1p0, 2x cortex-a53/r0p4"``,
    a list of such strings, or inline mappings.  Raises a coded :class:`SpecError`."""
    return parse_platform_items(items, catalog)


__all__ = ["MAX_COUNT", "parse_platform", "parse_platform_items"]
