"""Fixtures for the spec layer's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_altpatch.cases import load_catalog
from pytest_altpatch.cases.model import Catalog

#: A small valid case; tests edit it line by line, so line numbers below are stable.
VALID_CASE = """\
format: 1
id: test/minimal
title: "minimal case"
refs: ["unit test"]
requires: [branch-reloc]
platform: ["2x cortex-a57/r1p3", "cortex-a53/r0p4 revidr=0x100"]
caps:
  - {name: ALT_TEST_ON, when: always}
image:
  text: |
    entry:
    site: ALTERNATIVE("mov x0, #1", "b fast", ALT_TEST_ON)
        ret
    fast:
        mov x0, #2
        ret
expect:
  boot:
    text:
      site: "b fast"
    probes:
      - {call: entry, cpus: all, result: {x0: 2}}
"""


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


@pytest.fixture
def write_case(tmp_path: Path) -> Callable[[str], Path]:
    """Write case text to a fresh file and return its path."""
    counter = iter(range(1_000_000))

    def write(text: str) -> Path:
        path = tmp_path / f"case{next(counter)}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
