"""Resolving patcher names."""

from __future__ import annotations

import pytest

from pytest_altpatch.errors import PatchError
from pytest_altpatch.patchers.registry import resolve_patcher


def test_reference_defaults_to_linux_6_1_and_honours_dialect() -> None:
    assert resolve_patcher("reference").dialect == "linux-6.1"
    assert resolve_patcher("reference", dialect="xen-4.17").dialect == "xen-4.17"
    assert resolve_patcher("reference:linux-4.6").name == "reference:linux-4.6"


def test_module_attribute_class_and_instance() -> None:
    assert resolve_patcher("sample_patchers:XenLike").name == "sample:xen-like"
    assert resolve_patcher("sample_patchers:INSTANCE").dialect == "linux-4.9"


@pytest.mark.parametrize("name", ["reference:linux-9", "nowhere_module_xyz:P",
                                  "sample_patchers:MISSING", "sample_patchers:NOT_A_PATCHER",
                                  "justaword"])
def test_unresolvable_names_are_coded_errors(name: str) -> None:
    with pytest.raises(PatchError) as exc:
        resolve_patcher(name)
    # An unknown reference dialect is a dialect error (with a did-you-mean), the rest
    # are unknown patchers.
    expected = "PATCHER_DIALECT" if name.startswith("reference:") else "PATCHER_UNKNOWN"
    assert exc.value.code == expected and exc.value.phase == "load"
