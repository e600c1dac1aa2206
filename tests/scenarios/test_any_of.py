"""``any_of``: several outcomes a case allows for a stream, an error or a refusal code."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.errors import Location, PatchError
from pytest_altpatch.image.model import AltEntry
from pytest_altpatch.judge import judge
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.contract import LateCpuEnvironment, PatchEnvironment
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios.runner import run_case

ANY_OF: Final = bundled_corpus() / "cases" / "any-of"
REVIDR: Final = bundled_corpus() / "cases" / "detection" / "revidr-fixed-on-every-cpu.yaml"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


class LiteralsFirst(ReferencePatcher):
    """Checks a replacement's literals before comparing lengths."""

    def _apply_entry(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry,
                     mask: frozenset[int], alias_offset: int) -> bool:
        if self.rules.refuse_literals and entry.repl_len:
            for slot in range(entry.repl_len // 4):
                self._relocated(ctx.read32(entry.target + 4 * slot), entry, slot)
        return super()._apply_entry(ctx, env, entry, mask, alias_offset)


class RefusesOddly(ReferencePatcher):
    def _apply_entry(self, ctx: CpuContext, env: PatchEnvironment, entry: AltEntry,
                     mask: frozenset[int], alias_offset: int) -> bool:
        raise PatchError("PATCHER_UNSUPPORTED", "no", location=Location(site=entry.index))


class FeaturesFirst(ReferencePatcher):
    """Reports a missing feature before a missing workaround."""

    def verify_late_cpu(self, ctx: CpuContext, env: LateCpuEnvironment) -> str | None:
        code = super().verify_late_cpu(ctx, env)
        return "LATE_CPU_MISSING_FEATURE" if code == "LATE_CPU_ERRATUM" else code


def test_either_allowed_error_passes_and_a_third_fails(catalog: Catalog) -> None:
    case = load_case(ANY_OF / "length-mismatch-with-literal.yaml", catalog)
    literal_first = run_case(case, catalog, mode="boot", patcher=LiteralsFirst("linux-6.1"))
    assert literal_first.error is not None and literal_first.error.code == \
        "LITERAL_IN_REPLACEMENT"
    assert judge(case, literal_first).passed
    odd = run_case(case, catalog, mode="boot", patcher=RefusesOddly("linux-6.1"))
    assert judge(case, odd).codes == ("error-mismatch",)


def test_either_allowed_refusal_code_passes(catalog: Catalog) -> None:
    case = load_case(ANY_OF / "late-cpu-two-reasons.yaml", catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=FeaturesFirst("linux-6.1"))
    (plugged,) = outcome.hotplug
    assert (plugged.code, plugged.patcher_code) == ("LATE_CPU_ERRATUM",
                                                    "LATE_CPU_MISSING_FEATURE")
    assert judge(case, outcome).passed


@pytest.mark.parametrize(("streams", "passes"), [
    ('["mov x0, #2", "mov x0, #1"]', True),  # the second choice is what was patched
    ('["mov x0, #2", "mov x0, #3"]', False),
])
def test_a_stream_passes_when_any_choice_matches(tmp_path: Path, catalog: Catalog,
                                                 streams: str, passes: bool) -> None:
    text = REVIDR.read_text(encoding="utf-8")
    old = '      site_845719: "mov x0, #1"\n'
    assert old in text
    path = tmp_path / "case.yaml"
    path.write_text(text.replace(old, f"      site_845719: {{any_of: {streams}}}\n"),
                    encoding="utf-8")
    case = load_case(path, catalog)
    outcome = run_case(case, catalog, mode="boot", patcher=ReferencePatcher("linux-6.1"))
    verdict = judge(case, outcome)
    assert verdict.passed is passes
    if not passes:
        assert verdict.codes == ("stream-mismatch",)
