"""Target profiles: the shipped file, its validation, and missing symbols."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_altpatch.errors import KernelError
from pytest_altpatch.kernel.profile import (
    PROFILES_DIR,
    available_profiles,
    check_symbols,
    load_profile,
    parse_profile_text,
)

SHIPPED = (PROFILES_DIR / "xen-4.17-debian.yaml").read_text()


def test_the_xen_profile_names_the_stubs_traps_and_data_of_the_boot_path() -> None:
    profile = load_profile("xen-4.17-debian")
    assert "xen-4.17-debian" in available_profiles()
    assert (profile.dialect, profile.ncaps, profile.entry) == (
        "xen-4.17", 18, "apply_alternatives_all")
    assert dict(profile.stubs) == {"printk": "log-format", "__vmap": "vmap-mfns",
                                   "vunmap": "vunmap", "stop_machine_run": "run-on-all-cpus"}
    assert {item.kind for item in profile.data} == {
        "capability-bitmap", "boot-cpu-dcache-line", "online-cpu-mask", "per-cpu-areas",
        "list-add-tail"}
    # mrs x2, tpidr_el2 is d53cd042 and at s1e2r, x20 is d50c7814 (objdump of xen-syms).
    by_name = {rule.name: rule for rule in profile.traps}
    assert by_name["mrs Xt, tpidr_el2"].matches(0xD53CD042)
    assert by_name["at s1e2r, Xt"].matches(0xD50C7814)
    assert not by_name["mrs Xt, tpidr_el2"].matches(0xD53BD042)  # tpidr_el0
    assert profile.package is not None and profile.package.architecture == "arm64"


def test_a_profile_of_another_version_is_refused_at_its_line() -> None:
    text = SHIPPED.replace("profile_version: 1", "profile_version: 2")
    with pytest.raises(KernelError) as caught:
        parse_profile_text(text, "p.yaml")
    assert caught.value.code == "PROFILE_INVALID"
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "profile_version" in row)
    assert caught.value.location.line == line


def test_an_unknown_stub_semantics_is_refused_with_the_known_ones() -> None:
    text = SHIPPED.replace("printk: log-format", "printk: print-it")
    with pytest.raises(KernelError) as caught:
        parse_profile_text(text, "p.yaml")
    assert caught.value.code == "PROFILE_INVALID" and "print-it" in caught.value.message
    assert caught.value.hint is not None and "log-format" in caught.value.hint


def test_an_unknown_profile_name_is_a_coded_error(tmp_path: Path) -> None:
    with pytest.raises(KernelError) as caught:
        load_profile("xen-9.9-debian")
    assert caught.value.code == "PROFILE_UNKNOWN"
    custom = tmp_path / "mine.yaml"
    custom.write_text(SHIPPED.replace("name: xen-4.17-debian", "name: mine"))
    assert load_profile(str(custom)).name == "mine"


def test_a_symbol_the_image_lacks_is_a_coded_error_naming_it() -> None:
    profile = parse_profile_text(SHIPPED.replace("vunmap: vunmap", "vunmap_contig: vunmap"))
    symbols = {name: 0x1000 for name in profile.symbols if name != "vunmap_contig"}
    with pytest.raises(KernelError) as caught:
        check_symbols(profile, symbols, "xen-syms")
    assert caught.value.code == "IMAGE_MISSING_SYMBOL"
    assert "'vunmap_contig'" in caught.value.message
    assert caught.value.location.symbol == "vunmap_contig"
