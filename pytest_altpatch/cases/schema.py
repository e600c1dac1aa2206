"""JSON Schema validation of case and catalog documents, with located errors.

The schemas live in the corpus (``corpus/schema/*.schema.json``) so editors and
non-Python harnesses can use the very files the loader uses.  jsonschema reports
paths as lists of keys; we turn each error into a :class:`SpecError` located at the
offending node (or, for an unknown key, at the key itself, with a "did you mean").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pytest_altpatch.cases.located import LocatedDocument, join_path
from pytest_altpatch.cases.suggestions import did_you_mean
from pytest_altpatch.errors import Location, SpecError

if TYPE_CHECKING:  # jsonschema is imported when a document is first validated
    import jsonschema
    from jsonschema.exceptions import ValidationError

SCHEMA_DIR_NAME = "schema"


@lru_cache(maxsize=16)
def _validator(schema_file: str) -> jsonschema.protocols.Validator:
    import jsonschema  # noqa: PLC0415 - only a cache miss validates (see document_cache)

    from pytest_altpatch.cases.schema_safety import (  # noqa: PLC0415
        check_patterns,
        check_references,
        local_registry,
        read_schema,
    )

    path = Path(schema_file)
    schema = read_schema(path)
    check_patterns(schema, path)  # before the metaschema, which only says "not a regex"
    cls = jsonschema.validators.validator_for(schema)
    if not _is_bundled(path):  # the shipped schemas are checked by the test suite
        try:
            cls.check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            raise SpecError("SPEC_IO", f"not a valid JSON schema: {exc.message}",
                            location=Location(file=str(path))) from None
    # Nothing in a corpus's schema is fetched or trusted: local $refs, checked patterns.
    registry = local_registry(path.parent)
    check_references(schema, registry, path)
    validator: jsonschema.protocols.Validator = cls(schema, registry=registry)
    return validator


def _is_bundled(path: Path) -> bool:
    from pytest_altpatch.resources import bundled_corpus  # noqa: PLC0415

    return path.resolve().parent == (bundled_corpus() / SCHEMA_DIR_NAME).resolve()


def schema_path(corpus_root: Path, name: str) -> Path:
    """The schema file ``<root>/schema/<name>.schema.json``."""
    return corpus_root / SCHEMA_DIR_NAME / f"{name}.schema.json"


def _json_path(parts: Sequence[object]) -> str:
    path = ""
    for part in parts:
        path = join_path(path, str(part))
    return path


def _leaf(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf failures, the most relevant sub-error (deepest, then first)."""
    while error.context:
        from jsonschema.exceptions import best_match  # noqa: PLC0415

        chosen = best_match(error.context)
        if chosen is None or chosen is error:
            break
        error = chosen
    return error


def _unknown_keys(error: ValidationError) -> list[str]:
    instance = error.instance
    schema = error.schema
    if not isinstance(instance, Mapping) or not isinstance(schema, Mapping):
        return []
    known = set(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    return sorted(
        key for key in instance
        if key not in known and not any(re.search(p, str(key)) for p in patterns)
    )


def _short(value: object) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_spec_errors(error: ValidationError, document: LocatedDocument) -> Iterator[SpecError]:
    error = _leaf(error)
    path = _json_path(list(error.absolute_path))
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = list(schema.get("properties", {}))
        for key in _unknown_keys(error):
            child = join_path(path, key)
            yield SpecError(
                "SPEC_SCHEMA",
                f"unknown key {key!r}" + (f" in {path}" if path else ""),
                location=document.location(child, key=True),
                hint=did_you_mean(key, allowed),
            )
        return
    if error.validator == "required":
        found = re.match(r"'(.+)' is a required property", error.message)
        name = found.group(1) if found else error.message
        yield SpecError("SPEC_SCHEMA", f"missing required key {name!r}"
                        + (f" in {path}" if path else " at top level"),
                        location=document.location(path))
        return
    if error.validator == "enum":
        options = [str(option) for option in cast(list[object], error.validator_value)]
        yield SpecError(
            "SPEC_SCHEMA",
            f"{_short(error.instance)} is not one of {', '.join(options)}",
            location=document.location(path),
            hint=did_you_mean(str(error.instance), options),
        )
        return
    description = ""
    if isinstance(error.schema, Mapping):
        description = str(error.schema.get("description", ""))
    message = error.message
    if len(message) > 160:
        message = message[:157] + "..."
    if error.validator in ("pattern", "type", "const", "minimum", "maximum", "minItems",
                           "maxItems", "minLength", "uniqueItems", "oneOf", "anyOf"):
        message = f"{_short(error.instance)} is invalid here ({error.validator}: " \
                  f"{_short(error.validator_value)})"
        if error.validator == "type":
            message = f"{_short(error.instance)} is not of type {error.validator_value}"
    yield SpecError("SPEC_SCHEMA", message, location=document.location(path),
                    hint=description or None)


def _sort_key(error: SpecError) -> tuple[int, int, int, str]:
    # A misspelt key also makes the right key "missing"; the misspelling is the
    # more useful report, so missing-key errors come after the others.
    loc = error.location
    missing = error.message.startswith("missing required key")
    return (int(missing), loc.line or 0, loc.column or 0, error.message)


def validate(document: LocatedDocument, schema_file: Path) -> list[SpecError]:
    """Every schema problem of ``document``, sorted by position in the file."""
    try:
        validator = _validator(str(schema_file))
    except SpecError as exc:  # the corpus's schema itself is unusable: that file's problem
        return [exc]
    value: Any = document.value
    problems: list[SpecError] = []
    seen: set[str] = set()
    for error in validator.iter_errors(value):
        for problem in _to_spec_errors(error, document):
            rendered = problem.render()
            if rendered not in seen:
                seen.add(rendered)
                problems.append(problem)
    return sorted(problems, key=_sort_key)


__all__ = ["schema_path", "validate"]
