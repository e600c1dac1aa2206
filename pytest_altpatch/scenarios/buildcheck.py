"""Does a case build, for every dialect it lists?  (``altpatch lint`` and ``run``.)

A typo in a case's assembly (``movv x0, #2``) is the case's fault, not the patcher's:
it is found before any patcher runs and reported at the case line, like a load error.
The images come from here, for a run too (:func:`build_for`), and nothing here loads
the machine: ``altpatch run`` checks the build while its first item runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_altpatch.cases.model import Case, Catalog
from pytest_altpatch.dialects import Dialect, traits
from pytest_altpatch.errors import AltpatchError
from pytest_altpatch.image.kept_images import build_image_kept
from pytest_altpatch.scenarios.harness import harness_source

if TYPE_CHECKING:
    from pytest_altpatch.image.model import Image


def numbering_for(catalog: Catalog, dialect: str) -> str:
    """The catalog numbering a dialect uses (``strict`` numbers as linux-6.1 if absent)."""
    return traits(dialect).numbering_in(catalog.numberings)


def build_for(case: Case, catalog: Catalog, dialect: Dialect) -> Image:
    """The image of ``case`` as ``dialect`` builds it, with the harness code in it (kept
    between runs: :mod:`pytest_altpatch.image.kept_images`)."""
    numbering = catalog.numberings[numbering_for(catalog, dialect)]
    return build_image_kept(case, dialect=dialect, numbering=numbering,
                            harness_text=harness_source())


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


__all__ = ["build_checked", "build_for", "build_problems", "expects_build_error", "numbering_for"]
