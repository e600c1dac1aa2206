"""The modes a case can be checked in: which expectations each one reads.

``boot`` checks ``expect.boot``/``expect.boot_cpu``/``expect.hotplug`` (or a load,
build or boot error); ``late`` checks ``expect.late`` (or a late error).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pytest_altpatch.cases.model import Case, Mode


def has_mode(case: Case, mode: str) -> bool:
    """Whether ``case`` has anything to check in ``mode``."""
    expect = case.expect
    if mode == "late":
        return expect.late is not None or (expect.error is not None
                                           and expect.error.phase == "late")
    return (expect.boot is not None or expect.boot_cpu is not None or bool(expect.hotplug)
            or (expect.error is not None and expect.error.phase != "late"
                and expect.late is None))


#: The modes a case can have expectations for, in run order.
MODES: Final[tuple[Mode, ...]] = ("boot", "late")


def case_modes(case: Case) -> tuple[str, ...]:
    """The modes a case has expectations for (``boot`` if it seems to have none)."""
    # A case with nothing to check still gets one item, which the runner skips with why.
    return tuple(mode for mode in MODES if has_mode(case, mode)) or ("boot",)



__all__ = ["MODES", "case_modes", "has_mode"]
