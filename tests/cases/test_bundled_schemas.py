"""The shipped JSON schemas are themselves valid (the loader trusts them unchecked)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from pytest_altpatch.resources import bundled_corpus


@pytest.mark.parametrize("name", ["case", "catalog"])
def test_bundled_schema_is_a_valid_json_schema(name: str) -> None:
    path = bundled_corpus() / "schema" / f"{name}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # raises SchemaError on an invalid schema


def test_a_broken_schema_is_refused() -> None:
    # The check above can fail: "type" must be a string or a list of strings.
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema({"type": 12})
