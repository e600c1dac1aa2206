"""Hostile inputs end as coded, located errors before they cost time or memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_altpatch.a64.disasm import disassemble
from pytest_altpatch.cases.catalog import read_catalog
from pytest_altpatch.cases.yamlload import (
    MAX_ALIAS_VALUES,
    MAX_BYTES,
    MAX_NODES,
    load_yaml_file,
    load_yaml_text,
)
from pytest_altpatch.errors import ElfError, SpecError
from pytest_altpatch.image.elf_reader import decode_numbering
from pytest_altpatch.jsontext import nesting_depth
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.terminal import escape_text

from .conftest import VALID_CASE


def _refusal(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_yaml_text(text, "hostile.yaml")
    return caught.value


@pytest.mark.parametrize(("value", "code"), [
    ("!!bool maybe", "SPEC_TAG"),  # a core tag, but not a value it can hold
    ("!!int twelve", "SPEC_TAG"),
    ("!!timestamp not-a-date", "SPEC_TAG"),  # outside the core schema
    ("!!timestamp 2024-01-01", "SPEC_TAG"),
    ("2024-01-01", "SPEC_TAG"),  # an implicit timestamp: quote it
    ("!!binary aGVsbG8=", "SPEC_TAG"),
    ("!!python/object/apply:os.system [true]", "SPEC_TAG"),
    ("!custom x", "SPEC_TAG"),
    ('"\\e[2J"', "SPEC_CHARACTER"),  # a terminal escape
    ('"\\x07bell"', "SPEC_CHARACTER"),
    ('"\\x9b31m"', "SPEC_CHARACTER"),  # C1 control sequence introducer
])
def test_tags_outside_the_safe_core_and_unsafe_strings_are_refused_at_their_value(
        value: str, code: str) -> None:
    error = _refusal(f"format: 1\nid: x\ntitle: {value}\n")
    assert error.code == code
    assert (error.location.line, error.location.column) == (3, 8)


@pytest.mark.parametrize(("text", "value"), [
    ("!!str 12", "12"), ("!!int 12", 12), ("!!bool true", True), ("!!float 1.5", 1.5),
    ("!!null ''", None), ('"tab\\tand\\nnewline"', "tab\tand\nnewline"),
])
def test_safe_core_tags_and_tab_newline_are_accepted(text: str, value: object) -> None:
    assert load_yaml_text(f"a: {text}\n", "ok.yaml").value == {"a": value}


def test_a_lone_surrogate_escape_is_refused_on_its_line() -> None:
    # libyaml refuses the escape itself (SPEC_SYNTAX, at the escape); PyYAML's pure
    # parser builds the string, which the builder refuses (SPEC_CHARACTER).
    error = _refusal('format: 1\nid: x\ntitle: "\\ud800"\n')
    assert error.code in ("SPEC_SYNTAX", "SPEC_CHARACTER")
    assert error.location.line == 3


def test_sequence_and_mapping_tags_must_match_their_kind() -> None:
    assert _refusal("a: !!map [1]\n").code == "SPEC_TAG"
    assert _refusal("a: !!set {x: null}\n").code == "SPEC_TAG"
    assert load_yaml_text("a: !!seq [1]\n", "ok.yaml").value == {"a": [1]}


def test_a_raw_non_printable_character_is_located() -> None:
    error = _refusal("a: 1\nb: x\x07y\n")
    assert (error.code, error.location.line, error.location.column) == ("SPEC_SYNTAX", 2, 5)


def test_a_long_flat_list_stops_at_the_node_limit() -> None:
    text = "[" + "1," * (MAX_BYTES // 2 - 8) + "1]\n"  # just under the size bound
    assert len(text) < MAX_BYTES
    error = _refusal(text)
    assert error.code == "SPEC_SYNTAX" and "more than" in error.message
    assert error.location.line == 1


def test_many_keys_stop_at_the_node_limit() -> None:
    text = "".join(f"k{index}: 1\n" for index in range(400_000))
    error = _refusal(text)
    assert error.code == "SPEC_SYNTAX" and error.location.line is not None


def test_a_large_written_document_loads() -> None:
    # A generated 10,000-site case holds about 110,000 written values in 3 MB: size,
    # not an alias bound, limits what a file without aliases may hold.
    sites = 30_000
    text = "sites:\n" + "".join(f"  - {{name: s{i}, at: {i}}}\n" for i in range(sites))
    assert len(text) < MAX_BYTES and 4 * sites > MAX_ALIAS_VALUES
    document = load_yaml_text(text, "large.yaml")
    assert len(document.value["sites"]) == sites
    assert document.value["sites"][-1] == {"name": f"s{sites - 1}", "at": sites - 1}


def test_aliases_stop_at_their_own_limit_long_before_the_node_limit() -> None:
    # 1,000 values behind one anchor, repeated: 51 aliases pass MAX_ALIAS_VALUES.
    text = "base: &b [" + ", ".join("1" for _ in range(999)) + "]\n" + "".join(
        f"k{i}: *b\n" for i in range(60))
    error = _refusal(text)
    assert error.code == "SPEC_SYNTAX" and "aliases expand" in error.message
    assert error.location.line == 2 + MAX_ALIAS_VALUES // 1000
    assert MAX_NODES > 61 * 1000


def test_deep_nesting_stops_at_the_depth_limit() -> None:
    error = _refusal("a: " + "[" * 100 + "]" * 100 + "\n")
    # "a: " is columns 1-3; the mapping is level 0, so the 64th "[" (column 67) is
    # the first one past MAX_DEPTH = 64 levels.
    assert (error.code, error.location.line, error.location.column) == ("SPEC_SYNTAX", 1, 67)
    assert "deeper" in error.message
    assert _refusal("a: " + "[" * 50_000 + "]" * 50_000 + "\n").code == "SPEC_SYNTAX"


def test_duplicate_keys_are_still_found_on_the_event_stream() -> None:
    error = _refusal("a: 1\nb: 2\na: 3\n")
    assert (error.code, error.location.line) == ("SPEC_DUPLICATE_KEY", 3)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "case.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError) as caught:
        load_yaml_file(fifo)
    assert caught.value.code == "SPEC_IO" and "regular file" in caught.value.message


def test_a_device_is_refused_before_reading() -> None:
    with pytest.raises(SpecError) as caught:
        load_yaml_file(Path("/dev/zero"))
    assert caught.value.code == "SPEC_IO"


def test_an_oversized_file_is_refused_by_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as stream:
        stream.truncate(MAX_BYTES + 1)  # sparse: the size alone must refuse it
    with pytest.raises(SpecError) as caught:
        load_yaml_file(big)
    assert caught.value.code == "SPEC_IO" and "larger" in caught.value.message


def test_deeply_nested_numbering_json_is_malformed_not_a_recursion_error() -> None:
    body = ("[" * 200_000 + "]" * 200_000).encode()
    with pytest.raises(ElfError) as caught:
        decode_numbering(body)
    assert caught.value.code == "ELF_MALFORMED"
    assert caught.value.location.section == ".altpatch.numbering"


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    assert nesting_depth(json.dumps({"a": ["[[[[", {"b": "}}"}]})) == 3


def test_a_symbol_name_is_literal_text_in_disassembly() -> None:
    # b .+8 at 0x1000: imm26 = 8 / 4 = 2 -> 0x14000002, target 0x1008.
    lines = disassemble((0x14000002).to_bytes(4, "little"), 0x1000, {"tgt\\u1": 0x1008})
    assert "tgt\\u1" in lines[0].text


def test_escape_text_shows_controls_and_keeps_only_colour() -> None:
    assert escape_text("a\x1b[2Jb\u202ec\ud800") == "a\\x1b[2Jb\\u202ec\\ud800"
    assert escape_text("\x1b[1;31mred\x1b[0m\x1b]0;t\x07", keep_colour=True) == \
        "\x1b[1;31mred\x1b[0m\\x1b]0;t\\x07"


def _corpus_with_schema_edit(tmp_path: Path, edit: str) -> Path:
    root = tmp_path / "corpus"
    source = bundled_corpus()
    shutil.copytree(source / "catalog", root / "catalog")
    shutil.copytree(source / "schema", root / "schema")
    shutil.copy(source / "VERSION", root / "VERSION")
    schema = root / "schema" / "catalog.schema.json"
    document = json.loads(schema.read_text())
    document["$defs"]["probe_edit"] = json.loads(edit)
    document.setdefault("properties", {})["probe_edit"] = {"$ref": "#/$defs/probe_edit"}
    schema.write_text(json.dumps(document))
    return root


@pytest.mark.parametrize(("edit", "code"), [
    ('{"$ref": "http://127.0.0.1:9/never-fetched.json"}', "SPEC_SCHEMA_REF"),
    ('{"$ref": "file:///etc/passwd"}', "SPEC_SCHEMA_REF"),
    ('{"$ref": "#/$defs/absent"}', "SPEC_SCHEMA_REF"),
    ('{"type": "string", "pattern": "^(a+)+$"}', "SPEC_SCHEMA_PATTERN"),
    ('{"type": "object", "patternProperties": {"^(a|aa)*$": {}}}', "SPEC_SCHEMA_PATTERN"),
    ('{"type": "string", "pattern": "([a-z"}', "SPEC_SCHEMA_PATTERN"),
])
def test_a_corpus_schema_is_never_fetched_nor_trusted(tmp_path: Path, edit: str,
                                                      code: str) -> None:
    _, problems = read_catalog(_corpus_with_schema_edit(tmp_path, edit))
    assert problems and problems[0].code == code
    assert problems[0].location.file is not None and problems[0].location.file.endswith(
        "catalog.schema.json")


def test_a_closed_stdout_ends_the_command_quietly() -> None:
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    command = subprocess.run([sys.executable, "-m", "pytest_altpatch.cli", "catalog"],
                             stdout=reader.stdin, stderr=subprocess.PIPE, check=False,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    reader.stdin.close()
    reader.wait()
    assert command.returncode in (0, 1)
    assert b"Traceback" not in command.stderr and b"internal error" not in command.stderr


def test_the_valid_case_still_loads() -> None:
    assert load_yaml_text(VALID_CASE, "valid.yaml").value is not None
