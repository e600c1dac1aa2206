"""The shipped Xen image, fetched once per session (skipped with a reason without it)."""

from __future__ import annotations

import pytest

from pytest_altpatch.cases.catalog import load_catalog
from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.errors import KernelError
from pytest_altpatch.kernel.debian import image_for_profile
from pytest_altpatch.kernel.layout import KernelImage, read_kernel_image
from pytest_altpatch.kernel.profile import TargetProfile, load_profile


@pytest.fixture(scope="session")
def xen_profile() -> TargetProfile:
    """The shipped xen-4.17-debian profile."""
    return load_profile("xen-4.17-debian")


@pytest.fixture(scope="session")
def xen_image(xen_profile: TargetProfile) -> KernelImage:
    """Debian's xen-syms (cache, else apt-get download + dpkg -x), or a skip."""
    try:
        path = image_for_profile(xen_profile.package)
    except KernelError as exc:
        pytest.skip(f"Debian's Xen 4.17 image cannot be had: {exc.message}")
    return read_kernel_image(path)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The bundled catalog."""
    return load_catalog()
