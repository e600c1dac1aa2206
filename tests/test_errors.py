"""The error and finding families: stable codes, locations, pickling."""

from __future__ import annotations

import pickle

import pytest

from pytest_altpatch.errors import ERROR_CODES, AltpatchError, Location, PatchError, SpecError
from pytest_altpatch.findings import FINDING_CODES, Finding


def test_location_renders_file_line_column_and_json_path() -> None:
    loc = Location(file="cases/a.yaml", line=3, column=7, json_path="image.text")
    assert str(loc) == "cases/a.yaml:3:7, at image.text"


def test_location_renders_site_and_address() -> None:
    assert str(Location(site=2, address=0x400010)) == "site #2, address 0x400010"


def test_error_message_starts_with_location_and_code() -> None:
    exc = SpecError("SPEC_SCHEMA", "bad key", location=Location(file="x.yaml", line=1, column=2))
    assert str(exc) == "x.yaml:1:2: SPEC_SCHEMA: bad key"
    assert exc.phase == "load"


def test_unregistered_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unregistered"):
        AltpatchError("NOT_A_CODE", "x")


def test_relocated_fills_unknown_fields_only() -> None:
    exc = PatchError("LENGTH_MISMATCH", "8 != 4", location=Location(site=1, address=0x10))
    moved = exc.relocated(Location(file="c.yaml", line=9, address=0x99))
    assert moved.location == Location(file="c.yaml", line=9, site=1, address=0x10)
    assert isinstance(moved, PatchError) and moved.phase == "boot"


def test_errors_survive_pickling_for_xdist() -> None:
    exc = SpecError("SPEC_SYNTAX", "oops", location=Location(file="f", line=1), hint="h")
    back = pickle.loads(pickle.dumps(exc))
    assert (back.code, back.message, back.location, back.hint) == (
        "SPEC_SYNTAX", "oops", Location(file="f", line=1), "h",
    )


def test_codes_are_upper_case_and_findings_lower_case() -> None:
    assert all(code.isupper() or "_" in code for code in ERROR_CODES)
    assert all(code == code.lower() for code in FINDING_CODES)


def test_finding_renders_where_and_when() -> None:
    f = Finding("ro-write", "store to text", cpu=1, pc=0x400000, address=0x400100, step=12)
    assert f.render() == "ro-write: [cpu1 pc=0x400000 addr=0x400100 step 12] store to text"
    with pytest.raises(ValueError):
        Finding("nope", "x")
