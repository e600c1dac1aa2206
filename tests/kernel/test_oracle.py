"""Differential oracle: the real xen-syms against the reference xen-4.17 dialect."""

from __future__ import annotations

import pytest

from pytest_altpatch.cases.model import Catalog
from pytest_altpatch.kernel.layout import KernelImage
from pytest_altpatch.kernel.oracle import compare_with_reference
from pytest_altpatch.kernel.profile import TargetProfile
from pytest_altpatch.kernel.runner import RunRequest, platform_cpus, resolved_caps

NOP = 0xD503201F

#: Catalog platforms (2 CPUs each keeps the run short); caps come from resolution.
PLATFORMS = (
    "cortex-a57/r0p1, cortex-a53/r0p2",  # big.LITTLE: clean-cache, 832075, 834220, ...
    "2x cortex-a72/r0p0",
    "2x neoverse-n1/r3p0",
    "2x thunderx2/r1p1",
    "2x kryo/r0p0",
    "cortex-a75/r0p0, cortex-a55/r1p0",
    "2x cortex-a77/r0p1",
)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_real_image_and_the_reference_write_the_same_text(
        platform: str, xen_image: KernelImage, xen_profile: TargetProfile,
        catalog: Catalog) -> None:
    cpus = platform_cpus(catalog, platform, None)
    result = compare_with_reference(xen_image, xen_profile, catalog,
                                    RunRequest(cpus, resolved_caps(catalog, xen_profile, cpus)))
    assert result.run.findings == () and result.reference_error is None
    assert result.differences == (), "\n".join(d.render() for d in result.differences)
    # arm_enable_wa2_handling has no registry entry: its site is left out, and the
    # image's own callback NOPs it (ssbd_state is ARM_SSBD_RUNTIME in the image).
    (callback,) = result.unregistered_callbacks
    assert callback.callback == "arm_enable_wa2_handling"
    assert callback.after == NOP.to_bytes(4, "little")
    # The reference changed every word the image did, except that callback's one.
    assert result.reference_words_changed == result.run.words_changed - 1


def test_with_every_cap_on_the_reference_retargets_the_same_branches(
        xen_image: KernelImage, xen_profile: TargetProfile, catalog: Catalog) -> None:
    cpus = platform_cpus(catalog, "2x cortex-a72/r0p0", None)
    result = compare_with_reference(xen_image, xen_profile, catalog,
                                    RunRequest(cpus, frozenset(range(18))))
    assert result.identical, "\n".join(d.render() for d in result.differences)
    assert result.run.retargets > 0  # some replacements branch out of line
