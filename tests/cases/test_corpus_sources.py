"""Every bundled case names public sources and derives the words it expects."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_altpatch.cases import load_corpus

CORPUS = load_corpus()
#: Documents a user of the corpus never gets (the project's own notes).
PRIVATE_SOURCES = re.compile(r"reference notes|bug history", re.IGNORECASE)
ROOT = Path(__file__).resolve().parents[2]


def test_every_case_cites_only_public_sources() -> None:
    private = [(case.id, ref) for case in CORPUS.cases for ref in case.refs
               if PRIVATE_SOURCES.search(ref)]
    assert all(case.refs for case in CORPUS.cases)
    assert private == []


def test_every_case_expecting_words_has_a_derivation_comment() -> None:
    missing = []
    for case in CORPUS.cases:
        phases = [case.expect.boot, case.expect.boot_cpu]
        if case.expect.late is not None:
            phases += [case.expect.late.load, case.expect.late.apply, case.expect.late.revert]
        if not any(phase is not None and phase.text for phase in phases):
            continue
        text = (ROOT / case.path).read_text(encoding="utf-8")
        expect = text[text.index("\nexpect:"):]
        if not re.search(r"^\s*#", expect, re.MULTILINE):
            missing.append(case.id)
    assert missing == []
