"""The escaping stream the CLI writes through."""

from __future__ import annotations

import gc
import io
import sys

import pytest

from pytest_altpatch.terminal import EscapingStream


def test_text_is_escaped_and_colour_kept() -> None:
    target = io.StringIO()
    stream = EscapingStream(target)
    assert stream.write("a\x1b[2Jb \x1b[1;31mred\x1b[0m\n") == 22
    stream.flush()
    assert target.getvalue() == "a\\x1b[2Jb \x1b[1;31mred\x1b[0m\n"


def test_a_wrapper_outliving_its_target_is_collected_quietly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    target = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # like captured output
    stream = EscapingStream(target)
    stream.write("text")
    target.close()
    stream.flush()  # no ValueError from the closed target
    del stream
    gc.collect()
    assert unraisable == []
