"""The resolved corpus as one JSON document, for harnesses not written in Python.

Every model object becomes a JSON object of its fields; tuples become arrays;
numbers (MIDRs, register values) stay integers.  Keys are sorted, so the same corpus
always exports to the same bytes.  ``Case.locations`` is left out (every object
keeps its own ``location``), and empty locations are omitted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Final

from pytest_altpatch.cases.model import Catalog, Corpus
from pytest_altpatch.errors import Location

#: Version of the export document's layout (not of the corpus).
EXPORT_FORMAT: Final = 1

_OMITTED_FIELDS: Final = frozenset({"locations"})


def to_plain(value: object) -> object:
    """Model objects -> JSON-compatible values (dicts, lists, str, int, bool, None)."""
    if isinstance(value, Location):
        return {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: to_plain(getattr(value, item.name))
            for item in dataclasses.fields(value)
            if item.name not in _OMITTED_FIELDS
        }
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if value is None or isinstance(value, (str, int, bool, float)):
        return value
    return str(value)


def catalog_document(catalog: Catalog) -> dict[str, object]:
    """The catalog as plain JSON-compatible data."""
    plain = to_plain(catalog)
    assert isinstance(plain, dict)  # a dataclass always becomes a dict
    plain["capabilities"] = list(catalog.capabilities())
    return plain


def corpus_document(corpus: Corpus) -> dict[str, object]:
    """The whole corpus as plain JSON-compatible data."""
    return {
        "export_format": EXPORT_FORMAT,
        "corpus_version": corpus.version,
        "catalog": catalog_document(corpus.catalog),
        "cases": [to_plain(case) for case in corpus.cases],
    }


def dumps(document: object) -> str:
    """Deterministic JSON text (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


__all__ = ["EXPORT_FORMAT", "catalog_document", "corpus_document", "dumps", "to_plain"]
