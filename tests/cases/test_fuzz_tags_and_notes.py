"""Fuzzed YAML tags and string contents, and fuzzed ELF numbering notes: only coded,
located errors ever come out, and what loads holds only safe values."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_altpatch.cases import load_corpus
from pytest_altpatch.cases.yamlload import load_yaml_text
from pytest_altpatch.errors import ERROR_CODES, AltpatchError, SpecError
from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.elf_reader import decode_numbering, read_image
from pytest_altpatch.image.elf_writer import encode_numbering, write_image
from pytest_altpatch.scenarios.harness import harness_source

_TAGS = ["", "!", "!!str", "!!int", "!!float", "!!bool", "!!null", "!!seq", "!!map",
         "!!timestamp", "!!binary", "!!set", "!!omap", "!!pairs", "!!merge", "!!value",
         "!!python/object:os.system", "!!python/name:os.system", "!<tag:yaml.org,2002:str>",
         "!<tag:example.com,2000:x>", "!local", "!!"]
_UNSAFE = {chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20),
                            *range(0x7F, 0xA0))}


def _safe(value: object) -> bool:
    """Plain core values only, and no string holding a control character or surrogate."""
    if isinstance(value, str):
        return not any(c in _UNSAFE or 0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return all(_safe(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _safe(k) and _safe(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float))


def _scalar(text: str, style: str) -> str:
    if style == "double":
        return json.dumps(text)  # JSON escapes are YAML double-quoted escapes
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag=st.sampled_from(_TAGS) | st.text(max_size=12).map(lambda t: "!" + t),
       text=st.text(st.characters(codec=None), max_size=24),
       style=st.sampled_from(["plain", "single", "double", "flow-seq"]))
def test_any_tag_and_string_loads_safely_or_is_a_coded_located_error(
        tag: str, text: str, style: str) -> None:
    scalar = _scalar(text, "double" if style == "flow-seq" else style)
    value = f"[{scalar}]" if style == "flow-seq" else scalar
    document = f"format: 1\ntitle: {tag} {value}\nother: end\n"
    try:
        loaded = load_yaml_text(document, "fuzz.yaml")
    except SpecError as exc:
        assert exc.code in ERROR_CODES and exc.code.startswith("SPEC_")
        assert exc.location.file == "fuzz.yaml"
        assert exc.location.line is not None
        return
    assert _safe(loaded.value)


_NOTE = load_corpus()
_CASE = next(case for case in _NOTE.cases if case.id == "branch/b-external")
_NUMBERING = _NOTE.catalog.numberings["linux-6.1"]
_IMAGE = build_image(_CASE, dialect="linux-6.1", numbering=_NUMBERING,
                     harness_text=harness_source())
_ELF = write_image(_IMAGE)
_BODY = encode_numbering(_IMAGE.numbering)  # the dialect's numbering plus the case's caps
_FRAGMENTS = ["[", "]", "{", "}", '"', "\\", ":", ",", "0", "-1", "1e999", "null", "true",
              '"dialect"', '"linux-6.1"', '"ncaps"', '"numbers"', '"\\ud800"', " ", "\x00",
              "\xff"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=4), max_size=400),
       nesting=st.integers(0, len(_BODY) // 2))
def test_any_numbering_note_reads_or_is_elf_malformed(pieces: list[str], nesting: int) -> None:
    text = "[" * nesting + "".join(pieces) + "]" * nesting
    raw = text.encode("utf-8", "surrogatepass")[:len(_BODY)].ljust(len(_BODY), b" ")
    assert _ELF.count(_BODY) == 1
    mutated = _ELF.replace(_BODY, raw)  # same length: the rest of the ELF stays valid
    try:
        image = read_image(mutated)
    except AltpatchError as exc:
        assert exc.code == "ELF_MALFORMED"
        assert exc.location.section == ".altpatch.numbering"
        return
    assert image.numbering is not None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(_FRAGMENTS), max_size=50),
       nesting=st.integers(0, 5000), opener=st.sampled_from(["[", '{"a":']))
def test_any_numbering_body_of_any_depth_decodes_or_is_elf_malformed(
        pieces: list[str], nesting: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * nesting + "".join(pieces) + closer * nesting
    try:
        decode_numbering(text.encode("utf-8", "surrogatepass"))
    except AltpatchError as exc:
        assert exc.code == "ELF_MALFORMED"
