"""Third-party-style patchers for registry tests."""

from __future__ import annotations

from pytest_altpatch.patchers.reference import ReferencePatcher


class XenLike(ReferencePatcher):
    """A patcher class constructed with no arguments."""

    def __init__(self) -> None:
        super().__init__("xen-4.17")
        self.name = "sample:xen-like"


INSTANCE = ReferencePatcher("linux-4.9")
NOT_A_PATCHER = object()
