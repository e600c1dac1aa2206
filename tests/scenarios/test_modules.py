"""Linux modules, the late mode of the Linux dialects: the loader's part is checked too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from pytest_altpatch.cases import load_case, load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.judge import judge
from pytest_altpatch.machine import CpuContext
from pytest_altpatch.patchers.reference import ReferencePatcher
from pytest_altpatch.resources import bundled_corpus
from pytest_altpatch.scenarios import late
from pytest_altpatch.scenarios.runner import run_case
from pytest_altpatch.scenarios.session import Session

MODULES: Final = bundled_corpus() / "cases" / "modules"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()


def _module_cases() -> list[tuple[Path, str]]:
    catalog = load_catalog()
    return [(path, dialect) for path in sorted(MODULES.glob("*.yaml"))
            for dialect in load_case(path, catalog).dialects]


@pytest.mark.parametrize(("path", "dialect"), _module_cases(),
                         ids=lambda v: v.stem if isinstance(v, Path) else str(v))
def test_module_case_passes_with_the_reference_patcher(path: Path, dialect: str,
                                                       catalog: Catalog) -> None:
    case = load_case(path, catalog)
    outcome = run_case(case, catalog, mode="late", patcher=ReferencePatcher(dialect))
    assert judge(case, outcome).passed, [d.message for d in judge(case, outcome).discrepancies]
    assert not any(p.phase in ("apply", "revert") for p in outcome.phases)  # no switch


def _stale_with(monkeypatch: pytest.MonkeyPatch, catalog: Catalog, name: str,
                loader: Callable[[Session, int, int, int], None]) -> list[str]:
    monkeypatch.setattr(late, "_loader_maintenance", loader)
    case = load_case(MODULES / name, catalog)
    outcome = run_case(case, catalog, mode="late", patcher=ReferencePatcher("linux-6.1"))
    return [f.code for phase in outcome.phases
            for f in (*phase.findings, *(g for probe in phase.probes for g in probe.findings))]


def test_a_loader_striding_by_the_bigger_line_leaves_a_line_stale(
        monkeypatch: pytest.MonkeyPatch, catalog: Catalog) -> None:
    right = late._loader_maintenance

    def by_64(session: Session, start: int, end: int, line: int) -> None:
        right(session, start, end, 64)

    assert "stale-fetch" in _stale_with(monkeypatch, catalog,
                                        "loader-maintenance-small-lines.yaml", by_64)


def test_a_loader_without_the_ipi_leaves_other_cpus_unsynchronised(
        monkeypatch: pytest.MonkeyPatch, catalog: Catalog) -> None:
    def cpu0_only(session: Session, start: int, end: int, line: int) -> None:
        def flush(ctx: CpuContext) -> None:
            for va in range(start & -line, end, line):
                ctx.dc("civac", va)
            ctx.dsb("ish")
            ctx.ic("ialluis")
            ctx.dsb("ish")
            ctx.isb()
        session.run_patcher([0], flush)

    assert "stale-fetch" in _stale_with(monkeypatch, catalog, "biglittle-system-caps.yaml",
                                        cpu0_only)
