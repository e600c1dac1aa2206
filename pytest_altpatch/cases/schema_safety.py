"""A corpus's JSON schemas are data from elsewhere: nothing in them is fetched or trusted.

``$ref`` resolves only against the schemas in the corpus's ``schema/`` directory (a
registry of local resources, by file name and by ``$id``); any other reference,
``http://`` and ``file://`` alike, is a coded ``SPEC_SCHEMA_REF`` when the schema is
loaded, and a retrieval is never attempted.  Every ``pattern`` and
``patternProperties`` key is checked at load for the shapes that make a backtracking
engine exponential (a repeat of something that itself repeats or alternates, unless
each round starts with a literal the inner repeats cannot eat, as in
``(/[a-z]+)*``): those are ``SPEC_SCHEMA_PATTERN``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

from pytest_altpatch.cases.located import read_bounded
from pytest_altpatch.errors import Location, SpecError
from pytest_altpatch.jsontext import loads_bounded


def _sre(name: str) -> Any:
    """The regular-expression parser's module (``re._parser`` from 3.11, else ``sre_*``)."""
    try:
        return importlib.import_module(f"re._{name}")
    except ImportError:  # pragma: no cover - Python 3.10
        return importlib.import_module("sre_parse" if name == "parser" else f"sre_{name}")


sre_constants: Any = _sre("constants")
sre_parse: Any = _sre("parser")


#: Bytes of one schema file we are willing to read.
MAX_SCHEMA_BYTES: Final = 1024 * 1024
MAX_PATTERN_CHARS: Final = 1000

_REPEATS: Final = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT,
                   getattr(sre_constants, "POSSESSIVE_REPEAT", sre_constants.MAX_REPEAT))


def read_schema(path: Path) -> Any:
    """A schema file's JSON, bounded in size and depth (``SPEC_IO`` otherwise)."""
    raw = read_bounded(path, str(path), MAX_SCHEMA_BYTES)
    try:
        return loads_bounded(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpecError("SPEC_IO", f"cannot read schema: {exc}",
                        location=Location(file=str(path))) from None


def _refuse(uri: str) -> Resource[Any]:
    """The registry's retrieval: nothing outside the corpus's schema/ is ever fetched."""
    raise NoSuchResource(uri)


def local_registry(schema_dir: Path) -> Registry[Any]:
    """Every ``*.json`` schema of ``schema_dir``, by file name and by ``$id``."""
    resources: list[tuple[str, Resource[Any]]] = []
    for path in sorted(schema_dir.glob("*.json")):
        contents = read_schema(path)
        resource = Resource.from_contents(contents, default_specification=DRAFT202012)
        resources.append((path.name, resource))
        if isinstance(contents, dict) and isinstance(contents.get("$id"), str):
            resources.append((contents["$id"], resource))
    registry: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]
    return registry.with_resources(resources)


def _walk(value: object, path: str = "") -> Iterator[tuple[str, str, object]]:
    """(json path, key, value) for every key of every object in a schema."""
    if isinstance(value, dict):
        for key, child in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield where, str(key), child
            yield from _walk(child, where)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _walk(child, f"{path}.{index}" if path else str(index))


def check_references(schema: object, registry: Registry[Any], file: Path) -> None:
    """Every ``$ref`` in ``schema`` resolves in the local registry (``SPEC_SCHEMA_REF``)."""
    base = schema.get("$id", "") if isinstance(schema, dict) else ""
    resolver = registry.resolver(base_uri=str(base))
    for where, key, value in _walk(schema):
        if key != "$ref" or not isinstance(value, str):
            continue
        try:
            resolver.lookup(value)
        except Unresolvable:
            raise SpecError("SPEC_SCHEMA_REF",
                            f"$ref {value!r} does not resolve inside the corpus's schema/ "
                            "directory (nothing is fetched)",
                            location=Location(file=str(file), json_path=where)) from None


def _unbounded(item: tuple[Any, Any]) -> bool:
    op, argument = item
    return op in _REPEATS and argument[1] > 1


def _first_literal(body: Any) -> int | None:
    items = list(body)
    if items and items[0][0] == sre_constants.LITERAL:
        return int(items[0][1])
    return None


def _eats(body: Any, char: int) -> bool:
    """Whether a repeat or alternation inside ``body`` could consume ``char``."""
    text = chr(char)
    for op, argument in body:
        if op in _REPEATS:
            inner = argument[2]
            if argument[1] > 1 and _matches_char(inner, text):
                return True
            if _eats(inner, char):
                return True
        elif op == sre_constants.SUBPATTERN:
            if _eats(argument[-1], char):
                return True
        elif op == sre_constants.BRANCH:
            return True
    return False


def _matches_char(body: Any, text: str) -> bool:
    pattern = _pattern_text(body)
    if pattern is None:
        return True  # cannot tell: assume the worst
    try:
        return re.fullmatch(pattern, text) is not None
    except re.error:
        return True


def _pattern_text(body: Any) -> str | None:
    """A pattern matching one character as ``body`` does, for the simple cases."""
    items = list(body)
    if len(items) != 1:
        return None
    op, argument = items[0]
    if op == sre_constants.LITERAL:
        return re.escape(chr(argument))
    if op == sre_constants.ANY:
        return "(?s:.)"
    if op == sre_constants.IN:
        return None if any(o == sre_constants.NEGATE for o, _ in argument) else _set_text(
            argument)
    return None


def _set_text(members: Any) -> str | None:
    parts: list[str] = []
    for op, argument in members:
        if op == sre_constants.LITERAL:
            parts.append(re.escape(chr(argument)))
        elif op == sre_constants.RANGE:
            parts.append(f"{re.escape(chr(argument[0]))}-{re.escape(chr(argument[1]))}")
        else:
            return None
    return f"[{''.join(parts)}]"


def _nested_risk(body: Any, inside_repeat: bool) -> bool:
    """Whether ``body`` holds a repeat (or alternation) that can backtrack without bound;
    ``inside_repeat``: ``body`` is one round of an unanchored outer repeat."""
    for op, argument in body:
        if op in _REPEATS:
            inner = argument[2]
            if argument[1] > 1:
                if inside_repeat or _risky_round(inner):
                    return True
            elif _nested_risk(inner, inside_repeat):
                return True
        elif op == sre_constants.SUBPATTERN:
            if _nested_risk(argument[-1], inside_repeat):
                return True
        elif op == sre_constants.BRANCH:
            if inside_repeat or any(_nested_risk(branch, False) for branch in argument[1]):
                return True
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT) \
                and _nested_risk(argument[1], inside_repeat):
            return True
    return False


def _risky_round(body: Any) -> bool:
    """Whether one round of a repeated ``body`` can be split between rounds in many ways."""
    items = list(body)
    while len(items) == 1 and items[0][0] == sre_constants.SUBPATTERN:
        items = list(items[0][1][-1])
    first = _first_literal(items)
    if first is not None and not _eats(items[1:], first):
        # Each round starts with a character only that literal takes: rounds cannot
        # overlap, so only what nests inside one round matters.
        return _nested_risk(items, inside_repeat=False)
    return _nested_risk(items, inside_repeat=True)


def check_pattern(pattern: str, file: Path, where: str) -> None:
    """Refuse a pattern that does not compile or could backtrack without bound."""
    location = Location(file=str(file), json_path=where)
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SpecError("SPEC_SCHEMA_PATTERN", f"pattern is longer than {MAX_PATTERN_CHARS}",
                        location=location)
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise SpecError("SPEC_SCHEMA_PATTERN", f"pattern {pattern!r} does not compile: {exc}",
                        location=location) from None
    if _nested_risk(parsed, inside_repeat=False):
        raise SpecError("SPEC_SCHEMA_PATTERN",
                        f"pattern {pattern!r} repeats a repeat or an alternation, which can "
                        "backtrack exponentially; anchor each round with a literal",
                        location=location)


def check_patterns(schema: object, file: Path) -> None:
    """Check every ``pattern`` and ``patternProperties`` key of ``schema``."""
    for where, key, value in _walk(schema):
        if key == "pattern" and isinstance(value, str):
            check_pattern(value, file, where)
        elif key == "patternProperties" and isinstance(value, dict):
            for pattern in value:
                check_pattern(str(pattern), file, f"{where}.{pattern}")


__all__ = ["check_pattern", "check_patterns", "check_references", "local_registry",
           "read_schema"]
