"""Mutated case files: only coded SpecErrors ever escape the loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.case import resolve_document
from pytest_altpatch.cases.yamlload import load_yaml_text
from pytest_altpatch.errors import ERROR_CODES, SpecError
from pytest_altpatch.resources import bundled_corpus

from .conftest import VALID_CASE

CATALOG = load_catalog()
SOURCES = [VALID_CASE] + [
    path.read_text() for path in sorted((bundled_corpus() / "cases").rglob("*.yaml"))
]

_FRAGMENTS = ["- ", ": ", "{", "}", "[", "]", '"', "'", "&a ", "*a", "!!python/object:x ",
              "<<: ", "\t", "0x", "r1p2", "2x ", "cortex-a53", "ALTERNATIVE(", "|", "#",
              "~", "yes", "\n  ", "format: 2", "\x00", "é"]


def _load(text: str, tmp: Path) -> None:
    path = tmp / "mutant.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_case(path, CATALOG)
    except SpecError as exc:
        assert exc.code in ERROR_CODES and exc.code.startswith("SPEC_")
        assert exc.location.file is not None


@st.composite
def text_mutants(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SOURCES))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "truncate", "swap"]))
        index = draw(st.integers(0, max(len(lines) - 1, 0)))
        if kind == "delete" and lines:
            del lines[index]
        elif kind == "duplicate" and lines:
            lines.insert(index, lines[index])
        elif kind == "insert" and lines:
            line = lines[index]
            at = draw(st.integers(0, len(line)))
            piece = draw(st.sampled_from(_FRAGMENTS) | st.text(max_size=4))
            lines[index] = line[:at] + piece + line[at:]
        elif kind == "truncate":
            joined = "".join(lines)
            lines = [joined[: draw(st.integers(0, len(joined)))]]
        elif kind == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    return "".join(lines)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12)
    | st.sampled_from(["cortex-a53/r0p4", "ALT_TEST_ON", "all", "boot", "x0", "LENGTH_MISMATCH"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def structure_mutants(draw: st.DrawFn) -> str:
    document = yaml.safe_load(draw(st.sampled_from(SOURCES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace":
            parent[last] = draw(_JSONISH)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(last)
    return yaml.safe_dump(document, sort_keys=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(text=text_mutants())
def test_text_mutations_raise_only_coded_spec_errors(text: str, tmp_path: Path) -> None:
    _load(text, tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(text=structure_mutants())
def test_structure_mutations_raise_only_coded_spec_errors(text: str, tmp_path: Path) -> None:
    _load(text, tmp_path)


def test_alias_bomb_is_a_syntax_error_not_a_hang() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    try:
        resolve_document(load_yaml_text(bomb, "bomb.yaml"), CATALOG)
    except SpecError as exc:
        assert exc.code == "SPEC_SYNTAX"
    else:
        raise AssertionError("an alias bomb must be refused")


def test_recursive_alias_is_a_syntax_error() -> None:
    try:
        load_yaml_text("a: &a [*a]\n", "loop.yaml")
    except SpecError as exc:
        assert exc.code == "SPEC_SYNTAX"
    else:
        raise AssertionError("a recursive alias must be refused")
