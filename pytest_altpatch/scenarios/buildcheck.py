"""Does a case build, for every dialect it lists?  (``altpatch lint`` and ``run``.)

A typo in a case's assembly (``movv x0, #2``) is the case's fault, not the patcher's:
it is found before any patcher runs and reported at the case line, like a load error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.dialects import Dialect
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.scenarios.session import build_for

if TYPE_CHECKING:
    from pytest_altpatch.image.model import Image


def expects_build_error(case: Case) -> bool:
    """Whether the case is a negative case whose image must not build."""
    return case.expect.error is not None and case.expect.error.phase == "build"


def build_problems(case: Case, catalog: Catalog,
                   dialects: Sequence[Dialect] | None = None) -> list[AltpatchError]:
    """The build errors of ``case`` under each of ``dialects`` (default: those it lists),
    one per distinct error; none for a case that expects a build error."""
    return build_checked(case, catalog, dialects)[1]


def build_checked(case: Case, catalog: Catalog, dialects: Sequence[Dialect] | None = None,
                  ) -> tuple[dict[Dialect, Image], list[AltpatchError]]:
    """The images of ``case`` that built, by dialect, and :func:`build_problems`'s
    errors (a case that expects a build error is not built: no images, no errors)."""
    if expects_build_error(case):
        return {}, []
    images: dict[Dialect, Image] = {}
    problems: dict[tuple[str, str, int | None, int | None], AltpatchError] = {}
    failing: dict[tuple[str, str, int | None, int | None], list[str]] = {}
    chosen = [d for d in (dialects or case.dialects) if d in case.dialects] or list(dialects or ())
    for dialect in chosen:
        try:
            images[dialect] = build_for(case, catalog, dialect)
        except AltpatchError as exc:
            where = exc.location
            key = (exc.code, exc.message, where.line, where.column)
            problems.setdefault(key, exc)
            failing.setdefault(key, []).append(dialect)
    found: list[AltpatchError] = []
    for key, first in problems.items():
        if len(failing[key]) < len(chosen):
            only = ", ".join(failing[key])
            first = AltpatchError(first.code, f"{first.message} (in {only})",  # noqa: PLW2901
                                  phase=first.phase, location=first.location, hint=first.hint)
        found.append(first)
    return images, found


__all__ = ["build_checked", "build_problems", "expects_build_error"]
